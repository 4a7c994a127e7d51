"""Read an LR range test run from what a run leaves behind.

- a CSV with columns `step,lr,loss` (`step` optional; extra columns ignored);
- dsdoctor event files (`events-rank<N>.jsonl`, or a run folder holding them, with its
  console log) or a training log (the same recognisers as `dsdoctor analyze`: DeepSpeed's
  `lr=[...]` progress lines, HF Trainer's `{'loss': ..., 'learning_rate': ...}`, Megatron's
  iteration lines): `lr` and `loss` events of the lowest rank, joined on the step;
- a DeepSpeed monitor TensorBoard folder. DeepSpeed 0.19 writes `Train/Samples/lr` but no
  training loss (`Train/Samples/train_loss` went away with PR #7665; only PipelineEngine
  writes it), so the loss is read from any scalar tag the user logged with "loss" in its
  name, or the one named by --loss-tag. Without one we say what is missing and how to log it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path

from ..sources.inputs import Input, InputError, check_readable, expand
from ..sources.logs import read_log
from ..detect.lr import first_float as _first
from .curve import Curve, LRRangeError

LR_TAGS = ("Train/Samples/lr", "train/learning_rate", "learning_rate", "lr")
_TB_FILE = "tfevents"


def read_run(path: str | Path, loss_tag: str | None = None, lr_tag: str | None = None) -> Curve:
    p = Path(path)
    if not p.exists():
        raise LRRangeError(f"{p}: no such file or directory")
    if p.is_dir():
        has_tb = any(_TB_FILE in f.name for f in p.rglob("*") if f.is_file())
        csvs = sorted(p.glob("*.csv"))
        try:
            inputs = expand([str(p)])              # events-rank*.jsonl and console / rank logs
        except InputError:
            inputs = []
        if inputs and (not has_tb or any(i.kind == "events" for i in inputs)):
            return read_events_and_logs(inputs, str(p))
        if has_tb:
            return read_tensorboard(p, loss_tag, lr_tag)
        if len(csvs) == 1:
            return read_csv(csvs[0])
        raise LRRangeError(f"{p}: no dsdoctor events-rank*.jsonl, logs, TensorBoard event files or single CSV in this folder")
    if _TB_FILE in p.name:
        return read_tensorboard(p.parent, loss_tag, lr_tag)
    head = _head_line(p)
    if p.suffix in (".jsonl", ".json") or _is_event_line(head):
        return read_events_and_logs([Input(str(p), p, "events", None)], str(p))
    cells = {c.strip().lower() for c in head.split(",")}
    if p.suffix == ".csv" or not head or ("," in head and cells & {"lr", "learning_rate"}):
        return read_csv(p)
    return read_events_and_logs([Input(str(p), p, "log", None)], str(p))   # a training log


MAX_POINTS = 200_000        # an LR range test has hundreds to a few thousand steps
MAX_HEAD = 1 << 20          # the first line, read to tell a CSV from events or a log


def _head_line(p: Path) -> str:
    """The first line (at most MAX_HEAD bytes) of a regular file: a FIFO or /dev/zero is
    refused before anything is read."""
    from ..safe_read import ReadError, open_regular
    try:
        with open_regular(p, "CSV, events file or log") as fh:
            head = fh.readline(MAX_HEAD)
    except ReadError as e:
        raise LRRangeError(str(e)) from None
    except OSError as e:
        raise LRRangeError(f"{p}: cannot read: {e.strerror or e}") from None
    return head.decode("utf-8", errors="replace").strip()


def _is_event_line(line: str) -> bool:
    try:
        d = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(d, dict) and "kind" in d


def _too_many(src: object) -> LRRangeError:
    return LRRangeError(f"{src}: more than {MAX_POINTS} points; an LR range test has hundreds to a few "
                        "thousand steps: keep one row per optimizer step of the sweep")


def _num(text: str, where: str, column: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise LRRangeError(f"{where}: {text[:40]!r} in column {column} is not a number") from None


def _step(text: str, where: str) -> int:
    v = _num(text, where, "step")
    if not math.isfinite(v) or abs(v) > 1 << 53:
        raise LRRangeError(f"{where}: {text[:40]!r} in column step is not a step number")
    return int(v)


def read_csv(path: Path) -> Curve:
    from ..safe_read import ReadError, open_regular
    try:
        fh = io.TextIOWrapper(open_regular(path, "CSV file"), encoding="utf-8", newline="")
    except ReadError as e:
        raise LRRangeError(str(e)) from None
    with fh:
        rows = csv.reader(fh)
        try:
            header = next(rows, None)
        except (csv.Error, UnicodeDecodeError) as e:
            raise LRRangeError(f"{path}: not a CSV file: {e}") from None
        if not header:
            raise LRRangeError(f"{path}: empty file (expected a CSV header step,lr,loss)")
        cols = {h.strip().lower(): i for i, h in enumerate(header)}
        lr_col = next((cols[c] for c in ("lr", "learning_rate") if c in cols), None)
        loss_col = next((cols[c] for c in ("loss", "train_loss") if c in cols), None)
        step_col = next((cols[c] for c in ("step", "global_step", "iteration") if c in cols), None)
        if lr_col is None or loss_col is None:
            raise LRRangeError(f"{path}:1: the header must name the columns step,lr,loss (got {','.join(header)[:80]!r})")
        points: dict[int, tuple[float, float]] = {}
        try:
            for n, row in enumerate(rows, 2):
                if not row or all(not c.strip() for c in row):
                    continue
                where = f"{path}:{n}"
                if len(row) < len(header):
                    raise LRRangeError(f"{where}: {len(row)} columns, the header has {len(header)}")
                step = _step(row[step_col], where) if step_col is not None else n - 1
                points[step] = (_num(row[lr_col], where, "lr"), _num(row[loss_col], where, "loss"))
                if len(points) > MAX_POINTS:
                    raise _too_many(path)
        except (csv.Error, UnicodeDecodeError) as e:
            raise LRRangeError(f"{path}: not a CSV file: {e}") from None
        except OSError as e:
            raise LRRangeError(f"{path}: cannot read: {e.strerror or e}") from None
    return Curve.from_points(points, str(path))


def read_events_and_logs(inputs: list[Input], src: str) -> Curve:
    """lr and loss events (dsdoctor events, or what the log recognisers find in DeepSpeed, HF
    or Megatron logs) of the lowest rank that has both, joined on the step."""
    # Join key: the step, or for lines without one (HF Trainer's metric dicts) the log line
    # that printed both values.
    lrs: dict[int | None, dict[object, float]] = defaultdict(dict)
    losses: dict[int | None, dict[object, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: dict[int | None, dict[object, None]] = defaultdict(dict)
    for inp in inputs:
        try:
            check_readable(inp)
            # every line: a range test's curve is the point (a steady-line sample would thin it)
            for ev in read_log(inp, sample=False):
                if ev.kind not in ("lr", "loss"):
                    continue
                if ev.kind == "loss" and re.search(r"eval|val", str(ev.data.get("name") or "")):
                    continue
                key = ev.step if ev.step is not None else (ev.source, ev.line)
                if ev.step is None and ev.line is None:
                    continue
                v = _first(ev.data.get("value"))
                if v is None:
                    continue
                order[ev.rank].setdefault(key)
                if len(order[ev.rank]) > MAX_POINTS:
                    raise _too_many(src)
                if ev.kind == "lr":
                    lrs[ev.rank][key] = v
                else:
                    if len(losses[ev.rank][key]) < 4096:     # micro-steps: averaged below
                        losses[ev.rank][key].append(v)
        except InputError as e:
            raise LRRangeError(str(e)) from None
        except OSError as e:
            raise LRRangeError(f"{inp.name}: cannot read: {e.strerror or e}") from None
    ranks = sorted((r for r in lrs if r in losses), key=lambda r: (r is None, r or 0))
    if not ranks:
        missing = ("lr and loss" if not lrs and not losses else "lr" if not lrs else
                   "loss" if not losses else "lr and loss from the same rank")
        hint = (" (DeepSpeed's 'step=..., lr=[...]' progress lines carry no loss)" if lrs and not losses else "")
        raise LRRangeError(f"{src}: no {missing} values found{hint}; log both every step (or record the run "
                           "with `dsdoctor run`), or pass a CSV step,lr,loss")
    r = ranks[0]
    keys = [k for k in order[r] if k in lrs[r] and k in losses[r]]
    if not keys:
        raise LRRangeError(f"{src}: lr and loss are never logged at the same step; log both at the same steps")
    by_step = all(isinstance(k, int) for k in keys)
    points = {(k if by_step else i + 1): (lrs[r][k], sum(losses[r][k]) / len(losses[r][k]))
              for i, k in enumerate(keys)}
    return Curve.from_points(points, src)


def _scalars(directory: Path) -> dict[str, dict[int, float]]:
    """Every scalar tag of every event file under `directory`: {tag: {step: value}}."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import (
            SCALARS, TENSORS, EventAccumulator)
    except ImportError:
        raise LRRangeError("reading TensorBoard files needs the tensorboard package (pip install tensorboard), "
                           "or export the run as a CSV step,lr,loss") from None
    out: dict[str, dict[int, float]] = defaultdict(dict)
    dirs = sorted({f.parent for f in directory.rglob("*") if f.is_file() and _TB_FILE in f.name})
    for d in dirs:
        acc = EventAccumulator(str(d), size_guidance={SCALARS: 0, TENSORS: 0})
        try:
            acc.Reload()
        except Exception as e:   # a truncated or foreign file: tensorboard raises many kinds
            raise LRRangeError(f"{d}: cannot read TensorBoard events: {type(e).__name__}: {e}") from None
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            for e in acc.Scalars(tag):
                out[tag][int(e.step)] = float(e.value)
        for tag in tags.get("tensors", []):      # TF2-style summaries store scalars as tensors
            try:
                from tensorboard.util import tensor_util
                for e in acc.Tensors(tag):
                    arr = tensor_util.make_ndarray(e.tensor_proto)
                    if arr.size == 1:
                        out[tag][int(e.step)] = float(arr.reshape(()))
            except Exception:
                continue
    return out


