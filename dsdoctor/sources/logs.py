"""Text logs -> events.

Speed matters (a 10 GB log at 3 a.m.), so lines are not all parsed: the input is read in
8 MiB blocks and one compiled regex of trigger literals finds the few lines worth parsing;
only those are decoded, cleaned of decorations (rank prefixes, timestamps, ANSI colours,
carriage-return progress bars) and handed to the recognisers in sources/formats.
Memory is bounded by the block size plus a little state per rank.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

from ..events import Event, read_events
from .inputs import Input, InputError, iter_blocks

MAX_LINE = 64 * 1024          # longer lines are cut: a 50 MB line is noise, not evidence
MAX_EVIDENCE_TEXT = 400


# ---------------------------------------------------------------- line decorations
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PREFIXES = [
    # [rank3]: (torch 2.2+), [default3]: (torchrun --tee / log_line_prefix_template)
    (re.compile(r"^\[(?:rank|default)(\d+)\]:\s?"), "rank"),
    # srun --label / torchrun's "0: " prefix
    (re.compile(r"^(\d{1,5}):\s"), "rank"),
    # Ray actors: "(RayTrainWorker pid=123, ip=10.0.0.1) "
    (re.compile(r"^\((?:[\w.]+ )?pid=\d+(?:, ip=[\d.]+)?\)\s"), None),
    # pdsh "host: " (lowercase host names with a digit, so 'ERROR: ...' is not a host)
    (re.compile(r"^([a-z][a-z0-9_.-]*\d[a-z0-9_.-]*):\s"), "host"),
]
_TS = [
    (re.compile(r"^\[(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[,.](\d+))?\]\s*"), "%Y-%m-%d %H:%M:%S"),
    (re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[,.](\d+))?(?:Z|[+-]\d\d:?\d\d)?\s+"), "%Y-%m-%d %H:%M:%S"),
]
_RANK_IN_MSG = re.compile(r"\[Rank (\d+)\]|\[rank=?(\d+)\]|\bRank (\d+)\]|\brank=(\d+)\b")


@dataclass
class Line:
    """One cleaned log line and where it came from."""
    text: str
    source: str
    lineno: int
    rank: int | None
    time: float | None
    host: str | None = None

    def event(self, kind: str, step: int | None = None, rank: int | None = None, **data) -> Event:
        t = self.text if len(self.text) <= MAX_EVIDENCE_TEXT else self.text[:MAX_EVIDENCE_TEXT] + "…"
        return Event(kind=kind, rank=self.rank if rank is None else rank, step=step, time=self.time,
                     data=data, source=self.source, line=self.lineno, text=t)


def _parse_time(m: re.Match, fmt: str) -> float | None:
    try:
        dt = datetime.strptime(m.group(1).replace("T", " "), fmt).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    frac = m.group(2)
    return dt.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


def clean(raw: str) -> tuple[str, int | None, float | None, str | None]:
    """Strip decorations; return (text, rank, time, host)."""
    s = _ANSI.sub("", raw).rstrip("\r\n")
    rank = host = None
    t = None
    for _ in range(4):                      # prefixes stack: "host: [rank3]:[2024-..] ..."
        changed = False
        for rx, what in _PREFIXES:
            m = rx.match(s)
            if m:
                if what == "rank" and rank is None:
                    rank = int(m.group(1))
                elif what == "host":
                    host = m.group(1)
                s = s[m.end():]
                changed = True
        for rx, fmt in _TS:
            m = rx.match(s)
            if m and t is None:
                t = _parse_time(m, fmt)
                s = s[m.end():]
                changed = True
        if not changed:
            break
    if rank is None:
        m = _RANK_IN_MSG.search(s)
        if m:
            rank = int(next(g for g in m.groups() if g is not None))
    return s, rank, t, host


# ---------------------------------------------------------------- recogniser registry
Handler = Callable[[Line, "StreamState"], "Iterable[Event] | Event | None"]
_HANDLERS: dict[str, list[Handler]] = {}


def on(*triggers: str) -> Callable[[Handler], Handler]:
    """Register a recogniser for lines containing any of the literal `triggers`."""
    def deco(fn: Handler) -> Handler:
        for t in triggers:
            _HANDLERS.setdefault(t, []).append(fn)
        return fn
    return deco


@dataclass
class StreamState:
    """Per-input state the recognisers share: last step per rank, open tracebacks, ..."""
    source: str
    rank_hint: int | None
    last_step: dict[int | None, int] = field(default_factory=dict)
    frames: dict[int | None, list[str]] = field(default_factory=dict)   # open traceback frames
    scratch: dict[str, object] = field(default_factory=dict)            # per-recogniser state

    def step_of(self, rank: int | None) -> int | None:
        return self.last_step.get(rank, self.last_step.get(None))


_trigger_re: re.Pattern[bytes] | None = None
_trigger_list: list[str] = []


def _triggers() -> re.Pattern[bytes]:
    global _trigger_re, _trigger_list
    if _trigger_re is None:
        from . import formats  # noqa: F401 - importing registers the recognisers
        _trigger_list = sorted(_HANDLERS, key=len, reverse=True)
        _trigger_re = re.compile(b"|".join(re.escape(t.encode()) for t in _trigger_list))
    return _trigger_re


# ---------------------------------------------------------------- scanning
def candidate_lines(blocks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for lines that contain a trigger literal.

    Works on whole blocks: the regex engine skips uninteresting text in C, and Python only
    touches the lines that matched.
    """
    rx = _triggers()
    lineno = 1            # number of the first line in `buf`
    tail = b""
    for block in blocks:
        buf = tail + block if tail else block
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > MAX_LINE * 16:        # a giant line: keep its head, drop the rest
                head = buf[:MAX_LINE]
                tail = head
            else:
                tail = buf
            continue
        body, tail = buf[:cut + 1], buf[cut + 1:]
        if len(tail) > MAX_LINE * 16:
            tail = tail[:MAX_LINE]
        yield from _scan(rx, body, lineno)
        lineno += body.count(b"\n")
    if tail:
        yield from _scan(rx, tail + b"\n", lineno)


