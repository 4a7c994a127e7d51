"""Instructions per training step with and without the doctor: a figure the machine's load does not move.

    python benchmarks/instructions.py [--n 40] [--against OTHER_CHECKOUT] [--hidden 512] [--micro-batch 32]

(about 20 minutes: valgrind takes ~8 minutes to import DeepSpeed, and a step ~4 s)

overhead.py's wall-clock ratio needs a quiet machine, and this one never is. Here the same
training as overhead.py (1 rank, DeepSpeed ZeRO-2 on the CPU, gloo, AdamW, the MLP of
--hidden, one torch thread) runs once under valgrind's callgrind, which counts the
instructions each thread executes, in windows of --n steps: bare, attached (dsdoctor.attach,
its defaults but telemetry off), the writer's round for the attached steps (run on the
training thread at the window's end: natively every 0.5 s, ~40 steps of 12 ms), and bare
again after close(). PYTHONHASHSEED is fixed; the two bare windows show the spread.
With --against, the other checkout's doctor in a second valgrind at the same time.

What it measures: the instructions per step that the doctor adds on the training thread (the
wrappers and the per-step tuple) and in the writer's round (events, JSON lines, Diagnoser,
TensorBoard), exactly, whatever the machine's load; as a ratio to the bare step's.
What it does not:
- time. An instruction of the doctor's Python code costs more than one of torch's vector
  loops (cache misses after the step's compute, branch mispredictions); a wait for the GIL,
  a thread's wake-up, a page fault's kernel time are not counted. The ratio of instructions
  is a floor of the CPU ratio, not the step-time ratio;
- work done per period of time rather than per step: the writer thread's wake-up,
  TensorBoard's record per window of >= 1 s, the memory reading (every >= 2 s), the
  watchdog's tick (every 10 s natively), telemetry (off here), and with more ranks the
  exchange (overhead.py measures 2 ranks): under valgrind a step is ~300 times slower, so
  they would come ~300 times as often per step; they are stretched until they do not run in
  the windows (live_path.py times the exchange and watchdog ticks natively);
- the detectors' first steps (the early-training checks: the first 300 steps, the loss
  collapse's first 100), past in 12 steps here only for some; a writer round of another size
  than --n steps.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time


def child(args: argparse.Namespace) -> None:
    """One training under callgrind. mark() (os.getppid, which nothing else here calls) makes
    callgrind dump the training thread's count: the windows are bare steps, attached steps, the
    writer's round for them, and bare steps again after close()."""
    import torch

    from overhead import mlp_training                       # (benchmarks/ is this script's folder)
    engine, step = mlp_training(args.hidden, args.micro_batch)
    torch.set_num_threads(1)
    mark = os.getppid

    def steps(n: int) -> None:
        for _ in range(n):
            step()

    import dsdoctor
    from dsdoctor.live import hooks, session, tboard, watchdog
    # Work done per period of time, not per step, is left out (under valgrind a step is ~300x
    # slower, so it would come ~300x as often per step): the writer thread's wake-up (its round
    # is run here, on this thread, once for the window's steps: natively every 0.5 s, ~40 steps
    # of 12 ms), TensorBoard's record per window of >= 1 s, the memory reading every >= 2 s
    # after the first, the watchdog's tick (every 10 s), telemetry (off)
    session.STEP_FLUSH_SECONDS = 1e6
    watchdog.Watchdog.interval = lambda self: 1e6          # type: ignore[method-assign]
    tboard.PERIOD = 1e9
    hooks.MEMORY_MIN_SECONDS = 1e9
    steps(3)
    mark()
    steps(args.n)                                           # window 2: bare
    mark()
    doc = dsdoctor.attach(engine, out=tempfile.mkdtemp(prefix="dsdoctor-instr-"), quiet=True, telemetry_interval=0)
    steps(12)                                               # the detectors' first steps, TensorBoard's file
    doc.session._writer_round()
    mark()
    steps(args.n)                                           # window 4: attached (the training thread)
    mark()
    doc.session._writer_round()                             # window 5: the writer's round for those steps
    mark()
    doc.close()
    mark()
    steps(args.n)                                           # window 7: bare again
    mark()
    print("DONE", flush=True)
    os._exit(0)


WINDOWS = {2: "bare", 4: "attached", 5: "writer", 7: "bare again"}


def counts(out_prefix: str) -> dict[int, int]:
    """dump number -> the training thread's instructions in it (callgrind's files PREFIX.N-01)."""
    got = {}
    for path in glob.glob(out_prefix + ".*-01"):
        m = re.search(r"\.(\d+)-01$", path)
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("totals:"):
                    got[int(m.group(1))] = int(line.split()[1])
                    break
    return got


def run(args: argparse.Namespace, tree: str) -> dict[str, float]:
    """Instructions per step of each window, for the doctor of `tree`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix = os.path.join(tempfile.mkdtemp(prefix="dsdoctor-cg-"), "cg")
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONHASHSEED="0", RANK="0", LOCAL_RANK="0",
               WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--dump-before=getppid",
           f"--callgrind-out-file={prefix}", sys.executable, os.path.abspath(__file__), "--child", "--n", str(args.n),
           "--hidden", str(args.hidden), "--micro-batch", str(args.micro_batch)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    got = counts(prefix)
    if p.returncode != 0 or "DONE" not in p.stdout or any(w not in got for w in WINDOWS):
        sys.exit(f"{tree}: failed\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return {name: got[w] / args.n for w, name in WINDOWS.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="steps per window (default 40: a writer round's natively)")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--against", help="another checkout: its doctor measured the same way, at the same time")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("this checkout", here)] + ([("--against", os.path.abspath(args.against))] if args.against else [])
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(trees)) as pool:           # one valgrind per checkout, side by side
        res = list(pool.map(lambda t: run(args, t[1]), trees))
    for (name, tree), r in zip(trees, res):
        bare = (r["bare"] + r["bare again"]) / 2
        added = r["attached"] - bare
        print(f"{name} ({tree}): instructions per step, training thread: bare {r['bare'] / 1e6:.3f} M, attached "
              f"{r['attached'] / 1e6:.3f} M, bare again {r['bare again'] / 1e6:.3f} M: the hooks add {added / 1e3:.1f} k "
              f"({added / bare * 100:.3f} %; the two bare windows differ by {(r['bare again'] - r['bare']) / 1e3:+.1f} k); "
              f"the writer's round {r['writer'] / 1e3:.1f} k per step; together {(added + r['writer']) / 1e3:.1f} k, "
              f"ratio {(bare + added + r['writer']) / bare:.5f}")
    print("JSON " + json.dumps({name: r for (name, _), r in zip(trees, res)}))


if __name__ == "__main__":
    main()
