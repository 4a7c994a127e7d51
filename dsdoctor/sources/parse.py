"""One candidate line -> events: decode, clean (sources/lines.py) and hand it to the
recognisers whose trigger literals it holds (sources/registry.py).

Shared by the log reader (sources/logs.py) and the readers of artifacts that embed log text
(sources/torchrun_logdir.py).
"""
from __future__ import annotations

from typing import Iterator

from ..events import Event
from .lines import Line, StreamState, clean
from .registry import HANDLERS
from .scanner import line_triggers


def parse_line(raw: bytes, lineno: int, st: StreamState, cands: list[str] | None = None) -> Iterator[Event]:
    text = raw.decode("utf-8", errors="replace")
    if cands is None:
        cands = line_triggers(raw)
    # progress bars share a physical line with log records through carriage returns
    for seg in (text.split("\r") if "\r" in text else (text,)):
        if not seg.strip():
            continue
        s, rank, t, host = clean(seg)
        if rank is None:
            rank = st.rank_hint
        line = Line(s, st.source, lineno, rank, t, host)
        done: set[int] = set()
        for trig in cands:
            if trig in s:
                for h in HANDLERS[trig]:
                    if id(h) in done:
                        continue
                    done.add(id(h))
                    out = h(line, st)
                    if out is None:
                        continue
                    if isinstance(out, Event):
                        yield out
                    else:
                        yield from out
