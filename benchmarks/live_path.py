"""CPU per step of the doctor's own code paths, without training: a floor that noise does not move.

    python benchmarks/live_path.py [--steps 2000] [--repeats 9] [--opcodes] [--instructions [CHECKOUT ...]]

benchmarks/overhead.py measures the doctor in real DeepSpeed training, where a shared
machine's noise is large. This one times the two paths the doctor adds per step in a tight
loop, on one thread, with `time.thread_time_ns`, median of --repeats:
- the training thread's path: the three wrappers on a stand-in engine whose forward/backward/
  step do nothing (minus the same loop without the wrappers);
- the writer thread's path: the per-step tuples made into step/lr/loss/grad_norm events,
  written as JSON lines, fed to the Diagnoser and to TensorBoard's averages, in writer rounds
  of 10 steps (LiveSession._writer_round, as the writer thread runs it), with its parts
  switched off one at a time to show where the time goes, and the Diagnoser alone on a
  step's four events (the least noisy figure of its cost).
--opcodes counts instead of timing: the Python opcodes and calls each path runs per step
(sys.settrace), which the machine's load does not move; --instructions [CHECKOUT ...] the
writer's machine instructions per step under valgrind's callgrind (~1 min per checkout).
In training the same code costs 1.5-3x more (the step's compute pushes it out of the CPU
caches; compare overhead.py's per-thread figures), so read these as the floor, and their
changes as the changes of the code.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
from typing import Any


def _session(tensorboard: bool) -> Any:
    from dsdoctor.live.session import LiveOptions, LiveSession
    s = LiveSession(LiveOptions(out=tempfile.mkdtemp(prefix="dsdoctor-livepath-"), tensorboard=tensorboard),
                    rank=0, world_size=1, local_rank=0, store=None, quiet=True)
    s._stop_flusher.set()                  # rounds are run here, on this thread
    return s


def writer_path(steps: int, diagnose: bool = True, file: bool = True, tensorboard: bool = True,
                round_steps: int = 10) -> float:
    """Writer thread CPU per step (us), in writer rounds of `round_steps` steps (training at ~12 ms
    steps gives the 0.5 s rounds ~40)."""

    from dsdoctor.live.hooks import EngineHooks
    from dsdoctor.live.tboard import TensorBoard
    s = _session(tensorboard)
    hooks = EngineHooks(types.SimpleNamespace(global_steps=0, skipped_steps=0), s, {"device": "cpu"})
    s.add_producer(hooks.expand_pending)
    if tensorboard:
        s.add_part(TensorBoard(s))
    s.emit("context", dtype="fp32", zero_stage=2)
    if not diagnose:
        s._watch = None                    # the session's Diagnoser (api.Watch)
    if not file:
        s._fh = None
    # on the CPU the hooks read the loss and grad norm as floats at the optimizer step
    losses = [1.0 + (i % 5) * 0.01 for i in range(steps)]
    t = time.time()
    c0 = time.thread_time_ns()
    for i in range(steps):
        cur = {"fwd_ms": 3.1 + i % 7, "bwd_ms": 5.2, "step_ms": 4.4, "data_ms": 0.05}
        hooks._pending.append((i, 1, cur, 1e-4, losses[i], 0.5, t + i * 0.02))
        if i % round_steps == round_steps - 1:
            s._writer_round()
    us = (time.thread_time_ns() - c0) / steps / 1e3
    s.close()
    return us


class _ZeroOptimizer:
    """DeepSpeed's ZeRO optimizer as get_lr() sees it: param_groups is a property returning its
    torch optimizer's (zero/stage_1_and_2.py _get_param_groups)."""

    def __init__(self) -> None:
        self.optimizer = types.SimpleNamespace(param_groups=[{"lr": 1e-4}])

    def _get_param_groups(self) -> list:
        return self.optimizer.param_groups

    param_groups = property(_get_param_groups)


class DeepSpeedEngine:
    """The attributes the hooks read, methods that do nothing: only the wrappers are timed.
    Named and built as DeepSpeed's engine is where the hooks look (its get_lr,
    _get_optimizer_param and get_global_grad_norm are engine.py's code), so the hooks read the
    LR and the grad norm as they do in training."""

    def __init__(self) -> None:
        self.global_steps, self.skipped_steps = 0, 0
        self.optimizer = _ZeroOptimizer()
        self._global_grad_norm = None          # ZeRO 1-2: a 0-d tensor (stage_1_and_2.py: _global_grad_norm)

    def forward(self, x: Any) -> Any:
        return x

    def backward(self, loss: Any) -> None:
        return None

    def step(self) -> None:
        self.global_steps += 1

    def get_global_grad_norm(self) -> Any:
        return self._global_grad_norm

    def _get_optimizer_param(self, param_name: str) -> list:
        result = []
        if not self.optimizer:
            return result
        for group in self.optimizer.param_groups:
            if param_name in group:
                result.append(group[param_name])
            else:
                result.append(0.0)
        return result

    def get_lr(self) -> list:
        return self._get_optimizer_param("lr")


