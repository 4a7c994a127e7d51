"""LR schedule diagnostics: a real DeepSpeed LR range test on the CPU, the recommended OneCycle
trained against fixed LRs, the lr-range CLI (JSON schema, plot, bad input) and the detector."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor.cli import _register, app
from dsdoctor.detect.lr import LRScheduleDetector
from dsdoctor.events import Event
from dsdoctor.lr.analysis import analyze
from dsdoctor.lr.curve import Curve, LRRangeError
from dsdoctor.lr.readers import read_run
from dsdoctor.lr.recommend import recommendation

HERE = Path(__file__).resolve().parent
TASK = HERE / "lr_task.py"
TOTAL_STEPS = 300          # the comparison runs' length; the recommendation is sized for it
LRRT = ["--min-lr", "1e-3", "--step-size", "1", "--step-rate", "1", "--steps", "250"]

_register()
runner = CliRunner()


def _run_task(args: list[str], timeout: float = 240) -> None:
    """Run tests/lr_task.py in its own process group; kill the group on timeout."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, str(TASK), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"lr_task.py {args[0]} timed out after {timeout}s")
    assert proc.returncode == 0, out[-3000:]


@pytest.fixture(scope="session")
def lrrt_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lrrt")
    _run_task(["lrrt", str(d), *LRRT])
    return d


@pytest.fixture(scope="session")
def lrrt_analysis(lrrt_dir):
    return analyze(read_run(lrrt_dir / "lrrt.csv"))


# ------------------------------------------------------------------ the real range test
def test_real_range_test_recommendation(lrrt_analysis):
    a = lrrt_analysis
    p = recommendation(a, TOTAL_STEPS)["recommendation"]["params"]
    print(f"\nlr_start={a.lr_start:.3g} lr_steepest={a.lr_steepest:.3g} lr_min_loss={a.lr_min_loss:.3g} "
          f"lr_diverge={a.lr_diverge:.3g} -> cycle {p['cycle_min_lr']}..{p['cycle_max_lr']}")
    assert a.lr_start < a.lr_min_loss < a.lr_diverge
    assert a.lr_start < p["cycle_max_lr"] < a.lr_diverge, "cycle_max_lr must sit between learning and divergence"
    assert p["cycle_min_lr"] < p["cycle_max_lr"]
    assert a.loss_min < 0.25 * a.loss_start       # the task really learns


def test_three_sources_agree(lrrt_dir, lrrt_analysis):
    """CSV, dsdoctor events, DeepSpeed's TensorBoard monitor (lr logged by DeepSpeed, loss by the
    script) and an HF-Trainer-style text log give the same answer."""
    ev = analyze(read_run(lrrt_dir))
    tb = analyze(read_run(lrrt_dir / "tb"))
    hf = lrrt_dir / "hf.log"
    hf.write_text("".join(f"{{'loss': '{loss}', 'grad_norm': '1.0', 'learning_rate': '{lr}', 'epoch': '0.1'}}\n"
                          for lr, loss in zip(lrrt_analysis.all_lrs, lrrt_analysis.all_losses)))
    for a in (ev, tb, analyze(read_run(hf))):
        for name in ("lr_steepest", "lr_min_loss", "lr_diverge"):
            assert getattr(a, name) == pytest.approx(getattr(lrrt_analysis, name), rel=0.05), name


def test_recommended_onecycle_trains(lrrt_analysis, tmp_path):
    doc = recommendation(lrrt_analysis, TOTAL_STEPS)
    small = doc["recommendation"]["params"]["cycle_min_lr"]
    runs = {"onecycle": doc["recommendation"], "diverge": {"fixed_lr": doc["lr_diverge"]},
            "small": {"fixed_lr": small}}
    for alt in doc["alternatives"]:           # each alternative block must construct and train too
        runs[alt["type"]] = {"type": alt["type"], "params": alt["params"],
                             "optimizer_lr": alt.get("optimizer_lr", alt["params"].get("warmup_max_lr", 1e-3))}
    # the same process also records three faulty schedules for the detector test below
    for name, block in FAULTY.items():
        runs[name] = {**block["scheduler"], "steps": 150, "record": str(tmp_path / name)}
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps({"steps": TOTAL_STEPS, "runs": runs}))
    _run_task(["compare", str(spec), str(out)])
    res = json.loads(out.read_text())
    print("\nfinal loss after", TOTAL_STEPS, "steps:", {k: round(v, 4) for k, v in res.items() if k not in FAULTY})
    assert res["onecycle"] < res["diverge"]
    assert res["onecycle"] <= res["small"]
    assert all(math.isfinite(res[alt["type"]]) for alt in doc["alternatives"])
    _check_faulty_runs(tmp_path)


