"""The fix we print works: a real DeepSpeed run fails, `dsdoctor analyze --config --write-config`
writes the config with the fix, and the same run with that config trains to its end.

The user's loop at 3 a.m., end to end, with the real engine on the CPU (scripts/make_fixtures.py's
worker: the same tiny model and faults as the golden fixtures). It caught two fixes that passed
DeepSpeed's config parser but not the next run: offloading the optimizer states in a config without
an "optimizer" section (DeepSpeed then refuses the script's own optimizer), and bf16 against
gradients past every half type's range. scripts/try_fixes.py runs the loop over every rule that can be
provoked here; the cases below from it are those that found a wrong or missing fix."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

import run_ahead
from cli_invoke import invoke_cli

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_fixtures", REPO / "scripts" / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)

RUN_LIMIT = 300          # seconds per training run (a few steps; most of it is start-up on 2 cores)

# name: (ranks, the user's config changes, worker flags, the rule that must name the failure)
CASES = {
    "batch_size": (2, {"train_batch_size": 24}, ["--steps", "3"], "cfg-batch-mismatch"),
    "offload_params_on_stage_2": (1, {"zero_optimization": {"stage": 2, "offload_params": {"device": "cpu"}}},
                                  ["--steps", "3"], "log-cfg-offload-params"),
    "fp16_past_its_range": (2, {"bf16": None, "fp16": {"enabled": True, "initial_scale_power": 6, "hysteresis": 2,
                                                      "loss_scale_window": 1000, "min_loss_scale": 1}},
                            ["--steps", "16", "--fault", "fp16_range", "--fault-step", "2", "--fault-rank", "0"],
                            "loss-scale-collapse"),
    # DeepSpeed's engine refuses fp16 where its accelerator has none (the CPU's own answer here, as bf16 on a V100)
    "fp16_on_a_device_without_it": (1, {"bf16": None, "fp16": {"enabled": True}}, ["--steps", "3", "--no-fp16-claim"],
                                    "failure-precision-unsupported"),
    # found by scripts/try_fixes.py (the same loop over every provokable rule): each had no patch or one that
    # left the same run failing
    "removed_key": (1, {"amp": {"enabled": True}}, ["--steps", "3"], "log-cfg-removed-key"),
    "log_level": (1, {"log_level": "verbose"}, ["--steps", "3"], "log-cfg-bad-log-level"),
    "client_optimizer_under_offload": (1, {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}},
                                       ["--steps", "3"], "log-cfg-client-optimizer-offload"),
    # torch_adam: no FusedAdam op to JIT-build on the CPU
    "optimizer_typo": (1, {"optimizer": {"type": "AdamWW", "params": {"lr": 1e-3, "torch_adam": True}}},
                       ["--steps", "3", "--ds-optimizer"], "log-cfg-unknown-optimizer"),
}


def _failing_run(name: str) -> run_ahead.Ahead:
    """The case's first run (the user's config), listed to start one test ahead (tests/run_ahead.py): the
    command and environment of make_fixtures.run_worker, its output (stdout and stderr, as bytes) the log."""
    ranks, changes, flags, _ = CASES[name]
    cmd, env = make_fixtures.worker_command(ranks, make_fixtures.merged_config(changes), flags)
    return run_ahead.QUEUE.add(cmd, timeout=RUN_LIMIT, env=env, cwd=run_ahead.scratch(f"fix-{name}"), merge=True, text=False)


FAILING_RUNS = {name: _failing_run(name) for name in CASES}


def train(config: Path, ranks: int, flags: list[str], log: Path) -> int:
    rc = make_fixtures.run_worker(ranks, json.loads(config.read_text()), flags, log, RUN_LIMIT)
    if rc is None:
        pytest.fail(f"{log.name}: no end after {RUN_LIMIT} s")
    return rc


def dsdoctor(*args: str):
    """`dsdoctor ARGS` through the app's own command in this process (tests/cli_invoke.py): the same
    arguments, exit code and output as `python -m dsdoctor` (whose start-up, DeepSpeed's import for the
    config check included, cost ~4 s of CPU per call here); the real entry point has tests of its own."""
    res = invoke_cli(list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


@pytest.mark.parametrize("name", list(CASES))
def test_the_written_fix_makes_the_same_run_train(name, tmp_path):
    ranks, changes, flags, rule = CASES[name]
    bad, fixed = tmp_path / "ds_config.json", tmp_path / "ds_config.fixed.json"
    bad.write_text(json.dumps(make_fixtures.merged_config(changes), indent=2))

    try:
        first = FAILING_RUNS[name].run()       # train(bad, ranks, flags, tmp_path / "bad.log"), started ahead
    except subprocess.TimeoutExpired:
        pytest.fail(f"bad.log: no end after {RUN_LIMIT} s")
    (tmp_path / "bad.log").write_bytes(first.stdout)
    assert first.returncode != 0
    res = dsdoctor("analyze", "--json", "--config", str(bad), "--write-config", str(fixed), str(tmp_path / "bad.log"))
    top = json.loads(res.stdout)["findings"][0]
    assert top["rule"] == rule, res.stdout[:2000]
    assert fixed.exists(), res.stdout[-2000:] + res.stderr[-2000:]

    rc = train(fixed, ranks, flags, tmp_path / "fixed.log")
    text = (tmp_path / "fixed.log").read_text(errors="replace")
    assert rc == 0, f"the fixed config {fixed.read_text()} still fails:\n{text[-3000:]}"
    assert "training done" in text
    after = json.loads(dsdoctor("analyze", "--json", "--config", str(fixed), str(tmp_path / "fixed.log")).stdout)
    assert [f["rule"] for f in after["findings"] if f["severity"] in ("warning", "error")] == []


def _offload_finding():
    from dsdoctor.findings import Finding, Fix
    fix = Fix(title="offload", config_patch={"zero_optimization": {"offload_optimizer": {"device": "cpu"}}})
    return Finding(rule="r", category="oom", severity="error", title="t", summary="s", fixes=[fix])


def test_offload_without_an_optimizer_section_allows_the_client_optimizer():
    from dsdoctor.fixes import resolve_fixes
    f = _offload_finding()
    resolve_fixes([f], {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2}}, validate=False)
    assert f.fixes[0].config_patch["zero_force_ds_cpu_optimizer"] is False
    assert "DeepSpeedCPUAdam" in f.fixes[0].advice
    for cfg in ({"optimizer": {"type": "AdamW"}, "zero_optimization": {"stage": 2}},           # DeepSpeed builds it
                {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}):  # already offloading
        f = _offload_finding()
        resolve_fixes([f], cfg, validate=False)
        assert "zero_force_ds_cpu_optimizer" not in f.fixes[0].config_patch


def test_the_written_config_keeps_the_numbers_as_the_user_wrote_them(tmp_path):
    from dsdoctor.config_io import load_config, write_config
    src = tmp_path / "ds.json"
    src.write_text('{"gradient_clipping": 1.0, "optimizer": {"params": {"lr": 1e-4, "betas": [0.9, 0.95]}}, '
                   '"train_batch_size": 24}')
    cfg = load_config(src)                        # hjson, as DeepSpeed reads it: 1.0 becomes 1
    cfg["train_batch_size"] = 16
    out = write_config(cfg, tmp_path / "fixed.json", src)
    assert json.loads(out.read_text()) == {"gradient_clipping": 1.0, "optimizer": {"params": {"lr": 1e-4, "betas": [0.9, 0.95]}},
                                           "train_batch_size": 16}
    assert '"gradient_clipping": 1.0' in out.read_text()
