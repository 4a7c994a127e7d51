"""What the HTML report draws, collected from the same events the pipeline diagnoses.

`RunSeries.feed(ev)` is called next to `Diagnoser.feed(ev)` for every event, so the pictures
show exactly the evidence the findings came from. Memory is bounded: each series keeps at
most MAX_POINTS points (every other finite point is dropped when it fills up; non-finite
values, overflows and OOMs are always kept, they are what the reader looks for).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .events import Event

MAX_POINTS = 4000
KEEP_NONFINITE = 200
CURVES = ("loss", "grad_norm", "loss_scale", "lr")
# top-level DeepSpeed timer names (timer lines, the monitor's elapsed_time_ms_*) whose sum is
# the time of one step; the *_microstep variants when only those were logged
_STEP_TIMERS = (("fwd", "bwd", "step"), ("forward", "backward", "step"),
                ("fwd_microstep", "bwd_microstep", "step_microstep"))
_LIVE_PHASES = ("fwd_ms", "bwd_ms", "step_ms", "data_ms")
_MEMORY_KEYS = ("rss", "available", "gpu_allocated", "gpu_reserved", "gpu_peak")


def first_float(v: Any) -> float | None:
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


@dataclass
class Points:
    """(x, value) pairs of one series, thinned evenly to stay bounded: when full, every other
    point goes and from then on only every `stride`-th new one is taken. Non-finite values are
    taken whatever the stride (the first KEEP_NONFINITE of them: a run that stays NaN for 100k
    steps must not keep them all)."""
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    stride: int = 1
    seen: int = 0
    nonfinite: int = 0

    def add(self, x: float, y: float) -> None:
        self.seen += 1
        special = not math.isfinite(y) and self.nonfinite < KEEP_NONFINITE
        if special:
            self.nonfinite += 1
        elif (self.seen - 1) % self.stride:
            return
        self.xs.append(x)
        self.ys.append(y)
        if len(self.xs) > MAX_POINTS:
            keep, bad = [], 0
            for i, v in enumerate(self.ys):
                bad += not math.isfinite(v)
                if i % 2 == 0 or (not math.isfinite(v) and bad <= KEEP_NONFINITE):
                    keep.append(i)
            self.xs = [self.xs[i] for i in keep]
            self.ys = [self.ys[i] for i in keep]
            self.stride *= 2


@dataclass
class Progress:
    """A rank's progress: the first and last moment it was seen doing a step."""
    first: float
    last: float
    last_step: int | None = None


