"""Step-time overhead of the doctor on a real DeepSpeed CPU training (2 ranks, gloo, ZeRO-2).

    python benchmarks/overhead.py [--ranks 2] [--rounds 8] [--steps 60]

One training session per rank: the same engine alternates blocks of steps without the doctor
and with it (dsdoctor.attach with its defaults: hooks, exchange, watchdog, telemetry,
TensorBoard; closed after the block, which leaves the engine as it was). The order flips every
round so drift and warm-up hit both sides equally. Rank 0 prints the median step time of each
side and their ratio (goal <= 1.01). Measured, not asserted: a busy 2-core machine is noisy;
longer blocks (--steps 150) amortise what each attach starts (threads, the TensorBoard file),
which a real run pays once.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8, help="off/on block pairs")
    ap.add_argument("--steps", type=int, default=60, help="steps per block")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--no-tensorboard", action="store_true", help="attach with tensorboard=False")
    return ap.parse_args()


def launch(args: argparse.Namespace) -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.ranks),
           "--master_port", str(port), __file__, *sys.argv[1:]]
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    return subprocess.call(cmd, env=env)


def train(args: argparse.Namespace) -> None:
    import logging

    import deepspeed
    import torch
    from torch import nn

    import dsdoctor
    deepspeed.init_distributed(dist_backend="gloo")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    rank = int(os.environ["RANK"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(args.hidden, args.hidden), nn.GELU(), nn.Linear(args.hidden, args.hidden),
                          nn.GELU(), nn.Linear(args.hidden, 1))
    cfg = {"train_micro_batch_size_per_gpu": args.micro_batch, "gradient_accumulation_steps": 1,
           "zero_optimization": {"stage": 2}, "steps_per_print": 10 ** 9}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4),
                                      config=cfg)
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(args.micro_batch, args.hidden, generator=gen)
    y = torch.randn(args.micro_batch, generator=gen)

    cpu = {"on": 0.0, "off": 0.0}

    def block(n: int, mode: str = "warm") -> list[float]:
        times = []
        c0 = time.process_time()        # CPU of every thread of this rank, the doctor's included
        for _ in range(n):
            t0 = time.perf_counter()
            loss = nn.functional.mse_loss(engine(x).squeeze(-1), y)
            engine.backward(loss)
            engine.step()
            times.append(time.perf_counter() - t0)
        if mode in cpu:
            cpu[mode] += time.process_time() - c0
        return times

    block(30)                                  # warm-up
    out = tempfile.mkdtemp(prefix="dsdoctor-overhead-")
    off: list[float] = []
    on: list[float] = []
    pairs = []
    for r in range(args.rounds):
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            if mode == "on":
                doc = dsdoctor.attach(engine, out=out, quiet=True,
                                      tensorboard=False if args.no_tensorboard else None)
                t = block(args.steps, "on")
                doc.close()
                on += t
            else:
                t = block(args.steps, "off")
                off += t
        pairs.append(statistics.median(on[-args.steps:]) / statistics.median(off[-args.steps:]))
    if rank == 0:
        m_off, m_on = statistics.median(off), statistics.median(on)
        print(f"overhead: {args.ranks} rank(s), ZeRO-2 fp32 on the CPU, {args.rounds} interleaved off/on block "
              f"pairs of {args.steps} steps")
        print(f"  median step without the doctor: {m_off * 1000:.2f} ms")
        print(f"  median step with the doctor:    {m_on * 1000:.2f} ms")
        print(f"  ratio (with / without): {m_on / m_off:.4f}   (goal <= 1.01)")
        print(f"  CPU time per step (all threads of rank 0): {cpu['off'] / len(off) * 1000:.2f} ms without, "
              f"{cpu['on'] / len(on) * 1000:.2f} ms with: ratio {cpu['on'] / cpu['off']:.4f}")
        print(f"  per-pair ratios: {', '.join(f'{p:.3f}' for p in pairs)}; median of pairs "
              f"{statistics.median(pairs):.4f}")
        print(f"  events written under {out}")


def main() -> None:
    args = parse()
    if "RANK" not in os.environ:
        sys.exit(launch(args))
    train(args)


if __name__ == "__main__":
    main()
