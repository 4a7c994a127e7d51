#!/usr/bin/env python3
"""Regenerate fixtures/*.log by running REAL DeepSpeed on the CPU with injected faults.

    python scripts/make_fixtures.py                # all scenarios (about 3-5 minutes)
    python scripts/make_fixtures.py healthy nan    # some of them
    python scripts/make_fixtures.py --list

Each scenario runs a tiny model under `torchrun --standalone` (gloo, DS_ACCELERATOR=cpu) or a
plain `python`, captures the console (stdout and stderr interleaved, as a user would save it)
into fixtures/<name>.log, and is bounded by a wall-clock timeout after which the whole
process group is killed. What each fixture must be diagnosed as is in fixtures/expected.yaml
(read by tests/test_golden.py); fixtures/excerpts/ holds hand-written excerpts (see the
README there) and is not touched by this script.

Trimming rule (fixtures stay < 200 KB): a log over MAX_BYTES keeps its first HEAD_BYTES and its
last TAIL_BYTES, cut at line boundaries, with one line in between saying how many lines were
dropped. The failure is always at the end of a run, so the tail keeps it.

The worker (`make_fixtures.py worker ...`) is an ordinary DeepSpeed training loop; the fp16
run uses the test-only CPU accelerator patch (deepspeed/accelerator/cpu_accelerator.py: CPU_Accelerator.is_fp16_supported returns False).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
MAX_BYTES = 200 * 1024
HEAD_BYTES = 48 * 1024
TAIL_BYTES = 140 * 1024

# DeepSpeed config of every run, before each scenario's changes: what a user who wants to see
# what is going on sets (INFO log, a line per step, per-phase timers).
BASE_CONFIG = {
    "train_micro_batch_size_per_gpu": 8,
    "gradient_accumulation_steps": 1,
    "steps_per_print": 1,
    "wall_clock_breakdown": True,
    "log_level": "info",
    "gradient_clipping": 1.0,
    "zero_optimization": {"stage": 2},
    "bf16": {"enabled": True},
}

# name: (ranks, config changes (None deletes a key), worker flags, timeout s, what it shows)
SCENARIOS: dict[str, tuple[int, dict, list[str], int, str]] = {
    "healthy": (2, {}, ["--steps", "12"], 240,
                "2-rank ZeRO-2 bf16 run, log_level info, steps_per_print 1, wall_clock_breakdown: nothing wrong"),
    "nan": (2, {}, ["--steps", "12", "--fault", "nan", "--fault-step", "6", "--fault-rank", "1"], 240,
            "NaN in rank 1's input at step 6: loss nan, bf16 'OVERFLOW! Skipping step' from then on"),
    "fp16_overflow": (2, {"bf16": None, "fp16": {"enabled": True, "initial_scale_power": 6, "loss_scale_window": 1000,
                                                 "hysteresis": 2, "min_loss_scale": 1}},
                      ["--steps", "30", "--fault", "overflow", "--fault-step", "4", "--fault-rank", "0"], 240,
                      "fp16 gradients overflow on every step from step 4: the loss scale halves down to 1, then "
                      "'Current loss scale already at minimum'"),
    "host_oom": (2, {}, ["--steps", "12", "--fault", "oom", "--fault-step", "5", "--fault-rank", "1"], 240,
                 "rank 1 hits RLIMIT_AS at step 5: DefaultCPUAllocator: can't allocate memory"),
    "batch_size": (2, {"train_batch_size": 24}, ["--steps", "3"], 180,
                   "train_batch_size 24 != 8 * 1 * 2 ranks: DeepSpeed's batch-size assertion on both ranks"),
    "unknown_key": (1, {"zero_optimization": {"stage": 2, "offload_params": {"device": "cpu"}}}, ["--steps", "3"], 180,
                    "invented key zero_optimization.offload_params: pydantic extra_forbidden"),
    "rank_killed": (2, {}, ["--steps", "40", "--fault", "kill", "--fault-step", "6", "--fault-rank", "1"], 240,
                    "rank 1 is killed with SIGKILL at step 6; torchrun reports it and stops rank 0"),
}


# ---------------------------------------------------------------- the worker (one rank)
def worker(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="make_fixtures.py worker")
    ap.add_argument("--config", required=True, help="ds_config as JSON text")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--fault", default="none", choices=("none", "nan", "overflow", "fp16_range", "oom", "kill", "stall"))
    ap.add_argument("--fault-step", type=int, default=5)
    ap.add_argument("--fault-rank", type=int, default=0)
    ap.add_argument("--no-fp16-claim", action="store_true",
                    help="leave the CPU accelerator's own answer: no fp16 (DeepSpeed then refuses an fp16 config)")
    ap.add_argument("--ds-optimizer", action="store_true",
                    help="pass no optimizer of the script's own when the config has an \"optimizer\" section: DeepSpeed "
                         "builds it (as the HF Trainer does); with a client optimizer DeepSpeed ignores that section")
    ap.add_argument("--dist-timeout", type=float, default=0,
                    help="collective timeout in seconds (0: torch's default), so a 'stall' ends soon")
    args = ap.parse_args(argv)
    config = json.loads(args.config)

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:     # plain `python`: rank 0 of 1
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(29500 + os.getpid() % 1000))
    import deepspeed
    import torch
    from torch import nn

    if config.get("fp16", {}).get("enabled") and not args.no_fp16_claim:
        # TEST-ONLY (cpu_accelerator.py: CPU_Accelerator.is_fp16_supported): the CPU accelerator refuses fp16; claim support so
        # the real fp16 loss scaler runs.
        from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator
        CPU_Accelerator.is_fp16_supported = lambda self: True
        CPU_Accelerator.supported_dtypes = lambda self: [torch.float, torch.bfloat16, torch.float16]

    if args.dist_timeout:
        from datetime import timedelta
        deepspeed.init_distributed(dist_backend="gloo", timeout=timedelta(seconds=args.dist_timeout))
    else:
        deepspeed.init_distributed(dist_backend="gloo")
    rank = int(os.environ["RANK"])
    torch.manual_seed(1234)
    step_now = {"step": 0}

    def at_fault(kind: str, from_step_on: bool = False) -> bool:
        if args.fault != kind or rank != args.fault_rank:
            return False
        s = step_now["step"]
        return s >= args.fault_step if from_step_on else s == args.fault_step

    class GradOverflow(torch.autograd.Function):
        """Identity forward; backward multiplies the gradient past fp16's range (-> inf). 'overflow':
        by 1e30, past every half type's (its squares overflow bf16's grad norm too); 'fp16_range': by
        1e9, past fp16's largest value (65504) at any loss scale but well inside bf16's, as a model
        whose activations outgrow fp16 (what the bf16 fix is for)."""
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return g * (1e9 if args.fault == "fp16_range" else 1e30)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(args.hidden, args.hidden), nn.GELU(),
                                      nn.Linear(args.hidden, args.hidden))
            self.head = nn.Linear(args.hidden, 1)

        def forward(self, x, y):
            if at_fault("oom"):
                import resource
                import psutil
                vms = psutil.Process().memory_info().vms
                resource.setrlimit(resource.RLIMIT_AS, (vms + (256 << 20), resource.RLIM_INFINITY))
                torch.empty(16 << 30, dtype=torch.uint8).fill_(1)     # 16 GiB: refused by the limit
            h = self.body(x)
            if at_fault("overflow", from_step_on=True) or at_fault("fp16_range", from_step_on=True):
                h = GradOverflow.apply(h)
            return nn.functional.mse_loss(self.head(h).squeeze(-1).float(), y.float())

    model = Net()
    if args.ds_optimizer and "optimizer" in config:
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    dtype = torch.bfloat16 if config.get("bf16", {}).get("enabled") else (
        torch.float16 if config.get("fp16", {}).get("enabled") else torch.float32)
    gen = torch.Generator().manual_seed(100 + rank)
    w = torch.randn(args.hidden, generator=gen)
    micro = config["train_micro_batch_size_per_gpu"]
    for step in range(args.steps):
        step_now["step"] = step
        if at_fault("kill"):
            print(f"rank={rank} step={step}: sending SIGKILL to myself (fault injection)", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if at_fault("stall"):        # the other ranks wait in the next collective until its timeout
            print(f"rank={rank} step={step}: stalling (fault injection)", flush=True)
            time.sleep(3600)
        x = torch.randn(micro, args.hidden, generator=gen)
        y = x @ w / args.hidden ** 0.5
        if at_fault("nan"):
            x[0, 0] = float("nan")
        loss = engine(x.to(dtype), y)
        engine.backward(loss)
        engine.step()
        # what a training script typically prints itself
        print(f"rank={rank} step={step} loss: {loss.item():.4f}", flush=True)
    if rank == 0:
        print(f"training done: {args.steps} steps", flush=True)
    return 0


# ---------------------------------------------------------------- running the scenarios
def merged_config(changes: dict) -> dict:
    def merge(base: dict, patch: dict) -> dict:      # RFC 7386: None deletes
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = merge(out[k], v)
            else:
                out[k] = v
        return out
    return merge(BASE_CONFIG, changes)


def trim(data: bytes) -> bytes:
    """Keep the head and the tail of a log that is too big (see the module docstring)."""
    if len(data) <= MAX_BYTES:
        return data
    head_end = data.rfind(b"\n", 0, HEAD_BYTES) + 1
    tail_start = data.find(b"\n", len(data) - TAIL_BYTES) + 1
    dropped = data.count(b"\n", head_end, tail_start)
    return (data[:head_end] + f"[... {dropped} lines trimmed by scripts/make_fixtures.py ...]\n".encode()
            + data[tail_start:])


def worker_command(ranks: int, config: dict, flags: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one run of the worker: `torchrun --standalone` for several
    ranks, a plain `python` for one (tests/test_fixes_work.py runs the same)."""
    cfg = json.dumps(config)
    me = str(Path(__file__).resolve())
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               me, "worker", "--config", cfg, *flags]
    else:
        cmd = [sys.executable, me, "worker", "--config", cfg, *flags]
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               TORCH_CPP_LOG_LEVEL="WARNING")
    env.pop("DSDOCTOR_AUTOATTACH", None)
    return cmd, env


