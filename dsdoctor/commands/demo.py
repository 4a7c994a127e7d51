"""`dsdoctor demo`: train a tiny model with DeepSpeed on the CPU, break it, show the diagnosis.

It runs the fault-injection script dsdoctor/demo/train.py through `dsdoctor run`, exactly as
a user would run their own script, so what it prints is what a real run prints. Faults that
need other ranks (slow-rank, stall) use 2 ranks through torch.distributed.run with gloo.
"""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import typer

FAULTS = ("stall", "slow-rank", "overflow", "nan", "oom", "none")
DEFAULT_FAULT = "stall"      # the one only live mode can show: a hung rank named in 15 s, not 30 min

# fault -> (ranks it needs, train.py arguments, dsdoctor run options, extra environment, what to expect)
PLANS: dict[str, tuple[int, list[str], list[str], dict[str, str], str]] = {
    "stall": (2, ["--fault", "stall", "--fault-rank", "1", "--fault-step", "10", "--steps", "100000"],
              ["--stall-timeout", "15", "--on-stall", "abort"], {},
              "rank 1 blocks forever before backward at step 10; rank 0 waits in the gradient all-reduce. "
              "Without dsdoctor, gloo would wait 30 minutes and print nothing. Expect: the stall named "
              "(rank 1, step 10) after 15 s, every rank's Python stacks in the run folder, the run ended."),
    "slow-rank": (2, ["--fault", "slow-rank", "--fault-rank", "1", "--slow-ms", "80", "--steps", "80"], [],
                  {"DSDOCTOR_EXCHANGE_EVERY": "5"},
                  "rank 1 sleeps 80 ms in every forward. Expect: rank 1 named as a compute straggler "
                  "(forward), rank 0 recognised as waiting for it."),
    "overflow": (1, ["--zero-stage", "2", "--dtype", "fp16", "--fault", "overflow", "--fault-step", "5", "--steps", "200"], [], {},
                 "fp16 with ZeRO-2 (CPU accelerator patched to allow fp16, demo only) and an input that overflows "
                 "on every step from step 5. Expect: a loss-scale collapse warning several steps before DeepSpeed's own "
                 "'Current loss scale already at minimum' exception."),
    "nan": (1, ["--fault", "nan", "--fault-step", "10", "--steps", "30"], ["--localize-nan"], {},
            "a NaN in the input of step 10. Expect: the non-finite loss at step 10 and the first module "
            "whose output is non-finite."),
    "oom": (1, ["--fault", "oom", "--fault-step", "5", "--steps", "20"], [], {},
            "the address space of the process is capped and forward allocates 64 GiB at step 5. Expect: a host "
            "OOM in phase forward with the process memory."),
    "none": (1, ["--steps", "50"], [], {}, "a healthy run. Expect: no problem found."),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_command(fault: str, ranks: int | None, out: Path, steps: int | None = None) -> tuple[list[str], dict[str, str], str]:
    need, train_args, run_opts, env_extra, expect = PLANS[fault]
    n = max(need, ranks or need)
    train_args = list(train_args)
    if steps is not None:
        i = train_args.index("--steps")
        train_args[i + 1] = str(steps)
    if n > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n),
                  "--master_port", str(free_port()), "-m", "dsdoctor.demo.train"]
    else:
        launch = [sys.executable, "-m", "dsdoctor.demo.train"]
    stage = [] if "--zero-stage" in train_args else ["--zero-stage", "2" if n > 1 else "0"]
    cmd = [sys.executable, "-m", "dsdoctor", "run", "--out", str(out), *run_opts, "--", *launch,
           *stage, *train_args]
    env = {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **env_extra}
    return cmd, env, expect


def demo(
    fault: str = typer.Option(DEFAULT_FAULT, "--fault", "-f", help=f"Fault to inject: {' | '.join(FAULTS)}."),
    ranks: Optional[int] = typer.Option(None, "--ranks", "-n", min=1, max=8, help="Ranks (default: 2 for slow-rank and stall, else 1)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default ./dsdoctor-demo-<fault>-<timestamp>)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override the number of training steps."),
) -> None:
    """Train a tiny model with DeepSpeed on the CPU, inject a fault, and show dsdoctor's diagnosis."""
    from .common import fail
    if fault not in FAULTS:
        fail(f"unknown fault {fault!r}; choose one of: {', '.join(FAULTS)}")
    import importlib.util
    for mod in ("torch", "deepspeed"):
        if importlib.util.find_spec(mod) is None:
            fail(f"the demo trains with DeepSpeed on the CPU and needs {mod}: pip install torch deepspeed")
    out = out or Path(f"dsdoctor-demo-{fault}-{time.strftime('%Y%m%d-%H%M%S')}")
    cmd, env_extra, expect = build_command(fault, ranks, out, steps)
    shown = " ".join(shlex.quote(c) for c in cmd).replace(sys.executable, "python")
    print(f"dsdoctor demo · fault: {fault}\n  {expect}\n  running: {shown}\n", file=sys.stderr, flush=True)
    try:
        rc = subprocess.call(cmd, env={**os.environ, **env_extra})
    except KeyboardInterrupt:
        rc = 130
    raise typer.Exit(rc)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
