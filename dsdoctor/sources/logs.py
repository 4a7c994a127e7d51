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


_TIME_CACHE: dict[str, float | None] = {}


def _parse_time(m: re.Match, fmt: str) -> float | None:
    # Called for almost every candidate line: parse the fixed-width 'YYYY-mm-dd HH:MM:SS'
    # by slicing (strptime costs ~25 us) and cache the whole seconds (lines share them).
    # `fmt` is the layout the regex guarantees; kept for the table in _TS.
    key = m.group(1)
    base = _TIME_CACHE.get(key, False)
    if base is False:
        try:
            base = datetime(int(key[0:4]), int(key[5:7]), int(key[8:10]), int(key[11:13]), int(key[14:16]),
                            int(key[17:19]), tzinfo=timezone.utc).timestamp()
        except ValueError:
            base = None
        if len(_TIME_CACHE) > 4096:
            _TIME_CACHE.clear()
        _TIME_CACHE[key] = base
    if base is None:
        return None
    frac = m.group(2)
    return base + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _may_start(s: str) -> bool:
    """Can a decoration (_PREFIXES, _TS) start `s`? Most log lines start with something else
    (a space, a capital, '{', '[INFO]', '[Rank 0]'), and then no regex needs to run."""
    c = s[:1]
    if c == "[":                      # [rank3]: [default3]: [2024-...]
        n = s[1:2]
        return n == "r" or n == "d" or n.isdecimal()
    return c == "(" or c.isdecimal() or "a" <= c <= "z"


def clean(raw: str) -> tuple[str, int | None, float | None, str | None]:
    """Strip decorations; return (text, rank, time, host)."""
    s = (_ANSI.sub("", raw) if "\x1b" in raw else raw).rstrip("\r\n")
    rank = host = None
    t = None
    for _ in range(4):                      # prefixes stack: "host: [rank3]:[2024-..] ..."
        if not _may_start(s):
            break
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
    if rank is None and "ank" in s:      # every _RANK_IN_MSG form has it; the regex is slow
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


_trigger_list: list[str] = []
_matcher: "_Matcher | None" = None


class _Matcher:
    """Finds trigger literals in a block of bytes.

    Hyperscan (Intel's multi-literal matcher, ~3 GB/s here) when it is installed; Python's
    `re` otherwise (~200 MB/s for an alternation of literals: sre has no multi-literal
    search). Both report the end offset of each hit, in increasing order.
    """

    def __init__(self, literals: list[bytes]):
        self.literals = literals
        self.rx = re.compile(b"|".join(re.escape(t) for t in literals))
        self.hs = None
        try:
            import hyperscan
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=[re.escape(t) for t in literals], ids=list(range(len(literals))), elements=len(literals),
                       flags=[0] * len(literals))
            # per-line lookups want each literal once, not every hit (tqdm bars repeat '| ')
            line_db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            line_db.compile(expressions=[re.escape(t) for t in literals], ids=list(range(len(literals))),
                            elements=len(literals), flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(literals))
            self.hs, self.hs_line = db, line_db
        except Exception:          # not installed, or no wheel for this platform
            self.hs = None
        self.names = [t.decode() for t in literals]

    def line_triggers(self, line: bytes) -> list[str] | None:
        """The trigger literals in one line, in _trigger_list order (hyperscan: ~1 us a line,
        against ~12 us for testing all ~150 literals with `in`); None without hyperscan."""
        if self.hs is None:
            return None
        ids: list[int] = []
        self.hs_line.scan(line, match_event_handler=lambda i, _f, _t, _fl, _c: ids.append(i))
        names = self.names
        return [names[i] for i in sorted(ids)]

    def ends(self, body: bytes) -> Iterator[int]:
        if self.hs is not None:
            hits: list[int] = []
            self.hs.scan(body, match_event_handler=lambda _id, _f, to, _fl, _c: hits.append(to))
            return iter(hits)
        return self._re_ends(body)

    def _re_ends(self, body: bytes) -> Iterator[int]:
        pos, search = 0, self.rx.search
        while True:
            m = search(body, pos)
            if not m:
                return
            yield m.end()
            # the caller skips the rest of this line; so can the regex
            nl = body.find(b"\n", m.end())
            if nl < 0:
                return
            pos = nl + 1