# Real DeepSpeed runs with a broken schedule, 150 steps each, and what `dsdoctor analyze` must say.
FAULTY = {
    # WarmupDecayLR whose total_num_steps (60) is shorter than the run: LR 0 from step 62 on
    "decay": {"train_micro_batch_size_per_gpu": 64, "scheduler": {"type": "WarmupDecayLR", "params": {
        "total_num_steps": 60, "warmup_min_lr": 0, "warmup_max_lr": 0.05, "warmup_num_steps": 10,
        "warmup_type": "linear"}}},
    # a 10-step warm-up to 0.3, twice where the range test saw divergence: blows up after the peak
    "hot": {"train_micro_batch_size_per_gpu": 64, "scheduler": {"type": "WarmupLR", "params": {
        "warmup_min_lr": 0, "warmup_max_lr": 0.3, "warmup_num_steps": 10, "warmup_type": "linear"}}},
    # a short warm-up to 0.2: the loss keeps spiking once the LR is at its peak
    "spiky": {"train_micro_batch_size_per_gpu": 64, "scheduler": {"type": "WarmupLR", "params": {
        "warmup_min_lr": 0, "warmup_max_lr": 0.2, "warmup_num_steps": 20, "warmup_type": "linear"}}},
}
EXPECTED = {
    "decay": ("lr-decayed-past-total", {"scheduler": {"params": {"total_num_steps": 200}}}),
    "hot": ("lr-diverge-after-peak", {"scheduler": {"params": {"warmup_max_lr": 0.15}}}),
    "spiky": ("lr-warmup-too-short", {"scheduler": {"params": {"warmup_num_steps": 200}}}),
}


def _check_faulty_runs(tmp_path: Path) -> None:
    for name, cfg in FAULTY.items():
        cfg_path = tmp_path / f"{name}.json"
        cfg_path.write_text(json.dumps(cfg))
        r = runner.invoke(app, ["analyze", str(tmp_path / name), "--config", str(cfg_path), "--json"])
        findings = json.loads(r.stdout)["findings"]
        rule, patch = EXPECTED[name]
        lr_rules = [f["rule"] for f in findings if f["category"] == "lr_schedule"]
        assert lr_rules == [rule], (name, lr_rules)
        f = next(f for f in findings if f["rule"] == rule)
        assert f["fixes"][0]["config_patch"] == patch, (name, f["fixes"][0])
        assert not f.get("consequence_of")


