"""Fault-to-finding latency of live mode, each beside the baseline it beats.

    python benchmarks/detection_latency.py [--only nan,overflow,stall,straggler,healthy]

Runs dsdoctor/demo/train.py through `dsdoctor run` (real DeepSpeed on the CPU, gloo; 2 ranks
for stall, straggler and the healthy run), then replays the events every rank wrote, in time
order, through the same Diagnoser the ranks ran live, and notes the event at which each
finding first appeared. Measured, not asserted.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GLOO_TIMEOUT_S = 1800     # torch default for gloo groups; DeepSpeed's ZeRO groups use it (torch/distributed/constants.py: default_pg_timeout)
NCCL_TIMEOUT_S = 600      # torch default for NCCL process groups (10 min)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(out: Path, train: list[str], ranks: int = 1, doctor: list[str] = (), env: dict | None = None,
        limit: float = 400) -> tuple[int, float]:
    if ranks > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                  "--master_port", str(free_port()), "-m", "dsdoctor.demo.train", "--zero-stage", "2"]
    else:
        launch = [sys.executable, "-m", "dsdoctor.demo.train"]
    cmd = [sys.executable, "-m", "dsdoctor", "run", "--out", str(out), "--no-tensorboard", *doctor, "--",
           *launch, "--hidden", "64", "--layers", "2", *train]
    e = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", **(env or {}))
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e, start_new_session=True)
    try:
        rc = p.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        import psutil
        for c in psutil.Process(p.pid).children(recursive=True) + [psutil.Process(p.pid)]:
            try:
                c.kill()
            except psutil.Error:
                pass
        rc = -9
    return rc, time.time() - t0


def replay(out: Path) -> tuple[dict[str, dict], dict[str, list]]:
    """First appearance of each finding (by rule) while replaying all ranks' events in time
    order: {rule: {category, ranks, time, step, rank_step}}; and the events by kind."""
    from dsdoctor.events import read_events
    from dsdoctor.pipeline import Diagnoser
    evs = []
    for f in sorted(out.glob("events-rank*.jsonl")):
        evs += list(read_events(f.open(encoding="utf-8"), str(f)))
    evs.sort(key=lambda e: e.time or 0)
    d = Diagnoser()
    first: dict[str, dict] = {}
    latest_step: dict[int, int] = {}
    by_kind: dict[str, list] = {}
    for ev in evs:
        by_kind.setdefault(ev.kind, []).append(ev)
        if ev.kind == "step" and ev.rank is not None and ev.step is not None:
            latest_step[ev.rank] = ev.step
        for f in d.feed(ev):
            first.setdefault(f.rule, {"category": f.category, "ranks": f.ranks, "time": ev.time,
                                      "step": ev.step, "rank_step": latest_step.get(ev.rank)})
    for f in d.finish():
        first.setdefault(f.rule, {"category": f.category, "ranks": f.ranks, "time": None, "step": None,
                                  "rank_step": None})
    return first, by_kind


def by_category(first: dict[str, dict], cat: str) -> tuple[str, dict] | None:
    hits = [(r, v) for r, v in first.items() if v["category"] == cat and v["time"] is not None]
    return min(hits, key=lambda x: x[1]["time"]) if hits else None


def step_time(by_kind: dict, step: int, rank: int = 0) -> float | None:
    for ev in by_kind.get("step", []):
        if ev.step == step and ev.rank == rank:
            return ev.time
    return None


def bench_nan(tmp: Path) -> None:
    out = tmp / "nan"
    run(out, ["--fault", "nan", "--fault-step", "10", "--steps", "40"])
    first, kinds = replay(out)
    hit = by_category(first, "nan_loss")
    if not hit:
        print("  nan: NO FINDING")
        return
    rule, v = hit
    t_fault = step_time(kinds, 10)
    print(f"  nan (fp32, 1 rank, NaN input at step 10): {rule} at step {v['step']}, found when the rank was at "
          f"step {v['rank_step']} ({v['rank_step'] - 10} steps, {v['time'] - t_fault:.2f} s after step 10 ended)"
          f"  | baseline: DeepSpeed fp32/bf16 never stops on a NaN loss; training goes on with NaN weights")


def bench_overflow(tmp: Path) -> None:
    out = tmp / "overflow"
    run(out, ["--zero-stage", "2", "--dtype", "fp16", "--fault", "overflow", "--fault-step", "5", "--steps", "200"])
    first, kinds = replay(out)
    hit = by_category(first, "loss_scale_collapse")
    abort = (kinds.get("scale_at_minimum") or kinds.get("exception") or [None])[0]
    if not hit:
        print("  loss-scale collapse: NO FINDING")
        return
    rule, v = hit
    abort_step = abort.step if abort is not None else None
    ahead = (abort_step - v["rank_step"]) if abort_step is not None and v["rank_step"] is not None else None
    secs = (abort.time - v["time"]) if abort is not None else None
    print(f"  loss-scale collapse (fp16 ZeRO-2, overflow every step from step 5): {rule} at step {v['rank_step']}; "
          f"DeepSpeed's 'Current loss scale already at minimum' abort at step {abort_step}"
          f"  | {ahead} steps ({secs:.2f} s) before DeepSpeed's own exception" if ahead is not None else
          f"  loss-scale collapse: {rule} at step {v['rank_step']}; DeepSpeed did not abort within the run")


def bench_stall(tmp: Path) -> None:
    out = tmp / "stall"
    rc, took = run(out, ["--fault", "stall", "--fault-rank", "1", "--fault-step", "10", "--steps", "100000"], ranks=2,
                   doctor=["--stall-timeout", "15", "--on-stall", "abort"])
    first, kinds = replay(out)
    hit = by_category(first, "comm_stall")
    if not hit:
        print(f"  stall: NO FINDING (exit code {rc}, {took:.0f} s)")
        return
    rule, v = hit
    last = max((e.time for e in kinds.get("step", []) if e.rank == 1), default=None)
    lat = v["time"] - last if last else float("nan")
    print(f"  stall (rank 1 blocks before backward at step 10, --stall-timeout 15): {rule} naming rank(s) "
          f"{v['ranks']} {lat:.1f} s after rank 1's last step; run ended with exit code {rc} after {took:.0f} s "
          f"in total  | baseline: gloo {GLOO_TIMEOUT_S} s ({GLOO_TIMEOUT_S / lat:.0f}x later), NCCL "
          f"{NCCL_TIMEOUT_S} s, neither naming the rank")


def bench_straggler(tmp: Path) -> None:
    out = tmp / "straggler"
    run(out, ["--fault", "slow-rank", "--fault-rank", "1", "--slow-ms", "80", "--steps", "80"], ranks=2,
        env={"DSDOCTOR_EXCHANGE_EVERY": "5"})
    first, kinds = replay(out)
    live = {r: v for r, v in first.items() if r.startswith("straggler-live")}
    if not live:
        print("  straggler: NO FINDING")
        return
    rule, v = min(live.items(), key=lambda x: x[1]["time"])
    print(f"  straggler (rank 1 +80 ms in forward from step 0, K=5): {rule} naming rank(s) {v['ranks']} at step "
          f"{v['rank_step']} of rank 0 (3 exchange windows in a row)  | baseline: DeepSpeed names no rank "
          f"(wall_clock_breakdown prints rank 0's timers only)")


def bench_healthy(tmp: Path, steps: int) -> None:
    out = tmp / "healthy"
    # 60 ms of simulated data loading per step on every rank, so that 1,000 steps last long
    # enough for ~100 exchange rounds (a rank publishes at most once per second)
    run(out, ["--steps", str(steps), "--print-every", "100", "--step-sleep-ms", "60"], ranks=2, limit=900)
    first, kinds = replay(out)
    n_steps = len([e for e in kinds.get("step", []) if e.rank == 0])
    rounds = len(kinds.get("rank_times", []))
    live = sorted(r for r in first if r.startswith("straggler-live"))
    other = sorted(r for r, v in first.items() if v["category"] == "straggler" and not r.startswith("straggler-live"))
    stalls = sorted(r for r, v in first.items() if v["category"] == "comm_stall")
    print(f"  healthy run (2 ranks, {n_steps} steps, 60 ms data wait, {rounds} exchange rounds): live straggler findings "
          f"{len(live)} {live or ''}, stall findings {len(stalls)}  (goal 0)"
          + (f"; the log-timer slow-rank detector over the same step events: {other}" if other else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="nan,overflow,stall,straggler,healthy")
    ap.add_argument("--healthy-steps", type=int, default=1000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dsdoctor-latency-"))
    print(f"detection_latency (real DeepSpeed on the CPU; run folders under {tmp})")
    todo = args.only.split(",")
    for name, fn in (("nan", bench_nan), ("overflow", bench_overflow), ("stall", bench_stall),
                     ("straggler", bench_straggler)):
        if name in todo:
            fn(tmp)
    if "healthy" in todo:
        bench_healthy(tmp, args.healthy_steps)


if __name__ == "__main__":
    main()
