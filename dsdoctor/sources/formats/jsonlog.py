"""Recogniser: JSON-lines loggers (one JSON object per line: structlog, python-json-logger,
loguru's serialize=True, a script's own json.dumps per step) and the `date` line a job script
echoes ('START TIME: Tue Mar 15 08:00:01 UTC 2022').

A JSON record carries its own time in a field, not in a line head: python-json-logger's
'asctime' ('2024-10-11 10:00:00,000', logging.Formatter.formatTime), structlog's TimeStamper
'timestamp' (ISO 8601) or a 'time'/'ts'/'@timestamp' field (ISO 8601 or unix seconds, loguru's
record 'time' in serialize mode). Its progress is either in fields ('step'/'global_step'/
'iteration' with 'loss'/'lr'/'grad_norm') or in the free-text message ('msg'/'message'/'event':
'step 50 loss 2.35 lr 3e-4'). Each becomes the same events as any other trainer's step line,
with the record's time, so a stop long after the last record reads as a hang.

`date`'s default output (coreutils: '%a %b %e %H:%M:%S %Z %Y') becomes a `clock` event: a time
the log states, which progress bars that only count their own elapsed time are anchored to
(detect/failure.py).
"""
from __future__ import annotations

import json
import re

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, utc_seconds
from ..recogniser import on

_TIME_KEYS = ("time", "timestamp", "asctime", "ts", "@timestamp", "datetime")
_STEP_KEYS = ("step", "global_step", "iteration", "iter", "train/global_step")
_LOSS_KEYS = ("loss", "train_loss", "train/loss", "lm_loss", "lm loss")
_LR_KEYS = ("lr", "learning_rate", "train/learning_rate")
_GN_KEYS = ("grad_norm", "train/grad_norm", "gradient_norm")
_MSG_KEYS = ("msg", "message", "event")
_MSG_STEP = compile_later(r"\b(?:global[_ ])?(?:step|iter(?:ation)?)\s*[:=]?\s*(\d+)")
_MSG_LOSS = compile_later(r"\bloss\s*[:=]?\s*(nan|-?inf|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\b")
_MSG_LR = compile_later(r"\blr\s*[:=]?\s*(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\b")


def _record_time(rec: dict) -> float | None:
    for k in _TIME_KEYS:
        v = rec.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
            return v / 1000.0 if v > 1e11 else v        # unix milliseconds or seconds
        if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[7] == "-":
            return utc_seconds(v)
    return None


def _first(rec: dict, keys: tuple[str, ...]):
    for k in keys:
        v = rec.get(k)
        if v is not None and not isinstance(v, (bool, dict, list)):
            return v
    return None


def _number(v) -> float | None:
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


def record_in(line: Line, limit: int) -> dict | None:
    """The JSON object a whole line holds (at most `limit` characters), or None."""
    text = line.text.strip()
    if not (text.startswith("{") and text.endswith("}")) or len(text) > limit:
        return None
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


# One literal, the object's opening: a field name with its quotes would overlap other recognisers'
# literals on the same line ('"loss": NaN', hf.py) and hide them from the scanner.
@on('{"')
def json_record(line: Line, st: StreamState):
    rec = record_in(line, 8192)
    if rec is None:
        return None
    step, loss, lr, gn = (_first(rec, _STEP_KEYS), _first(rec, _LOSS_KEYS), _first(rec, _LR_KEYS),
                          _first(rec, _GN_KEYS))
    msg = _first(rec, _MSG_KEYS)
    if isinstance(msg, str) and (step is None or loss is None):
        if step is None and (m := _MSG_STEP.search(msg)):
            step = m.group(1)
        if loss is None and (m := _MSG_LOSS.search(msg)):
            loss = m.group(1)
        if lr is None and (m := _MSG_LR.search(msg)):
            lr = m.group(1)
    step_n = _number(step) if step is not None else None
    if step_n is None or loss is None:
        return None                    # not a training-progress record
    step_i = int(step_n)
    t = _record_time(rec)
    out = []
    for kind, v, extra in (("loss", loss, {"name": "loss"}), ("lr", lr, {}), ("grad_norm", gn, {})):
        x = _number(v) if v is not None else None
        if x is None:
            continue
        ev = line.event(kind, step=step_i, value=x, **extra)
        if t is not None:
            ev.time = t
        out.append(ev)
    return out or None


_MONTHS = (" Jan ", " Feb ", " Mar ", " Apr ", " May ", " Jun ", " Jul ", " Aug ", " Sep ", " Oct ", " Nov ", " Dec ")
_DATE = compile_later(r"(?:^|[:\s])(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                      r"+(\d{1,2}) (\d\d):(\d\d):(\d\d) (?:[A-Z]{2,5}[+-]?\d*\s+)?(\d{4})\s*$")
_MONTH_NO = {m.strip(): i + 1 for i, m in enumerate(_MONTHS)}


@on(*_MONTHS)
def date_line(line: Line, st: StreamState):
    """A line that ends with `date`'s output: the time it states."""
    if line.time is not None or len(line.text) > 200:
        return None
    m = _DATE.search(line.text)
    if m is None:
        return None
    mon, day, hh, mm, ss, year = m.groups()
    t = utc_seconds(f"{year}-{_MONTH_NO[mon]:02d}-{int(day):02d} {hh}:{mm}:{ss}")
    if t is None:
        return None
    ev = line.event("clock", at=t)
    ev.time = t
    return ev