# ----------------------------------------------------------------------------- the CLI
def test_cli_json_schema_and_plot(lrrt_dir, tmp_path):
    png = tmp_path / "lrrt.png"
    r = runner.invoke(app, ["lr-range", str(lrrt_dir / "lrrt.csv"), "--json", "--plot", str(png),
                            "--total-steps", str(TOTAL_STEPS)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc) == {"recommendation", "alternatives", "lr_steepest", "lr_min_loss", "lr_diverge"}
    assert set(doc["recommendation"]) == {"type", "params"} and doc["recommendation"]["type"] == "OneCycle"
    assert {"cycle_min_lr", "cycle_max_lr", "cycle_first_step_size", "cycle_second_step_size", "decay_lr_rate",
            "decay_step_size", "cycle_momentum", "cycle_min_mom", "cycle_max_mom"} <= set(doc["recommendation"]["params"])
    assert [a["type"] for a in doc["alternatives"]] == ["WarmupLR", "WarmupCosineLR"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_terminal_report(lrrt_dir):
    r = runner.invoke(app, ["lr-range", str(lrrt_dir)])
    assert r.exit_code == 0, r.output
    assert "LR (log)" in r.stdout and '"type": "OneCycle"' in r.stdout and "WarmupCosineLR" in r.stdout


def _write_csv(path: Path, rows) -> Path:
    path.write_text("step,lr,loss\n" + "".join(f"{s},{lr!r},{loss!r}\n" for s, lr, loss in rows))
    return path


def _synthetic(n=200, lr0=1e-4, lr1=1.0, nan_from=None):
    """A textbook range test: flat, descent, minimum, blow-up (log-spaced LRs)."""
    rows = []
    for i in range(n):
        lr = lr0 * (lr1 / lr0) ** (i / (n - 1))
        x = math.log10(lr)                       # -4 .. 0
        loss = 2.0 - 1.5 / (1 + math.exp(-(x + 2.5) * 4)) + (8 * (x + 0.7) ** 2 if x > -0.7 else 0.0)
        loss += 0.02 * math.sin(i * 1.7)         # deterministic noise
        if nan_from is not None and i >= nan_from:
            loss = float("nan")
        rows.append((i + 1, lr, loss))
    return rows


def test_synthetic_curve_points():
    a = analyze(Curve(*map(list, zip(*_synthetic())), source="synthetic"))
    assert 10 ** -3.0 < a.lr_steepest < 10 ** -2.0        # the sigmoid's centre is 10^-2.5
    assert 10 ** -1.2 < a.lr_min_loss < 10 ** -0.5
    assert a.lr_min_loss < a.lr_diverge <= 1.0


def test_staircase_sweep_is_collapsed():
    rows = [(s, lr, loss) for s, lr, loss in _synthetic(60) for _ in range(5)]
    a = analyze(Curve([i for i, _ in enumerate(rows)], [r[1] for r in rows], [r[2] for r in rows], source="stairs"))
    assert any("staircase" in n for n in a.notes)
    assert a.lr_min_loss < a.lr_diverge


def _cli_error(args) -> str:
    r = runner.invoke(app, ["lr-range", *map(str, args)])
    assert r.exit_code == 2, r.output
    msg = r.stderr.strip()
    assert msg.startswith("dsdoctor: error: ") and "\n" not in msg and "Traceback" not in r.output
    return msg


@pytest.mark.parametrize("case,expect", [
    ("few", "too few points"),
    ("constant", "the LR is constant"),
    ("nan_first", "from the first step"),
    ("nan_early", "start the sweep lower"),
    ("nodiv", "lr_range_test_step_rate"),
    ("flat", "never really decreased"),
    ("down", "goes down"),
])
def test_bad_curves(tmp_path, case, expect):
    syn = _synthetic()
    rows = {
        "few": syn[:10],
        "constant": [(s, 1e-3, loss) for s, _, loss in syn],
        "nan_first": [(s, lr, float("nan")) for s, lr, _ in syn],
        "nan_early": _synthetic(nan_from=8),
        "nodiv": syn[:120],
        "flat": [(s, lr, 2.0 + 0.01 * math.sin(s)) for s, lr, _ in syn],
        "down": [(s, lr, loss) for (s, _, loss), (_, lr, _) in zip(syn, reversed(syn))],
    }[case]
    msg = _cli_error([_write_csv(tmp_path / "run.csv", rows)])
    assert expect in msg


def test_no_divergence_says_how_to_sweep_higher(tmp_path):
    msg = _cli_error([_write_csv(tmp_path / "run.csv", _synthetic()[:120])])
    assert "no divergence reached" in msg and "multiply lr_range_test_step_rate by" in msg and "steps" in msg


@pytest.mark.parametrize("content,expect", [
    ("step,lr,loss\n1,0.1,abc\n", "run.csv:2: 'abc' in column loss is not a number"),
    ("step,learning,value\n1,0.1,2\n", "header must name the columns"),
    ("step,lr,loss\n1,0.1\n", "run.csv:2: 2 columns"),
    ("", "empty file"),
])
def test_malformed_csv(tmp_path, content, expect):
    p = tmp_path / "run.csv"
    p.write_text(content)
    assert expect in _cli_error([p])


def test_missing_file_and_empty_folder(tmp_path):
    assert "no such file" in _cli_error([tmp_path / "nope.csv"])
    assert "no dsdoctor events" in _cli_error([tmp_path])


def test_tensorboard_without_loss_says_what_is_missing(lrrt_dir):
    msg = _cli_error([lrrt_dir / "tb", "--loss-tag", "Train/Samples/nope"])
    assert "does not log the training loss" in msg and "write_events" in msg


def test_events_without_loss(tmp_path):
    p = tmp_path / "events-rank0.jsonl"
    p.write_text("".join(Event("lr", rank=0, step=i, data={"value": 1e-3 * i}).to_json() + "\n" for i in range(1, 50)))
    assert "no loss values" in _cli_error([p])
    log = tmp_path / "train.log"
    log.write_text("".join(f"[2026-01-01 00:00:00,000] [INFO] [logging.py:107:log_dist] [Rank 0] step={i}, "
                           f"skipped=0, lr=[{1e-3 * i}], mom=[(0.9, 0.999)]\n" for i in range(1, 50)))
    assert "carry no loss" in _cli_error([log])


def test_read_errors_are_lrrange_errors(tmp_path):
    with pytest.raises(LRRangeError):
        read_run(tmp_path / "missing")


# ---------------------------------------------------------------------------- detector
def _feed(events) -> dict[str, dict]:
    det = LRScheduleDetector()
    syms = []
    for i, ev in enumerate(events):
        syms += list(det.feed(ev, i))
    syms += list(det.finish())
    return {s.name: s.facts for s in syms}


def test_detector_decay_past_total_steps():
    """WarmupDecayLR(total_num_steps=100, warmup 10) run for 200 steps: linear decay to 0, then 0."""
    evs = []
    for step in range(1, 201):
        gamma = step / 10 if step < 10 else max(0.0, (100 - step) / 90)
        evs.append(Event("lr", rank=0, step=step, data={"value": 1e-3 * gamma}))
    facts = _feed(evs)["lr_stuck"]
    assert facts["stuck_value"] == 0 and facts["decayed"] and facts["last_step"] == 200
    assert 99 <= facts["stuck_from_step"] <= 101


def test_detector_range_test_left_on():
    evs = [Event("lr", rank=0, step=s, data={"value": 1e-5 * (1 + s / 100)}) for s in range(1, 2100)]
    facts = _feed(evs)["lr_unbounded"]
    assert facts["rising_steps"] >= 2000


def test_detector_quiet_on_a_healthy_warmup_run():
    evs = []
    for s in range(1, 600):
        evs.append(Event("lr", rank=0, step=s, data={"value": 1e-3 * min(1.0, s / 100)}))
        evs.append(Event("loss", rank=0, step=s, data={"value": 2.0 * math.exp(-s / 200) + 0.1 + 0.01 * math.sin(s)}))
    assert _feed(evs) == {}


def test_hf_loss_dicts_beside_deepspeeds_rank_0_lines_are_one_series():
    # HF Trainer + DeepSpeed: the LR comes from DeepSpeed's '[Rank 0] step=' lines, the loss from HF's
    # metric dicts, which carry no rank; both are the run's series (the loss used to be ignored)
    ds = "[2026-01-01 00:00:0{i},000] [INFO] [logging.py:128:log_dist] [Rank 0] step={s}, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]\n"
    hf = "{{'loss': {v}, 'grad_norm': 1.0, 'learning_rate': 0.001, 'epoch': {e}}}\n"
    losses = [2.1, 2.0, 2.0, 1.9, 1.9, 1.9, 25.0, 41.0, 77.0, 150.0, 310.0]
    text = "".join(ds.format(i=i % 10, s=10 * (i + 1)) + hf.format(v=v, e=i / 10) for i, v in enumerate(losses))
    from dsdoctor.pipeline import Diagnoser
    from dsdoctor.sources.logs import events_from_text
    d = Diagnoser()
    d.feed_all(events_from_text(text, "run.log"))
    fs = [f for f in d.finish() if f.severity != "info"]
    assert fs and fs[0].rule == "loss-diverged", [f.rule for f in fs]
    assert "310" in fs[0].title and fs[0].steps, fs[0].title


def test_a_loss_that_blows_up_at_once_and_stays_is_diverged():
    # AdamW at lr 30 (fix13's real run): 0.59 at step 0, ~1e15 from step 1 on, exit 0: the best-so-far needs five
    # readings and a plateau is not "still rising", so this was "No problems found"
    loss = lambda s, v: Event("loss", rank=0, step=s, data={"value": v, "name": "loss"})  # noqa: E731
    got = _feed([loss(0, 0.59)] + [loss(s, 1e15 * (1 + 0.01 * (s % 3))) for s in range(1, 40)])
    assert got["loss_diverged"]["jumped"] is True and got["loss_diverged"]["first_step"] == 1
    # a loss whose first reading is near 0 and then trains at a usual level is not a blow-up
    got = _feed([loss(0, 1e-5)] + [loss(s, 2.5 - 0.01 * s) for s in range(1, 40)])
    assert "loss_diverged" not in got
    # one huge batch that comes back down is not either
    got = _feed([loss(0, 0.59)] + [loss(s, 1e15 if s in (5, 6) else 0.5) for s in range(1, 40)])
    assert "loss_diverged" not in got