def run_worker(ranks: int, config: dict, flags: list[str], log: Path, limit: float) -> int | None:
    """One run of the worker (worker_command) in `log`'s folder, its output in `log`: its exit code, or
    None when it had not ended after `limit` seconds (its process group is then killed: the launcher and
    every rank it started). scripts/try_fixes.py reports such a run, tests/test_fixes_work.py fails on it."""
    cmd, env = worker_command(ranks, config, flags)
    with open(log, "wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent,
                             start_new_session=True)
        try:
            return p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return None


def run_scenario(name: str, out_dir: Path) -> tuple[int, float, int]:
    ranks, changes, flags, timeout, _ = SCENARIOS[name]
    cmd, env = worker_command(ranks, merged_config(changes), flags)
    t = time.time()
    work = tempfile.mkdtemp(prefix=f"dsdoctor-fixture-{name}-")     # whatever a run leaves behind
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=work,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # the launcher and every rank it started (torchrun 2.13 starts the ranks in sessions of their own,
        # which the launcher's process group does not reach: seen leaving ranks behind)
        import psutil
        ranks = psutil.Process(p.pid).children(recursive=True)
        os.killpg(p.pid, signal.SIGKILL)
        for r in ranks:
            try:
                r.kill()
            except psutil.Error:
                pass
        out, _ = p.communicate()
        out += f"\n[make_fixtures: killed after {timeout} s]\n".encode()
    data = trim(out)
    (out_dir / f"{name}.log").write_bytes(data)
    return p.returncode, time.time() - t, len(data)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"scenarios (default: all): {', '.join(SCENARIOS)}")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("--out", type=Path, default=FIXTURES, help="output folder (default fixtures/)")
    args = ap.parse_args(argv)
    if args.list:
        for n, sc in SCENARIOS.items():
            print(f"{n:14} {sc[0]} rank(s)  {sc[4]}")
        return 0
    bad = [n for n in args.names if n not in SCENARIOS]
    if bad:
        print(f"make_fixtures: unknown scenario(s): {', '.join(bad)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(SCENARIOS):
        code, dt, size = run_scenario(name, args.out)
        print(f"{name:14} exit {code:>4}  {dt:5.1f} s  {size / 1024:6.1f} KB  -> {args.out / (name + '.log')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
