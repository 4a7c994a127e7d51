#!/usr/bin/env python3
"""Try the fixes dsdoctor prints on the next run, for real, and print a table.

    python scripts/try_fixes.py                 # every case (1 rank each: ~40 s a case on 2 idle cores)
    python scripts/try_fixes.py --jobs 2 batch_size amp_removed
    python scripts/try_fixes.py --list

Each case is the user's loop at 3 a.m.: a run of scripts/make_fixtures.py's worker (the real DeepSpeed
engine on the CPU) with a config mistake or a fault; `dsdoctor analyze LOG --config ds.json
--write-config fixed.json`; the SAME command with fixed.json. Columns: provoked (the first run failed, or
for a mistake DeepSpeed lets pass, the lint named it), found (the expected rule is the top finding),
patch (a fixed config was written and DeepSpeed's own DeepSpeedConfig accepts it), trains (the rerun
trained to its end and its log has no finding above info). A case whose cause no config change can
remove (bad data, a fault injected in the code) expects NO patch: `patch` is then "none (right)".
Every run is bounded by RUN_LIMIT and its whole process group is killed after it."""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_fixtures", REPO / "scripts" / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)

RUN_LIMIT = 300
S3 = ["--steps", "3"]
OPT = ["--steps", "3", "--ds-optimizer"]                 # DeepSpeed builds the optimizer from the config
# torch_adam: torch.optim.AdamW, not the FusedAdam op DeepSpeed would JIT-build on the CPU (minutes under load)
ADAMW = {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}
FP16 = {"bf16": None, "fp16": {"enabled": True}}

