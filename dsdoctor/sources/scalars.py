"""Scalar series (a TensorBoard tag, a DeepSpeed `csv_monitor` file) -> events.

DeepSpeed's monitor (deepspeed/monitor/monitor.py: MonitorMaster.write_events, called from
deepspeed/runtime/engine.py: DeepSpeedEngine.step and deepspeed/runtime/pipe/engine.py:
PipelineEngine.train_batch) writes, on global rank 0 only, tags named Train/Samples/<name> with
`global_samples` (samples seen so far) as the x value, not the step:

    Train/Samples/lr, Train/Samples/loss_scale (fp16), Train/Samples/train_loss (PipelineEngine,
    or the user's own engine.monitor.write_events), Train/Samples/elapsed_time_ms_{forward,
    backward,backward_inner,backward_allreduce,step} (wall_clock_breakdown)

global_samples grows by train_batch_size per optimizer step (engine.py: _take_model_step), so
the step is x / train_batch_size; the batch size is the greatest common divisor of the x values
(each one is a multiple of it). The result matches DeepSpeed's own `step=N` log lines
(global_steps after the step). Other tags keep their x as the step.
"""
from __future__ import annotations

import math
import re
from functools import reduce
from typing import Iterable, NamedTuple

from ..events import Event

DS_PREFIX = "train/samples/"          # compared on the lower-cased, '/'-joined tag


class Point(NamedTuple):
    x: int
    value: float
    wall: float | None = None
    line: int | None = None       # row of a CSV file, for the evidence


# DeepSpeed's Train/Samples/elapsed_time_ms_<timer> -> the DeepSpeed timer names the
# throughput/slow-rank detector reads (detect/throughput.py: _PHASES)
_TIMERS = {"elapsed_time_ms_forward": "fwd", "elapsed_time_ms_backward": "bwd",
           "elapsed_time_ms_backward_inner": "bwd_inner", "elapsed_time_ms_backward_allreduce": "bwd_allreduce",
           "elapsed_time_ms_step": "step"}
_EVAL = re.compile(r"eval|valid|(^|[_/])val([_/]|$)|test")


def normalise(tag: str) -> str:
    """csv_monitor names its files after the tag with '/' and ' ' turned into '_'
    (deepspeed/monitor/csv_monitor.py: csvMonitor.write_events); compare tags in that form."""
    return tag.strip().lower().replace("/", "_").replace(" ", "_")


def classify(tag: str) -> tuple[str, str] | None:
    """(event kind, data key or name) for a tag, or None for tags no detector reads."""
    t = normalise(tag).replace("-", "_")        # Megatron-style names: loss-scale, grad-norm
    leaf = t.removeprefix("train_samples_")
    if leaf in _TIMERS:
        return "timers", _TIMERS[leaf]
    if re.search(r"(^|_)loss_scale$|(^|_)scaler_scale$", t):
        return "loss_scale", "value"
    if re.search(r"(^|_)(lr|learning_rate)(_\d+)?$", t):
        return "lr", "value"
    if re.search(r"grad(ient)?_norm$", t):
        return "grad_norm", "value"
    if re.search(r"loss$", t) and not _EVAL.search(t):
        return "loss", leaf
    if re.search(r"samples_per_sec(ond)?$|throughput$", t):
        return "throughput", "samples_per_sec"
    return None


def is_ds_samples_tag(tag: str) -> bool:
    return normalise(tag).startswith("train_samples_")


def batch_size(series: dict[str, list[Point]]) -> int | None:
    """train_batch_size from the x values of the Train/Samples/* tags (their gcd)."""
    xs = [p.x for tag, pts in series.items() if is_ds_samples_tag(tag) for p in pts if p.x > 0]
    if not xs:
        return None
    return reduce(math.gcd, xs)


def to_events(series: dict[str, list[Point]], source: str, rank: int | None = 0,
              tag_sources: dict[str, str] | None = None) -> list[Event]:
    """Events in step order. `series`: {tag: points}; tags no detector reads are dropped.
    `tag_sources`: the file each tag came from (one CSV per tag), else `source`."""
    bs = batch_size(series)
    timers: dict[int, dict] = {}
    out: list[tuple[int, int, Event]] = []
    for order, (tag, pts) in enumerate(sorted(series.items())):
        what = classify(tag)
        if what is None:
            continue
        kind, key = what
        per_samples = is_ds_samples_tag(tag) and bs
        src = (tag_sources or {}).get(tag, source)
        for p in pts:
            step = p.x // bs if per_samples else p.x
            text = f"{tag} = {p.value:g} at {'samples' if per_samples else 'step'} {p.x}"
            if kind == "timers":
                t = timers.get(step)
                if t is None:
                    ev = Event("timers", rank=rank, step=step, time=p.wall, data={}, source=src, line=p.line, text=text)
                    timers[step] = {"ev": ev}
                    out.append((step, order, ev))
                    t = timers[step]
                t["ev"].data[key] = p.value
                continue
            data = {"value": p.value}
            if kind == "loss":
                data = {"value": p.value, "name": key}
            elif kind == "throughput":
                data = {"samples_per_sec": p.value}
            out.append((step, order, Event(kind, rank=rank, step=step, time=p.wall, data=data,
                                           source=src, line=p.line, text=text)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in out]


def from_pairs(pairs: Iterable[tuple[str, int, float, float | None]]) -> dict[str, list[Point]]:
    series: dict[str, list[Point]] = {}
    for tag, x, v, wall in pairs:
        series.setdefault(tag, []).append(Point(int(x), float(v), wall))
    return series