def hook_path(steps: int, repeats: int, cold_mb: float = 0.0) -> tuple[float, float]:
    """(bare loop, hooked loop) training thread CPU per step (us). cold_mb > 0: before each
    of forward, backward and step, a sweep over that many MB (torch add_ in place), on both
    sides: as in training, where each phase's compute pushes the doctor's code and data out
    of the CPU caches, so the difference is the wrappers' cold cost (~8x the warm one).")"""
    import torch

    from dsdoctor.live.hooks import EngineHooks
    s = _session(False)
    eng = DeepSpeedEngine()
    eng._global_grad_norm = torch.tensor(0.5)
    w = torch.ones(4, requires_grad=True)
    loss = (w * w).sum()                   # as in training: a loss with a grad_fn

    if cold_mb > 0:
        buf = torch.zeros(int(cold_mb * 2 ** 20 / 4))
        sweep = buf.add_
    else:
        sweep = None

    def loop() -> float:
        c0 = time.thread_time_ns()
        if sweep is None:
            for _ in range(steps):
                eng.forward(loss)
                eng.backward(loss)
                eng.step()
        else:
            for _ in range(steps):
                sweep(1.0)
                eng.forward(loss)
                sweep(1.0)
                eng.backward(loss)
                sweep(1.0)
                eng.step()
        return (time.thread_time_ns() - c0) / steps / 1e3

    hooks = EngineHooks(eng, s, {"device": "cpu"})
    bare, hooked = [], []
    for _ in range(repeats):               # alternating: a slow spell of the machine hits both
        bare.append(loop())
        hooks.install()
        hooked.append(loop())
        hooks.remove()
        hooks._pending.clear()
        s._queue.clear()
    return statistics.median(bare), statistics.median(hooked)


def rank0_parts(repeats: int) -> tuple[float, float, float]:
    """Rank 0's extra work at 2 ranks, per wake-up, in a tight loop (us CPU): the exchange's
    tick (publish its summary, read both ranks' with one multi_get, round_stats, emit the
    `rank_times` event: written, diagnosed) and the watchdog's tick (heartbeat, notices,
    judge), against a real TCPStore on loopback; rank 1's ticks run between them (untimed)."""
    import torch.distributed as dist

    from dsdoctor.live.exchange import Aggregator, Exchange
    from dsdoctor.live.watchdog import Watchdog
    from dsdoctor.live.session import LiveOptions, LiveSession
    store = dist.TCPStore("127.0.0.1", 0, 1, True, wait_for_workers=False)
    sessions = []
    for rank in (0, 1):
        s = LiveSession(LiveOptions(out=tempfile.mkdtemp(prefix="dsdoctor-livepath-"), tensorboard=False),
                        rank=rank, world_size=2, local_rank=rank, store=store, quiet=True)
        s._stop_flusher.set()
        for i in range(64):
            s.progress.window.append({"fwd_ms": 3.1 + i % 3 * 0.1, "bwd_ms": 5.0, "step_ms": 4.0, "data_ms": 0.05})
        sessions.append(s)
    ex = [Exchange(s) for s in sessions]
    wd = [Watchdog(s) for s in sessions]
    for e, w in zip(ex, wd):
        e._store, w._store = store.clone(), store.clone()
    try:
        ex[0]._agg = Aggregator(ex[0]._store, 2, own_rank=0)     # as Exchange.start() makes it
    except TypeError:                                            # before rank 0 kept its own summary
        ex[0]._agg = Aggregator(ex[0]._store, 2)
    t_ex, t_wd = [], []
    for i in range(50 + repeats * 40):
        for s in sessions:
            s.progress.step += 10
        ex[1]._last_pub = 0.0
        ex[1].tick()
        ex[0]._last_pub = ex[0]._last_round = 0.0
        c = time.thread_time_ns()
        ex[0].tick()
        t_ex.append(time.thread_time_ns() - c)
        wd[1].tick()
        c = time.thread_time_ns()
        wd[0].tick()
        t_wd.append(time.thread_time_ns() - c)
    agg = ex[0]._agg
    c = time.thread_time_ns()
    for _ in range(200):
        agg.round(30)
    t_agg = (time.thread_time_ns() - c) / 200 / 1e3
    for s in sessions:
        s.close()
    return statistics.median(t_ex[50:]) / 1e3, t_agg, statistics.median(t_wd[50:]) / 1e3


