"""Text logs -> events.

Speed matters (a 10 GB log at 3 a.m.), so lines are not all parsed: the input is read in
8 MiB blocks and one compiled regex of trigger literals finds the few lines worth parsing;
only those are decoded, cleaned of decorations (rank prefixes, timestamps, ANSI colours,
carriage-return progress bars) and handed to the recognisers in sources/formats.
Memory is bounded by the block size plus a little state per rank.
"""
from __future__ import annotations

import itertools
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
_TRIGGERS: set[str] = set()
# continuation literal -> the literals whose lines it may continue (see `on`)
_CONTINUES: dict[str, set[str]] = {}


def on(*triggers: str, continuation: Iterable[str] = ()) -> Callable[[Handler], Handler]:
    """Register a recogniser for lines containing any of the literal `triggers`.

    `continuation` literals (pieces of a record wrapped over several lines) are only looked
    for in the line right after a line with one of this recogniser's literals: the block
    scanner does not search for them, so a common word such as 'rate:' costs nothing
    elsewhere (a Megatron iteration line holds a dozen of them)."""
    def deco(fn: Handler) -> Handler:
        for t in triggers:
            _HANDLERS.setdefault(t, []).append(fn)
            _TRIGGERS.add(t)
        for t in continuation:
            _HANDLERS.setdefault(t, []).append(fn)
            _CONTINUES.setdefault(t, set()).update(triggers, continuation)
        return fn
    return deco


# Steady metric lines (per-step timers, step/throughput lines, healthy Megatron iteration
# lines) are most of a big log and each costs ~25 us of Python. After the first
# STEADY_KEEP_ALL lines of a group, they are sampled with a stride that doubles every
# STEADY_KEEP_ALL kept lines (about STEADY_KEEP_ALL * log2(n) lines parsed of n), so trends
# and baselines survive. A line is only "steady" if its group's check says so on the raw
# bytes (no nan/inf, no skipped steps, ...): anything unusual is always parsed, and the last
# skipped line of each group is parsed before any other line, so state such as the current
# step is exact when an error comes. `--all-lines` turns sampling off.
STEADY_KEEP_ALL = 2000
_STEADY: dict[str, tuple[str, Callable[[bytes], bool]]] = {}
_NONFINITE = re.compile(rb"(?i)(?<![a-z])(?:nan|inf)(?![a-z])")


def steady(group: str, *triggers: str, check: Callable[[bytes], bool] | None = None) -> None:
    """Declare lines whose only triggers are `triggers` as a steady metric group (sampled
    when `check(raw_line)` is true; by default: when the line has no nan/inf)."""
    fn = check or no_nonfinite
    for t in triggers:
        _STEADY[t] = (group, fn)


def no_nonfinite(raw: bytes) -> bool:
    """No nan/inf token. Runs on every steady line, so plain `in`s on the lower-cased line
    come first (two searches instead of one per spelling); the regex runs only on lines that
    contain 'nan' or 'inf' in any case ('info', as in '[INFO]', is not a token)."""
    low = raw.lower()
    if b"nan" in low or (b"inf" in low and b"inf" in low.replace(b"info", b"")):
        return not _NONFINITE.search(raw)
    return True


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


Follow = tuple[tuple[tuple[int, bytes], ...], re.Pattern]