def _pick_loss_tag(tags: list[str]) -> str | None:
    cands = [t for t in tags if "loss" in t.lower() and "scale" not in t.lower()
             and not re.search(r"eval|valid|val_|test", t.lower())]
    cands.sort(key=lambda t: ("train" not in t.lower(), len(t)))
    return cands[0] if cands else None


def read_tensorboard(directory: Path, loss_tag: str | None = None, lr_tag: str | None = None) -> Curve:
    scalars = _scalars(directory)
    if not scalars:
        raise LRRangeError(f"{directory}: the TensorBoard files hold no scalars")
    tags = sorted(scalars)
    if lr_tag is None:
        lr_tag = next((t for t in LR_TAGS if t in scalars), None) or next(
            (t for t in tags if re.search(r"(^|/)(lr|learning_rate)$", t.lower())), None)
    if lr_tag not in scalars:
        raise LRRangeError(f"{directory}: no learning-rate tag (looked for {', '.join(LR_TAGS)}; tags: "
                           f"{', '.join(tags)[:200]}); pass --lr-tag")
    if loss_tag is None:
        loss_tag = _pick_loss_tag(tags)
    if loss_tag is None or loss_tag not in scalars:
        what = f"no tag {loss_tag!r}" if loss_tag else "no training-loss tag"
        raise LRRangeError(
            f"{directory}: {lr_tag} is there but {what}: DeepSpeed 0.19 does not log the training loss "
            "(Train/Samples/train_loss is gone). Log it yourself, e.g. engine.monitor.write_events("
            "[('Train/Samples/train_loss', loss.item(), engine.global_samples)]), or pass --loss-tag "
            f"(tags here: {', '.join(tags)[:200]})")
    lr, loss = scalars[lr_tag], scalars[loss_tag]
    notes = [f"TensorBoard tags: lr from {lr_tag}, loss from {loss_tag}"]
    common = set(lr) & set(loss)
    if len(common) < 0.5 * min(len(lr), len(loss)):
        if len(lr) != len(loss):
            raise LRRangeError(f"{directory}: {lr_tag} ({len(lr)} points) and {loss_tag} ({len(loss)} points) "
                               "use different x axes and cannot be matched; log the loss with "
                               "engine.global_samples as its step, as DeepSpeed does for the lr")
        # Same count, different x axis (samples vs steps): match them in order.
        notes.append(f"{lr_tag} and {loss_tag} have different x axes; matched in order")
        points = {i: (a, b) for i, (a, b) in enumerate(zip((lr[k] for k in sorted(lr)),
                                                           (loss[k] for k in sorted(loss))))}
    elif lr_tag == "Train/Samples/lr":
        # DeepSpeed logs the LR after stepping the scheduler (engine.py _take_model_step): the
        # value at x is the LR of the *next* step. The loss logged at x trained with the previous one.
        xs = sorted(lr)
        prev = {b: lr[a] for a, b in zip(xs, xs[1:])}
        points = {s: (prev[s], loss[s]) for s in common if s in prev}
        notes.append("Train/Samples/lr is logged after the scheduler step: each loss is paired with the LR logged one step earlier")
    else:
        points = {s: (lr[s], loss[s]) for s in common}
    return Curve.from_points(points, str(directory), notes)
