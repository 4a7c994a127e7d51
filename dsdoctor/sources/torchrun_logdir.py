"""`torchrun --log-dir DIR` trees and the `error.json` files of torchelastic's @record.

torch/distributed/elastic/multiprocessing/api.py: PContext / DefaultLogsSpecs.reify lays out

    DIR/<rdzv_run_id>/attempt_<restart>/<local_rank>/stdout.log | stderr.log | error.json

so the folder name under attempt_<n> is the rank (the local rank: on one node the global
rank; a node's own log dir per node otherwise). error.json is written by
torch/distributed/elastic/multiprocessing/errors/error_handler.py: ErrorHandler.record_exception:

    {"message": {"message": "<Type>: <text>",
                 "extraInfo": {"py_callstack": "<traceback.format_exc()>", "timestamp": "<unix s>"}}}

(the launcher may later add "errorCode" next to "message"; a plain string "message" is the
older/foreign form). The traceback is fed through the same recognisers as a log, so a CUDA OOM,
an NCCL error or a DeepSpeed exception in error.json becomes the same events as in stderr.log.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from ..events import Event

_ATTEMPT = re.compile(r"^attempt_(\d+)$")


def rank_from_path(p: Path) -> int | None:
    """The rank of a file in a torchrun log-dir tree (attempt_<n>/<rank>/<file>), else None."""
    parent = p.parent
    if parent.name.isdecimal() and _ATTEMPT.match(parent.parent.name):
        return int(parent.name)
    return None


def is_error_file(p: Path) -> bool:
    return p.name == "error.json"


def callstack(d: dict) -> tuple[str, float | None]:
    """(text to scan, timestamp) of an error.json document."""
    msg = d.get("message")
    if isinstance(msg, str):
        return msg, None
    if not isinstance(msg, dict):
        return "", None
    info = msg.get("extraInfo") if isinstance(msg.get("extraInfo"), dict) else {}
    stack = str(info.get("py_callstack") or "")
    head = str(msg.get("message") or "")
    text = stack if head and head in stack else (stack.rstrip("\n") + "\n" + head if stack else head)
    try:
        ts = float(info.get("timestamp"))
    except (TypeError, ValueError):
        ts = None
    return text, ts


def read(inp, warnings: list[str] | None) -> Iterator[Event]:
    from .lines import StreamState
    from .parse import parse_line
    from .scanner import candidate_lines
    try:
        with open(inp.path, encoding="utf-8", errors="replace") as fh:
            d = json.load(fh)
    except (OSError, ValueError) as e:
        if warnings is not None:
            warnings.append(f"{inp.name}: not a torchelastic error file ({e}); skipped")
        return
    text, ts = callstack(d) if isinstance(d, dict) else ("", None)
    if not text.strip():
        return
    st = StreamState(f"{inp.name} (py_callstack)", inp.rank_hint)
    # line numbers are lines of the traceback inside py_callstack (the file itself is one line)
    for lineno, raw in candidate_lines([text.encode("utf-8", errors="replace")]):
        for ev in parse_line(raw, lineno, st):
            if ev.time is None:
                ev.time = ts
            yield ev
    from .registry import finish_stream
    yield from finish_stream(st)