class _Matcher:
    """Finds trigger literals in a block of bytes.

    Hyperscan (Intel's multi-literal matcher, ~3 GB/s here) when it is installed; Python's
    `re` otherwise (~200 MB/s for an alternation of literals: sre has no multi-literal
    search). Both report the end offset of each hit, in increasing order.
    """

    def __init__(self, literals: list[bytes]):
        self.literals = literals
        self.names = [t.decode() for t in literals]
        self.index = {t: i for i, t in enumerate(literals)}
        # continuation-only literals are not searched for in the block (see `on`); `follow[i]`
        # lists the (id, literal) of those that may continue a line holding literal i
        only = [n in _CONTINUES and n not in _TRIGGERS for n in self.names]
        self.follow: list[Follow | None] = [
            self.follow_of(tuple((j, literals[j]) for j, m in enumerate(self.names) if only[j] and n in _CONTINUES[m]))
            for n in self.names]
        scanned = [i for i in range(len(literals)) if not only[i]]
        self.rx = re.compile(b"|".join(re.escape(literals[i]) for i in scanned))
        self.rx_all = re.compile(b"|".join(re.escape(t) for t in literals))
        self.hs = None
        try:
            import hyperscan
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=[re.escape(literals[i]) for i in scanned], ids=scanned,
                       elements=len(scanned), flags=[0] * len(scanned))
            self.hs = db
        except Exception:          # not installed, or no wheel for this platform
            self.hs = None

    _follow_cache: dict[tuple, "Follow"] = {}

    def follow_of(self, pairs: tuple[tuple[int, bytes], ...]) -> "Follow | None":
        """(the (id, literal) pairs, one regex for them all): the regex tells in one call
        whether a line holds any of them (most lines after a record line do not)."""
        if not pairs:
            return None
        f = self._follow_cache.get(pairs)
        if f is None:
            f = self._follow_cache[pairs] = (pairs, re.compile(b"|".join(re.escape(t) for _, t in pairs)))
        return f

    def hits(self, body: bytes) -> list[tuple[int, int]]:
        """(end offset, literal id) of the hits in `body`, in increasing offset order. The
        `re` fallback reports the first hit of each line only (its caller asks for the
        line's other literals itself)."""
        out: list[tuple[int, int]] = []
        if self.hs is not None:
            add = out.append
            self.hs.scan(body, match_event_handler=lambda i, _f, to, _fl, _c: add((to, i)))
            return out
        pos, search, index = 0, self.rx.search, self.index
        while True:
            m = search(body, pos)
            if not m:
                return out
            out.append((m.end(), index[m.group()]))
            nl = body.find(b"\n", m.end())     # the caller skips the rest of this line
            if nl < 0:
                return out
            pos = nl + 1

    def ids_in(self, line: bytes, continuations: bool = False) -> list[int]:
        """The literal ids in one line (for the `re` fallback), with the continuation
        literals too if asked."""
        rx = self.rx_all if continuations else self.rx
        return sorted({self.index[t] for t in rx.findall(line)})


def _triggers() -> _Matcher:
    global _matcher, _trigger_list
    if _matcher is None:
        from . import formats  # noqa: F401 - importing registers the recognisers
        _trigger_list = sorted(_HANDLERS, key=len, reverse=True)
        _matcher = _Matcher([t.encode() for t in _trigger_list])
    return _matcher