@dataclass
class RunSeries:
    curves: dict[tuple[str, int | None], Points] = field(default_factory=dict)   # (kind, rank)
    loss_names: dict[int | None, str] = field(default_factory=dict)
    nonfinite: list[tuple[str, int | None, int | None]] = field(default_factory=list)  # (kind, rank, step)
    overflows: list[tuple[int | None, int | None, Any, Any]] = field(default_factory=list)
    step_ms: dict[int, Points] = field(default_factory=dict)       # rank -> (step, ms)
    compute_ms: dict[int, Points] = field(default_factory=dict)    # rank -> (step, ms of own compute)
    memory: dict[tuple[str, int | None], Points] = field(default_factory=dict)   # (key, rank) -> (t, bytes)
    ooms: list[Event] = field(default_factory=list)
    progress: dict[int, Progress] = field(default_factory=dict)
    stalls: list[Event] = field(default_factory=list)
    t0: float | None = None

    def feed(self, ev: Event) -> None:
        k, d = ev.kind, ev.data
        if ev.time is not None and (self.t0 is None or ev.time < self.t0):
            self.t0 = ev.time
        if k in CURVES:
            if k == "loss" and _is_eval(d.get("name")):
                return
            v = first_float(d.get("value"))
            if v is None or ev.step is None:
                return
            self.curves.setdefault((k, ev.rank), Points()).add(ev.step, v)
            if k == "loss":
                self.loss_names.setdefault(ev.rank, str(d.get("name") or "loss"))
            if not math.isfinite(v) and len(self.nonfinite) < 1000:
                self.nonfinite.append((k, ev.rank, ev.step))
        elif k == "overflow":
            if len(self.overflows) < 10000:
                self.overflows.append((ev.step, ev.rank, d.get("prev_scale"), d.get("new_scale")))
            new = first_float(d.get("new_scale"))
            if new is not None and ev.step is not None:     # the scale after it: a point of the curve
                self.curves.setdefault(("loss_scale", ev.rank), Points()).add(ev.step, new)
        elif k in ("step", "timers", "throughput"):
            ms = _step_ms(k, d)
            if ms is not None and ev.rank is not None and ev.step is not None:
                self.step_ms.setdefault(ev.rank, Points()).add(ev.step, ms)
            own = _compute_ms(k, d)
            if own is not None and ev.rank is not None and ev.step is not None:
                self.compute_ms.setdefault(ev.rank, Points()).add(ev.step, own)
        elif k in ("memory", "telemetry"):
            if ev.time is not None:
                for key in _MEMORY_KEYS:
                    v = first_float(d.get(key if k == "memory" or key != "available" else "ram_available"))
                    if v is not None:
                        self.memory.setdefault((key, ev.rank), Points()).add(ev.time, v)
        elif k == "oom":
            if len(self.ooms) < 64:
                self.ooms.append(ev)
            if ev.time is not None:          # the live hook's readings at the OOM: the last point
                for key in _MEMORY_KEYS:
                    v = first_float(d.get(key))
                    if v is not None:
                        self.memory.setdefault((key, ev.rank), Points()).add(ev.time, v)
        elif k in ("stall", "stall_resolved"):
            if len(self.stalls) < 64:
                self.stalls.append(ev)
        if k in ("step", "heartbeat", "loss", "timers") and ev.rank is not None and ev.time is not None:
            p = self.progress.get(ev.rank)
            if p is None:
                self.progress[ev.rank] = p = Progress(ev.time, ev.time)
            p.first, p.last = min(p.first, ev.time), max(p.last, ev.time)
            step = ev.step if ev.step is not None else d.get("step")
            if isinstance(step, int) and (p.last_step is None or step >= p.last_step):
                p.last_step = step

    def feed_all(self, events) -> None:
        for ev in events:
            self.feed(ev)


def _is_eval(name: Any) -> bool:
    n = str(name or "").lower()
    return "eval" in n or "val" in n.split("_") or "valid" in n


def _compute_ms(kind: str, d: dict) -> float | None:
    """A rank's own work in a step, without the time it waits for the others in collectives:
    a straggler is slow here while every rank's whole step is equally long (the others wait).
    Live `step`: forward + data (bwd_ms and step_ms include the all-reduce wait, see
    detect/throughput.py); DeepSpeed timers: forward + backward_inner."""
    if kind == "step":
        parts = [first_float(d.get(p)) for p in ("fwd_ms", "data_ms")]
    elif kind == "timers":
        fwd = next((first_float(d.get(n)) for n in ("fwd", "forward", "fwd_microstep", "forward_microstep")
                    if first_float(d.get(n)) is not None), None)
        inner = next((first_float(d.get(n)) for n in ("bwd_inner", "backward_inner", "bwd_inner_microstep",
                                                      "backward_inner_microstep") if first_float(d.get(n)) is not None), None)
        parts = [fwd, inner]
    else:
        return None
    parts = [p for p in parts if p is not None]
    return sum(parts) if parts else None


def _step_ms(kind: str, d: dict) -> float | None:
    if kind == "throughput":
        v = first_float(d.get("iter_ms"))
        return v if v and v > 0 and not d.get("summary") else None
    if kind == "step":
        if first_float(d.get("batch_ms")) is not None:
            return first_float(d.get("batch_ms"))
        parts = [first_float(d.get(p)) for p in _LIVE_PHASES]
        parts = [p for p in parts if p is not None]
        return sum(parts) if parts else None
    for names in _STEP_TIMERS:
        parts = [first_float(d.get(n)) for n in names]
        if all(p is not None for p in parts):
            return sum(parts)          # type: ignore[arg-type]
    return None
