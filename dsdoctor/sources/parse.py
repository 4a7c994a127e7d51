"""One candidate line -> events: decode, clean (sources/lines.py) and hand it to the
recognisers whose trigger literals it holds (sources/registry.py).

Shared by the log reader (sources/logs.py) and the readers of artifacts that embed log text
(sources/torchrun_logdir.py).
"""
from __future__ import annotations

from ..events import PLACED_KINDS, Event
import time

from .lines import DATED, FROM_FILE, FROM_RECOGNISER, Line, StreamState, clean_line
from .formats.ray import RAY_PID_RANK, rank_of_worker
from .recogniser import ReadAs
from .registry import HANDLERS
from .scanner import line_triggers


def parse_line(raw: bytes, lineno: int, st: StreamState, cands: list[str] | None = None) -> list[Event]:
    """The events of one candidate line, in order. Runs for every parsed line (thousands per
    rank log), so it returns a list (no generator hop per event) and does the common case, one
    segment and one literal, without the de-duplication set."""
    text = raw.decode("utf-8", errors="replace")
    if cands is None:
        cands = line_triggers(raw)
    out: list[Event] = []
    rank_hint, source = st.rank_hint, st.source
    # progress bars share a physical line with log records through carriage returns
    for seg in (text.split("\r") if "\r" in text else (text,)):
        if not seg or seg.isspace():
            continue
        s, rank, t, host, rank_from, worn = clean_line(seg, st.year)
        if t is not None and st.year is None and t >= DATED:
            st.year = time.gmtime(t).tm_year
        if rank is None and RAY_PID_RANK in st.scratch:    # a Ray Train worker's line: its rank, by pid
            rank = rank_of_worker(seg, st.scratch[RAY_PID_RANK])
            rank_from = FROM_RECOGNISER if rank is not None else None
        if rank is None:
            line = Line(s, source, lineno, rank_hint, t, host, None if rank_hint is None else FROM_FILE, worn)
        else:
            line = Line(s, source, lineno, rank, t, host, rank_from, worn)
        done: set[int] | None = None       # handlers already run on this segment (a literal may share one)
        first = len(out)
        for trig in cands:
            if trig not in s:
                continue
            for h in HANDLERS[trig]:
                if done is None:
                    done = {id(h)}
                elif id(h) in done:
                    continue
                else:
                    done.add(id(h))
                got = h(line, st)
                if got is None:
                    continue
                if type(got) is Event or isinstance(got, Event):
                    out.append(got)
                elif type(got) is ReadAs:      # the segment stands for other lines: their events alone
                    got = _read_as(got, line, st)
                    if not got:
                        continue
                    del out[first:]
                    out.extend(got)
                    break
                else:
                    out.extend(got)
            else:
                continue
            break
        if host is not None and len(out) > first:
            _place(out, first, host)
    return out


def _place(events: list[Event], first: int, host: str) -> None:
    """The line's host prefix on the failures read from it (kept where the recogniser named one)."""
    for ev in events[first:]:
        if ev.kind in PLACED_KINDS and not ev.data.get("host"):
            ev.data["host"] = host


def _read_as(lines: list[str], line: Line, st: StreamState) -> list[Event]:
    """The events of the lines one line stands for (recogniser.ReadAs), at that line's number,
    with its rank where theirs is not said and its time where they have none."""
    saved = st.rank_hint
    if line.rank is not None:
        st.rank_hint = line.rank
    try:
        out = [ev for ln in lines for ev in parse_line(ln.encode("utf-8", errors="replace"), line.lineno, st)]
    finally:
        st.rank_hint = saved
    for ev in out:
        if ev.time is None:
            ev.time = line.time
    return out