def diagnoser_path(steps: int) -> float:
    """The writer's Diagnoser alone (api.Watch.feed_step, or feed per event where there is
    none): CPU per step (us) of one step's four events as expand_pending makes them (step with
    its phase times, lr, loss, grad norm), built beforehand, fed in a tight loop."""
    from dsdoctor.api import Watch
    from dsdoctor.events import Event
    w = Watch({"zero_optimization": {"stage": 2}}, world_size=1)
    w.feed(Event("context", 0, None, None, {"dtype": "fp32", "zero_stage": 2}))
    t0 = time.time()
    evs = []
    for i in range(steps):
        t = t0 + i * 0.02
        evs += [Event("step", 0, i, t, {"micro_steps": 1, "fwd_ms": 3.1 + i % 7, "bwd_ms": 5.2, "step_ms": 4.4,
                                         "data_ms": 0.05}),
                Event("lr", 0, i, t, {"value": 1e-4}),
                Event("loss", 0, i, t, {"value": 1.0 + (i % 5) * 0.01}),
                Event("grad_norm", 0, i, t, {"value": 0.5})]
    feed_step = getattr(w, "feed_step", None)     # as the writer thread feeds a step (older code: event by event)
    if feed_step is not None:
        quads = [evs[i:i + 4] for i in range(0, len(evs), 4)]
        c0 = time.thread_time_ns()
        for q in quads:
            feed_step(q)
        return (time.thread_time_ns() - c0) / steps / 1e3
    feed = w.feed
    c0 = time.thread_time_ns()
    for ev in evs:
        feed(ev)
    return (time.thread_time_ns() - c0) / steps / 1e3