def _scan(rx: re.Pattern[bytes], body: bytes, lineno: int) -> Iterator[tuple[int, bytes]]:
    pos = 0
    counted_to = 0
    search = rx.search
    while True:
        m = search(body, pos)
        if not m:
            return
        start = body.rfind(b"\n", 0, m.start()) + 1
        end = body.find(b"\n", m.end())
        lineno += body.count(b"\n", counted_to, start)
        counted_to = start
        line = body[start:end]
        yield lineno, line[:MAX_LINE] if len(line) > MAX_LINE else line
        pos = end + 1


def parse_line(raw: bytes, lineno: int, st: StreamState) -> Iterator[Event]:
    text = raw.decode("utf-8", errors="replace")
    # progress bars share a physical line with log records through carriage returns
    for seg in (text.split("\r") if "\r" in text else (text,)):
        if not seg.strip():
            continue
        s, rank, t, host = clean(seg)
        if rank is None:
            rank = st.rank_hint
        line = Line(s, st.source, lineno, rank, t, host)
        done: set[int] = set()
        for trig in _trigger_list:
            if trig in s:
                for h in _HANDLERS[trig]:
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


def read_log(inp: Input, warnings: list[str] | None = None) -> Iterator[Event]:
    """All events of one input. An unreadable tail (truncated .gz) ends the input with a
    warning; the events before it are kept."""
    st = StreamState(inp.name, inp.rank_hint)
    _triggers()
    fh = inp.open()
    try:
        if inp.kind == "events":
            yield from read_events(_text_lines(iter_blocks(fh)), inp.name)
            return
        try:
            for lineno, raw in candidate_lines(iter_blocks(fh)):
                yield from parse_line(raw, lineno, st)
        except InputError as e:
            if warnings is None:
                raise
            warnings.append(f"{inp.name}: {e}; the part before it was analysed")
        from .formats import finish_stream
        yield from finish_stream(st)
    finally:
        if inp.path is not None:
            fh.close()


def _text_lines(blocks: Iterable[bytes]) -> Iterator[str]:
    tail = b""
    for b in blocks:
        buf = tail + b
        lines = buf.split(b"\n")
        tail = lines.pop()
        for ln in lines:
            yield ln.decode("utf-8", errors="replace")
    if tail:
        yield tail.decode("utf-8", errors="replace")


def events_from_text(text: str, source: str = "<example>") -> list[Event]:
    """Parse a log held in a string (rule examples, tests)."""
    st = StreamState(source, None)
    _triggers()
    out: list[Event] = []
    for lineno, raw in candidate_lines([text.encode()]):
        out.extend(parse_line(raw, lineno, st))
    from .formats import finish_stream
    out.extend(finish_stream(st))
    return out
