"""What keeping each step's loss tensor costs the training thread, in one process, side by side.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/kept_tensors.py --threads 1 [--rounds 10] [--steps 200]
    python benchmarks/kept_tensors.py --threads 2            # the plain 1-rank script: torch on both cores

One rank of real DeepSpeed CPU training (ZeRO-2, gloo, world size 1), blocks of steps in a
random order per round, each block one of:
  off    no doctor;
  on     dsdoctor.attach with its defaults;
  onold  the same, with the hooks as they were before this benchmark was written: the step's
         loss and grad norm kept as tensors until the writer thread's next round (0.5 s);
  keep   no doctor, the script itself keeps its last 100 losses (the mechanism alone);
  onfloat  `on` with the loss and grad norm read as before Tensor.item() was used:
         float(x.detach()) (modes: --modes off,on,onfloat,off2);
  off2   no doctor again: the A/A floor.
Also per block, the CPU of the doctor's wrappers' own code per step ("own": thread_time around
engine.forward/backward/step minus thread_time inside DeepSpeed's methods, as overhead.py).
Per block, the training thread's own figures per step: wall time, CPU (thread_time), user and
system time and minor page faults (getrusage(RUSAGE_THREAD)); per mode the medians, and the
paired difference with `off` in the same round (median and quartiles). A fault count does not
depend on the machine's load, so this resolves what the wall clock cannot on a shared machine.

Why a kept loss costs: it keeps its autograd graph (grad_fn and every node behind it) alive;
those small long-lived allocations among the step's large transient tensors make malloc fault
in more pages every step (system time inside DeepSpeed's forward/backward/step).
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time

from overhead import clocked   # benchmarks/overhead.py: the same clock around DeepSpeed's methods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="off,on,onold,keep,off2")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--settle", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", DS_ACCELERATOR="cpu")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    import logging

    import deepspeed
    import torch
    from torch import nn

    import dsdoctor
    import dsdoctor.live.hooks as hooks
    deepspeed.init_distributed(dist_backend="gloo")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = nn.Sequential(nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 1))
    cfg = {"train_micro_batch_size_per_gpu": 32, "zero_optimization": {"stage": 2}, "steps_per_print": 10 ** 9}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4),
                                      config=cfg)
    x, y = torch.randn(32, 512), torch.randn(32)
    real_host_float = hooks._host_float

    def float_host_float(v):        # `onfloat`: the read before Tensor.item() (float of a detached tensor)
        if isinstance(v, torch.Tensor):
            return float(v.detach() if v.requires_grad else v) if v.numel() == 1 else None
        return float(v) if isinstance(v, (int, float)) else None

    inner, outer = [0], [0]

    for name in ("forward", "backward", "step"):             # DeepSpeed's own methods, clocked
        object.__setattr__(engine, name, clocked(getattr(engine, name), inner))

    def old_host_float(v):          # `onold`: at the optimizer step the tensors are kept as they are
        if sys._getframe(1).f_code.co_name == "_optimizer_step_done":
            return v
        return real_host_float(v)

    kept: list = []

    def steps(n: int, keep: bool) -> None:
        for _ in range(n):
            loss = nn.functional.mse_loss(engine(x).squeeze(-1), y)
            engine.backward(loss)
            engine.step()
            if keep:
                kept.append(loss)
                del kept[:-100]

    out = tempfile.mkdtemp(prefix="dsdoctor-kept-")
    steps(30, False)
    dsdoctor.attach(engine, out=out, quiet=True).close()      # one-time imports, untimed
    modes = args.modes.split(",")
    res: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    rng = random.Random(0)
    for _ in range(args.rounds):
        for mode in rng.sample(modes, len(modes)):
            hooks._host_float = {"onold": old_host_float, "onfloat": float_host_float}.get(mode, real_host_float)
            doc = dsdoctor.attach(engine, out=out, quiet=True) if mode in ("on", "onold", "onfloat") else None
            saved = {n: engine.__dict__[n] for n in ("forward", "backward", "step")}
            for n, fn in saved.items():      # around the doctor's wrappers, or DeepSpeed's methods when off
                object.__setattr__(engine, n, clocked(fn, outer))
            kept.clear()
            steps(args.settle, mode == "keep")
            r0, c0, t0 = resource.getrusage(resource.RUSAGE_THREAD), time.thread_time_ns(), time.perf_counter()
            i0, o0 = inner[0], outer[0]
            steps(args.steps, mode == "keep")
            t1, c1, r1 = time.perf_counter(), time.thread_time_ns(), resource.getrusage(resource.RUSAGE_THREAD)
            n = args.steps
            res[mode].append({"wall": (t1 - t0) / n * 1e6, "cpu": (c1 - c0) / n / 1e3,
                              "user": (r1.ru_utime - r0.ru_utime) / n * 1e6,
                              "sys": (r1.ru_stime - r0.ru_stime) / n * 1e6,
                              "faults": (r1.ru_minflt - r0.ru_minflt) / n,
                              "own": ((outer[0] - o0) - (inner[0] - i0)) / n / 1e3})
            for n_, fn in saved.items():
                object.__setattr__(engine, n_, fn)
            if doc is not None:
                doc.close()
    hooks._host_float = real_host_float
    print(f"kept_tensors: 1 rank, {args.threads} torch thread(s), {args.rounds} rounds of {args.settle} + "
          f"{args.steps} steps per block; the training thread per step (medians of blocks); load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    keys = ("wall", "cpu", "user", "sys", "faults", "own")
    for m in modes:
        print(f"  {m:6s} " + "  ".join(f"{k} {statistics.median(r[k] for r in res[m]):8.1f}" for k in keys))
        if m == "off" or "off" not in res:
            continue
        parts = []
        for k in ("cpu", "sys", "faults", "own"):
            d = sorted(a[k] - b[k] for a, b in zip(res[m], res["off"]))
            parts.append(f"{k} {statistics.median(d):+.1f} [{d[len(d) // 4]:+.1f}, {d[3 * len(d) // 4]:+.1f}]")
        w = statistics.median(a["wall"] / b["wall"] for a, b in zip(res[m], res["off"]))
        print(f"         minus off, paired (median [quartiles]): " + ", ".join(parts) + f"; wall ratio {w:.4f}")
    sys.stdout.flush()
    os._exit(0)                     # no gloo teardown at exit (it can abort the interpreter)


if __name__ == "__main__":
    main()