# name: (the rule that must be top, ranks, the user's config changes, worker flags, a patch is expected)
CASES: dict[str, tuple[str, int, dict, list[str], bool]] = {
    # DeepSpeed refuses the config (its own messages in the log)
    "batch_size": ("cfg-batch-mismatch", 1, {"train_batch_size": 24}, S3, True),
    "batch_size_2_ranks": ("cfg-batch-mismatch", 2, {"train_batch_size": 24}, S3, True),
    "batch_not_positive": ("log-cfg-batch-not-positive", 1, {"train_batch_size": 0}, S3, True),
    "batch_missing": ("log-cfg-batch-missing", 1, {"train_micro_batch_size_per_gpu": None}, S3, True),
    "offload_params_stage_2": ("log-cfg-offload-params", 1,
                               {"zero_optimization": {"stage": 2, "offload_params": {"device": "cpu"}}}, S3, True),
    "offload_params_stage_3": ("log-cfg-offload-params", 1,
                               {"zero_optimization": {"stage": 3, "offload_params": {"device": "cpu"}}}, S3, True),
    "zero_typo_key": ("log-cfg-extra-key", 1, {"zero_optimization": {"stage": 2, "overlap_com": True}}, S3, True),
    "nvme_path_misplaced": ("log-cfg-nvme-path-misplaced", 1,
                            {"zero_optimization": {"stage": 2, "nvme_path": "/tmp"}}, S3, True),
    "amp_removed": ("log-cfg-removed-key", 1, {"amp": {"enabled": True}}, S3, True),
    "fp16_and_bf16": ("cfg-fp16-and-bf16", 1, {"fp16": {"enabled": True}}, S3, True),
    "fp16_override_modules": ("log-cfg-fp16-override-modules", 1,
                              {"bf16": None, "fp16": {"enabled": True, "fp16_override_modules": ["head"]}}, S3, True),
    "fp16_min_loss_scale_fraction": ("log-cfg-min-loss-scale-int", 1,
                                     {"bf16": None, "fp16": {"enabled": True, "min_loss_scale": 0.5}}, S3, True),
    "fp16_min_loss_scale_zero": ("log-cfg-fp16-min-loss-scale-positive", 1,
                                 {"bf16": None, "fp16": {"enabled": True, "min_loss_scale": 0}}, S3, True),
    "fp16_loss_scale_window_zero": ("log-cfg-fp16-loss-scale-window", 1,
                                    {"bf16": None, "fp16": {"enabled": True, "loss_scale_window": 0}}, S3, True),
    "fp16_loss_scale_negative": ("log-cfg-fp16-static-loss-scale", 1,
                                 {"bf16": None, "fp16": {"enabled": True, "loss_scale": -1}}, S3, True),
    "fp16_on_cpu": ("failure-precision-unsupported", 1, FP16, ["--steps", "3", "--no-fp16-claim"], True),
    "partial_offload_stage_2": ("log-cfg-partial-offload-stage", 1,
                                {"optimizer": ADAMW,
                                 "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "ratio": 0.5}}},
                                OPT, True),
    "client_optimizer_offload": ("log-cfg-client-optimizer-offload", 1,
                                 {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}, S3, True),
    "wrong_type": ("log-cfg-auto-outside-hf", 1, {"gradient_accumulation_steps": "two"}, S3, True),
    "log_level_bad": ("log-cfg-bad-log-level", 1, {"log_level": "verbose"}, S3, True),
    # the optimizer and the scheduler sections (DeepSpeed builds them)
    "optimizer_removed": ("log-cfg-unknown-optimizer", 1, {"optimizer": {"type": "OneBitAdam", "params": {"lr": 1e-3, "torch_adam": True}}},
                          OPT, True),
    "optimizer_unknown": ("log-cfg-unknown-optimizer", 1, {"optimizer": {"type": "AdamWW", "params": {"lr": 1e-3, "torch_adam": True}}},
                          OPT, True),
    "optimizer_param_typo": ("log-cfg-optimizer-param", 1,
                             {"optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True, "beta": [0.9, 0.99]}}}, OPT, True),
    "optimizer_max_grad_norm": ("log-cfg-max-grad-norm", 1,
                                {"optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True, "max_grad_norm": 1.0}}}, OPT, True),
    # which schedule the user meant is unknown: the finding lists DeepSpeed's and torch's, no patch
    "scheduler_unknown": ("log-cfg-unknown-scheduler", 1,
                          {"optimizer": ADAMW, "scheduler": {"type": "CosineAnnealing", "params": {}}}, OPT, False),
    "scheduler_misspelt": ("log-cfg-unknown-scheduler", 1,
                           {"optimizer": ADAMW, "scheduler": {"type": "WarmUpLR", "params": {"warmup_num_steps": 2}}},
                           OPT, True),
    "scheduler_param_typo": ("lr-scheduler-param-of-another", 1,
                             {"optimizer": ADAMW, "scheduler": {"type": "WarmupLR", "params": {"warmup_steps": 10}}},
                             OPT, True),
    # the run's own number of steps: the finding says how to compute it, no placeholder patch
    "scheduler_missing_total": ("log-cfg-scheduler-missing-param", 1,
                                {"optimizer": ADAMW, "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_num_steps": 10}}},
                                OPT, False),
    "scheduler_warmup_past_total": ("cfg-scheduler-warmup-exceeds-total", 1,
                                    {"optimizer": ADAMW, "scheduler": {"type": "WarmupDecayLR", "params": {
                                        "warmup_num_steps": 100, "total_num_steps": 50}}}, OPT, True),
    # mistakes DeepSpeed lets pass (the lint names them from --config)
    "top_level_typo": ("cfg-unknown-key", 1, {"gradient_clipings": 1.0}, S3, True),
    "offload_param_stage_2": ("cfg-offload-param-below-stage3", 1,
                              {"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}}, S3, True),
    # training dynamics
    "fp16_past_its_range": ("loss-scale-collapse", 1, {"bf16": None, "fp16": {
        "enabled": True, "initial_scale_power": 6, "hysteresis": 2, "loss_scale_window": 1000, "min_loss_scale": 1}},
        ["--steps", "16", "--fault", "fp16_range", "--fault-step", "2"], True),
    "nan_in_the_data": ("nan-loss", 1, {}, ["--steps", "8", "--fault", "nan", "--fault-step", "3"], False),
    "decayed_past_total": ("lr-decayed-past-total", 1,
                           {"optimizer": ADAMW, "scheduler": {"type": "WarmupDecayLR", "params": {
                               "warmup_num_steps": 2, "total_num_steps": 6}}}, ["--steps", "40", "--ds-optimizer"], True),
}


def train(config: dict, ranks: int, flags: list[str], log: Path) -> int:
    rc = make_fixtures.run_worker(ranks, config, flags, log, RUN_LIMIT)
    return -9 if rc is None else rc               # killed at RUN_LIMIT: reported as exit -9


def dsdoctor(command: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "dsdoctor", command, "--json", *args], capture_output=True,
                         text=True, timeout=180)
    try:
        return json.loads(res.stdout)
    except ValueError:
        return {"findings": [], "error": (res.stdout + res.stderr)[-500:]}


def try_case(name: str, work: Path) -> dict:
    rule, ranks, changes, flags, want_patch = CASES[name]
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    bad, fixed = d / "ds_config.json", d / "ds_config.fixed.json"
    config = make_fixtures.merged_config(changes)
    bad.write_text(json.dumps(config, indent=2))
    rc = train(config, ranks, flags, d / "bad.log")
    report = dsdoctor("analyze", "--config", str(bad), "--write-config", str(fixed), "--force", str(d / "bad.log"))
    findings = report.get("findings", [])
    if rc == 0 and not any(f["severity"] in ("warning", "error") for f in findings):
        # DeepSpeed let the mistake pass and the log shows nothing: the check before launch is the front door
        report = dsdoctor("doctor", "--world-size", str(ranks), "--config", str(bad), "--fix", "--force", str(fixed))
        findings = report.get("findings", [])
    top = findings[0]["rule"] if findings else "-"
    named = any(f["rule"] == rule for f in findings)     # a run that went on: by its log or by doctor --config
    row = {"case": name, "rule": rule, "provoked": rc != 0 or named, "exit": rc, "top": top,
           "found": top == rule, "patch": "-", "trains": "-"}
    if not fixed.exists():
        row["patch"] = "none (right)" if not want_patch else "MISSING"
        return row
    if not want_patch:
        row["patch"] = "UNWANTED"
    from dsdoctor.fixes import validate_with_deepspeed
    new = json.loads(fixed.read_text())
    ok, err = validate_with_deepspeed(new, ranks)
    row["patch"] = row["patch"] if row["patch"] != "-" else ("valid" if ok else f"REJECTED: {err}")
    rc2 = train(new, ranks, flags, d / "fixed.log")
    text = (d / "fixed.log").read_text(errors="replace")
    after = dsdoctor("analyze", "--config", str(fixed), str(d / "fixed.log"))
    loud = [f["rule"] for f in after.get("findings", []) if f["severity"] in ("warning", "error")]
    row["trains"] = "yes" if rc2 == 0 and "training done" in text and not loud else \
        f"NO (exit {rc2}{', ' + ', '.join(loud) if loud else ''})"
    row["diff"] = {k: new.get(k) for k in set(new) | set(config) if new.get(k) != config.get(k)}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="cases (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="cases at once (default 1)")
    ap.add_argument("--work", type=Path, help="keep the runs' logs and configs here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="one JSON object per case instead of the table")
    args = ap.parse_args(argv)
    if args.list:
        for n, (rule, ranks, changes, _, _) in CASES.items():
            print(f"{n:30} {rule:38} {ranks} rank(s) {json.dumps(changes)}")
        return 0
    names = args.names or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"try_fixes: unknown case(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="dsdoctor-try-fixes-"))
    print(f"{'case':30} {'rule':38} {'provoked':8} {'found':5} {'patch':14} trains", flush=True)
    good = 0
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for row in pool.map(lambda n: try_case(n, work), names):
            good += row["found"] and row["trains"] in ("yes", "-") and row["patch"] in ("valid", "none (right)")
            if args.json:
                print(json.dumps(row, default=str), flush=True)
                continue
            found = "yes" if row["found"] else f"no: {row['top']}"
            print(f"{row['case']:30} {row['rule']:38} {'yes' if row['provoked'] else 'NO':8} {found:5} "
                  f"{row['patch']:14} {row['trains']}", flush=True)
    print(f"{good}/{len(names)} cases: found, right patch, and the rerun trains (logs in {work})")
    return 0 if good == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
