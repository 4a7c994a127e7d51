"""A tiny DeepSpeed training script for the CPU, with fault switches.

This is an ordinary user script: it does not import dsdoctor. `dsdoctor run` / `dsdoctor demo`
and the tests run it unchanged and watch it from the outside, which is the point.

    python dsdoctor/demo/train.py --steps 50
    torchrun --nproc_per_node 2 dsdoctor/demo/train.py --zero-stage 2 --fault slow-rank --fault-rank 1

Faults (injected at optimizer step --fault-step K on rank --fault-rank R):
  nan        NaN in the input of step K (so the loss and the gradients are NaN)
  overflow   fp16 gradients overflow to inf on every step from K on (the loss stays finite),
             as when activations/gradients outgrow fp16's range: the loss scale collapses
  oom        RLIMIT_AS lowered in this process, then a huge allocation inside forward
  slow-rank  rank R sleeps in forward on every step
  stall      rank R blocks forever before backward at step K
  gil-hang   rank R blocks forever before backward at step K inside C code that holds the
             GIL (libc sleep through ctypes.PyDLL): none of its Python threads can run
  sigkill    rank R sends itself SIGKILL before backward at step K, as the kernel's OOM killer would
             (dsdoctor run reads the kernel's OOM-kill counters: it reports killed-from-outside)
  raise      rank R raises an exception no rule knows (a LookupError) before backward at step K

A transient pause, alone or before one of the faults above (a slow checkpoint save, say):
  --pause-s S --pause-step P   rank R sleeps S seconds before backward at step P, then trains on
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="optimizer steps")
    p.add_argument("--zero-stage", type=int, default=0, choices=(0, 1, 2, 3))
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--gas", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--initial-scale-power", type=int, default=8, help="fp16 initial loss scale 2**N")
    p.add_argument("--static-loss-scale", type=float, default=0, help="fp16 static loss scale (0: dynamic)")
    p.add_argument("--fault", default="none",
                   choices=("none", "nan", "overflow", "oom", "slow-rank", "stall", "gil-hang", "sigkill", "raise"))
    p.add_argument("--fault-step", type=int, default=10)
    p.add_argument("--fault-rank", type=int, default=0)
    p.add_argument("--slow-ms", type=float, default=60.0, help="extra forward time of the slow rank")
    p.add_argument("--pause-s", type=float, default=0.0, help="rank --fault-rank pauses this long once (0: never)")
    p.add_argument("--pause-step", type=int, default=5, help="step of the --pause-s pause")
    p.add_argument("--step-sleep-ms", type=float, default=0.0, help="pad every step (data loading time)")
    p.add_argument("--print-every", type=int, default=10)
    p.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)   # passed by the deepspeed launcher
    return p.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_env() -> None:
    """`python train.py` without a launcher: pretend to be rank 0 of 1."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))


def allow_fp16_on_cpu() -> None:
    """TEST-ONLY PATCH: DeepSpeed's CPU accelerator refuses fp16 (deepspeed/accelerator/
    cpu_accelerator.py: CPU_Accelerator.is_fp16_supported, supported_dtypes).
    Claim support so the real fp16 loss scaler can be exercised on a CPU-only machine.
    Never do this for real training."""
    import torch
    from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator
    CPU_Accelerator.is_fp16_supported = lambda self: True
    CPU_Accelerator.supported_dtypes = lambda self: [torch.float, torch.bfloat16, torch.float16]


def build_model(args: argparse.Namespace, rank: int):
    import torch
    from torch import nn

    class Fault:
        """Where the model injects the requested fault."""

        def __init__(self) -> None:
            self.step = 0

        def active(self, kind: str, every_step_from: bool = False) -> bool:
            if args.fault != kind or rank != args.fault_rank:
                return False
            return self.step >= args.fault_step if every_step_from else self.step == args.fault_step

    fault = Fault()

    class GradOverflow(torch.autograd.Function):
        """Identity forward; backward scales the gradient past fp16's max (65504) -> inf."""

        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return g * 1e30

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Linear(args.hidden, args.hidden)]
            for _ in range(args.layers - 1):
                layers += [nn.GELU(), nn.Linear(args.hidden, args.hidden)]
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(args.hidden, 1)

        def forward(self, x, y):
            if args.fault == "slow-rank" and rank == args.fault_rank:
                time.sleep(args.slow_ms / 1000)
            if fault.active("oom"):
                import resource
                import psutil
                vms = psutil.Process().memory_info().vms
                resource.setrlimit(resource.RLIMIT_AS, (vms + (512 << 20), resource.RLIM_INFINITY))
                big = torch.empty(64 << 30, dtype=torch.uint8)   # 64 GiB: refused by the limit
                big.fill_(1)
            h = self.body(x)
            if fault.active("overflow", every_step_from=True):
                h = GradOverflow.apply(h)      # on an activation: the input needs no gradient
            out = self.head(h).squeeze(-1)
            return nn.functional.mse_loss(out.float(), y.float())

    return TinyNet(), fault


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    single_process_env()
    import deepspeed
    import torch

    if args.dtype == "fp16":
        allow_fp16_on_cpu()
    deepspeed.init_distributed(dist_backend="gloo")
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(1234)
    model, fault = build_model(args, rank)
    config = {
        "train_micro_batch_size_per_gpu": args.micro_batch,
        "gradient_accumulation_steps": args.gas,
        "train_batch_size": args.micro_batch * args.gas * world,
        "zero_optimization": {"stage": args.zero_stage},
        "gradient_clipping": 1.0,
    }
    if args.dtype == "bf16":
        config["bf16"] = {"enabled": True}
    elif args.dtype == "fp16":
        config["fp16"] = {"enabled": True, "initial_scale_power": args.initial_scale_power,
                          "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1,
                          "loss_scale": args.static_loss_scale}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    gen = torch.Generator().manual_seed(100 + rank)
    w_true = torch.randn(args.hidden, generator=gen)

    t0 = time.time()
    paused = False
    for step in range(args.steps):
        fault.step = step
        for _ in range(args.gas):
            x = torch.randn(args.micro_batch, args.hidden, generator=gen)
            y = x @ w_true / args.hidden ** 0.5
            if fault.active("nan"):
                x[0, 0] = float("nan")
            if args.step_sleep_ms:
                time.sleep(args.step_sleep_ms / 1000)
            loss = engine(x.to(dtype), y)
            if args.pause_s > 0 and step == args.pause_step and rank == args.fault_rank and not paused:
                paused = True
                print(f"[rank {rank}] pausing {args.pause_s:g} s before backward at step {step}", flush=True)
                time.sleep(args.pause_s)
                print(f"[rank {rank}] resuming at step {step}", flush=True)
            if fault.active("stall"):
                print(f"[rank {rank}] stalling before backward at step {step}", flush=True)
                while True:
                    time.sleep(3600)
            if fault.active("gil-hang"):
                print(f"[rank {rank}] hanging with the GIL held before backward at step {step}", flush=True)
                import ctypes
                while True:
                    ctypes.PyDLL(None).sleep(3600)     # PyDLL: the GIL is not released
            if fault.active("sigkill"):
                time.sleep(1.5)         # let the step events of the steps before reach the disk
                os.kill(os.getpid(), 9)
            if fault.active("raise"):
                raise LookupError(f"demo fault: no entry for sample {step} in the index")
            engine.backward(loss)
            engine.step()
        if rank == 0 and (step % args.print_every == 0 or step == args.steps - 1):
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    if rank == 0:
        dt = (time.time() - t0) / max(args.steps, 1)
        print(f"done: {args.steps} steps, {dt * 1000:.1f} ms/step", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