# ---------------------------------------------------------------- scanning
def candidate_lines(blocks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for lines that contain a trigger literal."""
    for lineno, line, _ids in candidate_hits(blocks):
        yield lineno, line


def candidate_hits(blocks: Iterable[bytes],
                   sampler: "SteadySampler | None" = None) -> Iterator[tuple[int, bytes, list[int]]]:
    """Yield (line number, raw line, ids of the trigger literals in it) for candidate lines.

    Works on whole blocks: the matcher skips uninteresting text in C, and Python only
    touches the lines that matched. A line longer than MAX_LINE is not buffered whole: its
    hits are yielded as windows around each hit, so a 50 MB progress-bar line costs no
    memory and the error message at its end is not lost. With a `sampler`, steady lines
    are thinned in the scanning loop itself (see `steady`).
    """
    m = _triggers()
    lineno = 1            # number of the first line in `buf`
    tail = b""
    carry: list[tuple[int, bytes]] = []     # continuation literals for the next block's first line
    for block in blocks:
        buf = tail + block if tail else block
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > 4 * MAX_LINE:         # inside a giant line
                keep = MAX_LINE
                carry.clear()
                yield from _sampled(sampler, _giant(m, buf[:-keep], lineno))
                tail = buf[-keep:]
            else:
                tail = buf
            continue
        body, tail = buf[:cut + 1], buf[cut + 1:]
        yield from _scan(m, body, lineno, carry, sampler)
        lineno += body.count(b"\n")
    if tail:
        yield from _scan(m, tail + b"\n", lineno, carry, sampler)
    if sampler is not None and sampler.pending:
        yield from sampler.flush()


def _giant(m: _Matcher, piece: bytes, lineno: int) -> Iterator[tuple[int, bytes, list[int]]]:
    last = -1
    for end, _id in m.hits(piece):
        if end <= last:
            continue
        start = max(piece.rfind(b"\r", 0, end) + 1, end - MAX_LINE)
        stop = piece.find(b"\r", end)
        stop = len(piece) if stop < 0 else stop
        last = stop
        window = piece[start:min(stop, start + MAX_LINE)]
        yield lineno, window, m.ids_in(window)


def _sampled(sampler: "SteadySampler | None", items: Iterable[tuple[int, bytes, list[int]]]):
    return items if sampler is None else sampler.filter(items, final=False)


def _scan(m: _Matcher, body: bytes, lineno: int, carry: list[tuple[int, bytes]],
          sampler: "SteadySampler | None") -> Iterator[tuple[int, bytes, list[int]]]:
    # The hot loop of `analyze`: one iteration per trigger hit, so it stays flat.
    counted_to = 0
    line_end = -1
    ids: list[int] | tuple = ()       # scanner hits on the open line
    extra: list[int] | tuple = ()     # continuation literals found on it (see `on`)
    line = b""
    exact = m.hs is not None          # hyperscan reports every hit; `re` only the first
    follow = m.follow
    rfind, find, count = body.rfind, body.find, body.count
    admit = sampler.admit if sampler is not None else None
    if carry:                         # the previous block's last line may continue here
        line_end = find(b"\n")
        line = body[:line_end]
        ids = []
        extra = [j for j, lit in carry if lit in line]
        carry.clear()
    hits = m.hits(body)
    hits.append((len(body) + 1, -1))  # a sentinel closes the last line
    for end, i in hits:
        if end <= line_end:
            ids.append(i)                  # another literal on the current line
            continue
        while ids or extra:                # close the open line (and the lines continuing it)
            if len(line) > MAX_LINE:
                yield from _sampled(sampler, _giant(m, line, lineno))
                ids = extra = ()
                break
            if exact:
                got = [*ids, *extra] if extra else ids
                if len(got) > 1:
                    got = sorted(set(got))
            else:
                got = sorted(set(m.ids_in(line)).union(extra)) if extra else m.ids_in(line)
            item = (lineno, line, got)
            if admit is None:
                yield item
            else:                          # SteadySampler.filter, inlined: no generator hop
                verdict = admit(item)
                if verdict is not False:
                    if verdict is None and sampler.pending:
                        yield from sampler.flush()
                    yield item
            ids = extra = ()
            fl = follow[got[0]] if len(got) == 1 else _follows(m, got)
            if fl is None:
                break
            nxt_start = line_end + 1
            if nxt_start >= len(body):
                carry.extend(fl[0])
                break
            nxt_end = find(b"\n", nxt_start)
            nxt = body[nxt_start:nxt_end]
            if not fl[1].search(nxt):
                break
            extra = [j for j, lit in fl[0] if lit in nxt]
            lineno += count(b"\n", counted_to, nxt_start)
            counted_to = nxt_start
            line, line_end = nxt, nxt_end
            if end <= line_end:
                ids = [i]
                break
        if end <= line_end or i < 0:       # the hit went to a continued line, or the sentinel
            continue
        start = rfind(b"\n", 0, end) + 1
        line_end = find(b"\n", end)
        lineno += count(b"\n", counted_to, start)
        counted_to = start
        line = body[start:line_end]
        ids = [i]


def _follows(m: _Matcher, ids: list[int]) -> Follow | None:
    pairs: tuple[tuple[int, bytes], ...] = ()
    for i in ids:
        f = m.follow[i]
        if f is not None:
            pairs += f[0]
    return m.follow_of(tuple(sorted(set(pairs)))) if pairs else None


def _line_triggers(raw: bytes, ids: list[int] | None = None) -> list[str]:
    """Which literals are in this line (from the scanner's hits, in _trigger_list order). An
    ANSI code removed by clean() could join a literal, so such lines test them all."""
    if b"\x1b" in raw or _matcher is None:
        return _trigger_list
    if ids is None:                    # a line on its own: no previous line to tell
        ids = _matcher.ids_in(raw, continuations=True)
    names = _matcher.names
    return [names[i] for i in ids]


def parse_line(raw: bytes, lineno: int, st: StreamState, cands: list[str] | None = None) -> Iterator[Event]:
    text = raw.decode("utf-8", errors="replace")
    if cands is None:
        cands = _line_triggers(raw)
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


class SteadySampler:
    """Thins steady metric lines (see `steady`); every other candidate line passes."""

    def __init__(self, keep_all: int = STEADY_KEEP_ALL):
        self.keep_all = keep_all
        self.count: dict[str, int] = {}
        self.pending: dict[str, tuple[int, bytes, list[int]]] = {}
        self.next_kept: dict[str, int] = {}       # per group: the next count that `_keep` keeps
        m = _triggers()
        # literal id -> (group, check) or None, so a line's group costs a few list lookups
        self.table = [_STEADY.get(name) for name in m.names]

    def _group(self, raw: bytes, ids: list[int]) -> str | None:
        table = self.table
        first = table[ids[0]]
        if first is None:
            return None
        group, check = first
        for i in ids[1:]:
            e = table[i]
            if e is None or e[0] != group:
                return None
        return group if check(raw) else None

    def _keep(self, n: int) -> bool:
        k = self.keep_all
        if n <= k:
            return True
        period = (n // k + 1).bit_length() - 1        # 1, 2, 3 ... as n doubles past k
        return n % (1 << period) == 0

    def _next_kept(self, n: int) -> int:
        """The smallest m > n that `_keep` keeps: the next multiple of m's stride (strides only
        grow, so no kept count lies before it; if the stride grew by then, go on from there)."""
        m = n + 1
        while not self._keep(m):
            stride = 1 << ((m // self.keep_all + 1).bit_length() - 1)
            m = -(-m // stride) * stride
        return m

    def admit(self, item: tuple[int, bytes, list[int]]) -> bool | None:
        """The sampler's decision for one candidate line: True (a steady line to parse now),
        False (steady, held back in `pending`), None (not steady: parse it, after `flush`).
        Runs for every candidate line, so `_group` and `_keep` are inlined for the common
        case (one literal, a steady group, past the first keep_all lines)."""
        ids = item[2]
        if len(ids) == 1:
            e = self.table[ids[0]]
            group = e[0] if e is not None and e[1](item[1]) else None
        else:
            group = self._group(item[1], ids) if ids else None
        if group is None:
            return None
        count = self.count
        n = count[group] = count.get(group, 0) + 1
        if n < self.next_kept.get(group, 0):
            self.pending[group] = item
            return False
        self.next_kept[group] = self._next_kept(n)
        if self.pending:
            self.pending.pop(group, None)
        return True

    def flush(self) -> list[tuple[int, bytes, list[int]]]:
        """The held-back lines (the last of each group), in line order."""
        out = sorted(self.pending.values())
        self.pending.clear()
        return out

    def filter(self, hits: Iterable[tuple[int, bytes, list[int]]],
               final: bool = True) -> Iterator[tuple[int, bytes, list[int]]]:
        """Thin a stream of candidate lines; `final`: it is the end of the input."""
        for item in hits:
            verdict = self.admit(item)
            if verdict is False:
                continue
            if verdict is None and self.pending:
                yield from self.flush()
            yield item
        if final and self.pending:
            yield from self.flush()


def read_log(inp: Input, warnings: list[str] | None = None, sample: bool = True) -> Iterator[Event]:
    """All events of one input. An unreadable tail (truncated .gz) ends the input with a
    warning; the events before it are kept."""
    st = StreamState(inp.name, inp.rank_hint)
    _triggers()
    fh = inp.open()
    try:
        if inp.kind == "events":
            yield from read_events(_text_lines(iter_blocks(fh)), inp.name)
            return
        blocks: Iterable[bytes] = iter_blocks(fh)
        if inp.path is None:              # stdin: an empty pipe is an input error, not a healthy run
            first = next(iter(blocks), None)
            if first is None:
                raise InputError(f"{inp.name}: nothing on stdin (empty input), nothing to analyse")
            blocks = itertools.chain([first], blocks)
        errors: list[InputError] = []
        hits = candidate_hits(_until_error(blocks, errors), SteadySampler() if sample else None)
        for lineno, raw, ids in hits:
            yield from parse_line(raw, lineno, st, _line_triggers(raw, ids))
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
