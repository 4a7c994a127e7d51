"""TensorBoard event folders (DeepSpeed's `tensorboard` monitor, or any SummaryWriter) -> events.

Read with TensorBoard's own reader (tensorboard/backend/event_processing/event_accumulator.py:
EventAccumulator), imported only here and only when such a folder is analysed: the core runs
without tensorboard, and then the folder is skipped with a warning that says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..events import Event
from .scalars import Point, to_events

TB_MARK = "tfevents"
MISSING = ("TensorBoard event files skipped: reading them needs the tensorboard package "
           "(pip install tensorboard)")


def is_event_file(p: Path) -> bool:
    return TB_MARK in p.name and not p.name.startswith(".")


def read_scalars(path: Path) -> dict[str, list[Point]]:
    """{tag: points} of every scalar (and single-value tensor) in a folder or one event file."""
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS, TENSORS, EventAccumulator)
    acc = EventAccumulator(str(path), size_guidance={SCALARS: 0, TENSORS: 0})   # 0: keep every point
    acc.Reload()
    tags = acc.Tags()
    out: dict[str, list[Point]] = {}
    for tag in tags.get("scalars", []):
        # values are float32 on disk: 7 significant digits (an lr of 1e-3, not 0.0010000000474974513)
        out[tag] = [Point(int(e.step), float(f"{e.value:.7g}"), float(e.wall_time)) for e in acc.Scalars(tag)]
    if tags.get("tensors"):
        from tensorboard.util import tensor_util     # TF2-style summaries store scalars as tensors
        for tag in tags["tensors"]:
            pts = []
            for e in acc.Tensors(tag):
                try:
                    arr = tensor_util.make_ndarray(e.tensor_proto)
                except Exception:          # text summaries and other non-numeric tensors
                    break
                if arr.size != 1 or arr.dtype.kind not in "fiu":
                    break
                pts.append(Point(int(e.step), float(f"{float(arr.reshape(())):.7g}"), float(e.wall_time)))
            if pts:
                out.setdefault(tag, pts)
    return out


def available() -> bool:
    try:
        import tensorboard.backend.event_processing.event_accumulator  # noqa: F401
    except ImportError:
        return False
    return True


def read(inp, warnings: list[str] | None) -> Iterator[Event]:
    if not available():
        if warnings is not None:
            warnings.append(f"{inp.name}: {MISSING}")
        return
    try:
        series = read_scalars(inp.path)
    except Exception as e:        # a truncated or foreign file: tensorboard raises many kinds
        if warnings is not None:
            warnings.append(f"{inp.name}: cannot read TensorBoard events ({type(e).__name__}: {e}); skipped")
        return
    if not series:
        if warnings is not None:
            warnings.append(f"{inp.name}: no scalar values in these TensorBoard event files; nothing read")
        return
    files = sorted(f for f in inp.path.iterdir() if is_event_file(f)) if inp.path.is_dir() else [inp.path]
    source = str(files[-1]) if len(files) == 1 else inp.name
    yield from to_events(series, source, inp.rank_hint if inp.rank_hint is not None else 0)