def _triggers() -> _Matcher:
    global _matcher, _trigger_list
    if _matcher is None:
        from . import formats  # noqa: F401 - importing registers the recognisers
        _trigger_list = sorted(_HANDLERS, key=len, reverse=True)
        _matcher = _Matcher([t.encode() for t in _trigger_list])
    return _matcher


# ---------------------------------------------------------------- scanning
def candidate_lines(blocks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for lines that contain a trigger literal.

    Works on whole blocks: the matcher skips uninteresting text in C, and Python only
    touches the lines that matched. A line longer than MAX_LINE is not buffered whole: its
    hits are yielded as windows around each hit, so a 50 MB progress-bar line costs no
    memory and the error message at its end is not lost.
    """
    m = _triggers()
    lineno = 1            # number of the first line in `buf`
    tail = b""
    for block in blocks:
        buf = tail + block if tail else block
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > 4 * MAX_LINE:         # inside a giant line
                keep = MAX_LINE
                yield from _giant(m, buf[:-keep], lineno)
                tail = buf[-keep:]
            else:
                tail = buf
            continue
        body, tail = buf[:cut + 1], buf[cut + 1:]
        yield from _scan(m, body, lineno)
        lineno += body.count(b"\n")
    if tail:
        yield from _scan(m, tail + b"\n", lineno)


def _giant(m: _Matcher, piece: bytes, lineno: int) -> Iterator[tuple[int, bytes]]:
    last = -1
    for end in m.ends(piece):
        if end <= last:
            continue
        start = max(piece.rfind(b"\r", 0, end) + 1, end - MAX_LINE)
        stop = piece.find(b"\r", end)
        stop = len(piece) if stop < 0 else stop
        last = stop
        yield lineno, piece[start:min(stop, start + MAX_LINE)]


def _scan(m: _Matcher, body: bytes, lineno: int) -> Iterator[tuple[int, bytes]]:
    counted_to = 0
    line_end = -1
    for end in m.ends(body):
        if end <= line_end:
            continue                       # another hit on a line already yielded
        start = body.rfind(b"\n", 0, end) + 1
        line_end = body.find(b"\n", end)
        lineno += body.count(b"\n", counted_to, start)
        counted_to = start
        line = body[start:line_end]
        if len(line) > MAX_LINE:
            yield from _giant(m, line, lineno)
        else:
            yield lineno, line


def parse_line(raw: bytes, lineno: int, st: StreamState) -> Iterator[Event]:
    text = raw.decode("utf-8", errors="replace")
    # Which literals can be in this line: found once on the raw bytes (an ANSI code removed by
    # clean() could join a literal, so such lines test them all).
    cands = None if b"\x1b" in raw or _matcher is None else _matcher.line_triggers(raw)
    if cands is None:
        cands = _trigger_list
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
        errors: list[InputError] = []
        for lineno, raw in candidate_lines(_until_error(iter_blocks(fh), errors)):
            yield from parse_line(raw, lineno, st)
        if errors:
            if warnings is None:
                raise errors[0]
            warnings.append(f"{inp.name}: {errors[0]}; the part before it was analysed")
        from .formats import finish_stream
        yield from finish_stream(st)
    finally:
        if inp.path is not None:
            fh.close()


def _until_error(blocks: Iterable[bytes], errors: list[InputError]) -> Iterator[bytes]:
    """End the blocks quietly at a read error (truncated .gz) so the scanner still sees the
    last, unterminated line before the cut; the error is kept in `errors`."""
    try:
        yield from blocks
    except InputError as e:
        errors.append(e)


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