def _count(run: Any) -> tuple[int, int]:
    """(Python opcodes, Python calls) that run() executes on this thread (sys.settrace with
    per-opcode events): a count that the machine's load does not move."""
    import sys
    n = [0, 0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            n[1] += 1
            frame.f_trace_opcodes = True
        elif event == "opcode":
            n[0] += 1
        return tracer
    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return n[0], n[1]


def opcodes(steps: int = 400) -> tuple[float, float, float, float]:
    """Per step: (opcodes, calls) the wrappers add on the training thread (hooked minus bare
    loop; the memory reading, every >= 2 s, left out), and (opcodes, calls) of the writer
    thread's rounds of 40 steps with every part on (events, JSON lines, Diagnoser,
    TensorBoard)."""
    import torch

    from dsdoctor.live import hooks as H
    from dsdoctor.live.hooks import EngineHooks
    from dsdoctor.live.tboard import TensorBoard
    s = _session(False)
    eng = DeepSpeedEngine()
    eng._global_grad_norm = torch.tensor(0.5)
    w = torch.ones(4, requires_grad=True)
    loss = (w * w).sum()

    def loop() -> None:
        for _ in range(steps):
            eng.forward(loss)
            eng.backward(loss)
            eng.step()
    bare = _count(loop)
    hooks = EngineHooks(eng, s, {"device": "cpu"})
    hooks.install()
    loop()                                  # the first step's memory reading
    keep, H.MEMORY_MIN_SECONDS = H.MEMORY_MIN_SECONDS, 1e9
    try:
        hooked = _count(loop)
    finally:
        H.MEMORY_MIN_SECONDS = keep
    hooks.remove()
    s.close()
    s, hooks = _writer_session()
    t, i = time.time(), 0

    def rounds(n: int) -> None:
        nonlocal i
        for _ in range(n):
            for _ in range(40):
                cur = {"fwd_ms": 3.1 + i % 7, "bwd_ms": 5.2, "step_ms": 4.4, "data_ms": 0.05}
                hooks._pending.append((i, 1, cur, 1e-4, 1.0 + (i % 5) * 0.01, 0.5, t + i * 0.012))
                i += 1
            s._writer_round()
    rounds(5)
    writer = _count(lambda: rounds(10))
    s.close()
    return ((hooked[0] - bare[0]) / steps, (hooked[1] - bare[1]) / steps, writer[0] / 400, writer[1] / 400)


def _writer_session() -> tuple[Any, Any]:
    """A session whose writer rounds are run by the caller, with TensorBoard, the hooks' tuples
    made into events by its producer (as in training), and the run's context."""
    from dsdoctor.live.hooks import EngineHooks
    from dsdoctor.live.tboard import TensorBoard
    s = _session(True)
    hooks = EngineHooks(types.SimpleNamespace(global_steps=0, skipped_steps=0), s, {"device": "cpu"})
    s.add_producer(hooks.expand_pending)
    s.add_part(TensorBoard(s))
    s.emit("context", dtype="fp32", zero_stage=2)
    return s, hooks


def _writer_rounds(rounds: int) -> None:
    """--instructions' child: `rounds` writer rounds of 40 steps with every part on, the values
    drawn as in training (full-precision floats, phase times that vary)."""
    import random
    rnd = random.Random(0)
    s, hooks = _writer_session()
    t, i = time.time(), 0
    for _ in range(rounds):
        for _ in range(40):
            cur = {"fwd_ms": 3.1 + rnd.random(), "bwd_ms": 5.2 + rnd.random(), "step_ms": 4.4 + rnd.random(),
                   "data_ms": 0.05 * rnd.random()}
            hooks._pending.append((i, 1, cur, 1e-4, 1.0 + rnd.random() * 0.01, 0.5 + rnd.random(),
                                   t + i * 0.012 + rnd.random() * 1e-3))
            i += 1
        s._writer_round()


def instructions(tree: str | None, lo: int = 5, hi: int = 30) -> float:
    """The writer's instructions per step (callgrind: a process of `hi` rounds minus one of `lo`,
    so start-up cancels), for the dsdoctor of `tree` (None: the one imported here)."""
    import os
    import re
    import subprocess
    import sys
    env = dict(os.environ, PYTHONHASHSEED="0")
    if tree:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    got = []
    for n in (lo, hi):
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                            os.path.abspath(__file__), "--writer-rounds", str(n)],
                           env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
        m = re.search(r"Collected : (\d+)", p.stderr)
        if p.returncode != 0 or m is None:
            sys.exit(p.stderr[-3000:])
        got.append(int(m.group(1)))
    return (got[1] - got[0]) / ((hi - lo) * 40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cold-mb", type=float, default=0.0,
                    help="the wrappers again with this many MB swept before each phase (default 0: not; 8 gave +69 us on a quiet moment, as in training; under load the sweeps vary by +-30 %% and swamp it)")
    ap.add_argument("--round-steps", type=int, default=10,
                    help="steps per writer round (default 10; 2 ranks at ~12 ms steps make ~40 per 0.5 s round)")
    ap.add_argument("--opcodes", action="store_true",
                    help="only count the Python opcodes and calls per step of both paths (not timed)")
    ap.add_argument("--instructions", nargs="*", metavar="CHECKOUT",
                    help="only count the writer thread's machine instructions per step (valgrind's callgrind, "
                         "rounds of 40 steps, values as in training), for this code and each CHECKOUT given")
    ap.add_argument("--writer-rounds", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer_rounds is not None:
        _writer_rounds(args.writer_rounds)
        return
    if args.instructions is not None:
        for tree in [None, *args.instructions]:
            print(f"writer thread ({tree or 'this code'}): {instructions(tree) / 1e3:.1f} k instructions per step")
        return
    if args.opcodes:
        ho, hc, wo, wc = opcodes()
        print(f"training thread: the wrappers add {ho:.0f} Python opcodes and {hc:.1f} Python calls "
              "per step")
        print(f"writer thread (rounds of 40 steps, every part on): {wo:.0f} Python opcodes and {wc:.1f} Python calls "
              f"per step")
        return
    bare, hooked = hook_path(args.steps * 5, args.repeats)
    print(f"training thread: the wrappers add {hooked - bare:.2f} us CPU per step (loop {bare:.2f} us bare, "
          f"{hooked:.2f} us hooked)")
    if args.cold_mb > 0:
        bare, hooked = hook_path(args.steps, args.repeats, args.cold_mb)
        print(f"training thread, caches swept ({args.cold_mb:g} MB before each phase, as a step's compute does): the "
              f"wrappers add {hooked - bare:.2f} us CPU per step (loop {bare:.0f} us bare, {hooked:.0f} us hooked)")
    for name, kw in (("everything", {}), ("without the Diagnoser", {"diagnose": False}),
                     ("without the JSON file", {"file": False}), ("without TensorBoard", {"tensorboard": False}),
                     ("none of the three", {"diagnose": False, "file": False, "tensorboard": False})):
        xs = [writer_path(args.steps, round_steps=args.round_steps, **kw) for _ in range(args.repeats)]
        print(f"writer thread, {name}: {statistics.median(xs):.1f} us CPU per step (min {min(xs):.1f})")
    xs = [diagnoser_path(args.steps) for _ in range(args.repeats)]
    print(f"writer thread, the Diagnoser alone (a step's four events): {statistics.median(xs):.1f} us CPU per step "
          f"(min {min(xs):.1f})")
    ex, agg, wd = rank0_parts(args.repeats)
    print(f"rank 0 at 2 ranks, per wake-up: exchange tick {ex:.0f} us (of it the aggregation, multi_get + "
          f"round_stats, {agg:.0f} us), watchdog tick {wd:.0f} us")


if __name__ == "__main__":
    main()
