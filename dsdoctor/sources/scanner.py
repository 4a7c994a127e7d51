"""Block scanning: which lines of a log are worth parsing, found in C.

The input comes in 8 MiB blocks; one compiled set of trigger literals (recogniser.on) finds the
few lines worth parsing, and Python only touches those. Two paths:

  line by line  every hit comes back to Python, and steady metric lines are thinned one by one
                (SteadySampler.admit). Used without hyperscan (Python's `re` then finds the
                literals), with --all-lines, and for blocks the fast path declines.
  fast          hyperscan and sampling: steady literals are only said to be in the block (found
                in its first bytes with bytes.find, or reported once by hyperscan), hyperscan
                patterns report the unusual steady lines (recogniser.SteadyGroup.anomalies), and
                the sampled lines are found with bytes.count/find. A steady line costs no
                Python at all, which is what keeps a 10 GB log close to grep's time.

Both yield (line number, raw line, ids of the literals in it), in line order.
"""
from __future__ import annotations

import collections
import functools
import os
import re
import threading
from pathlib import Path
from typing import Generator, Iterable, Iterator

from .. import regex_cache
from ..digest import sha256_hex
from .recogniser import SteadyGroup
from .registry import CONTINUES, HANDLERS, STEADY, TRIGGERS
from .sampler import SteadySampler

MAX_LINE = 64 * 1024          # longer lines are cut: a 50 MB line is noise, not evidence
MAX_WALK_BACK = 8             # physical lines a wrapped record may span before its unusual piece
# fast_hits: blocks from this size look for the steady literals in their first STEADY_WINDOW
# bytes before the Hyperscan scan (smaller ones, e.g. whole small logs, keep one database)
STEADY_SPLIT_FROM = 4 << 20
STEADY_WINDOW = 256 << 10


def _scans_in_flight() -> int:
    """Blocks scanned ahead at once on the fast path: one per core this process may use, up to
    four (hs_scan releases the GIL; each block in flight holds its 16 MiB in memory)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):        # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


SCANS_IN_FLIGHT = _scans_in_flight()

_trigger_list: list[str] = []
_matcher: "Matcher | None" = None
Item = tuple[int, bytes, list[int]]


Follow = tuple[tuple[tuple[int, bytes], ...], re.Pattern]


class Matcher:
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
        only = [n in CONTINUES and n not in TRIGGERS for n in self.names]
        # (from each continuation literal to the literals it may continue: one pass over
        # CONTINUES instead of a scan of every continuation literal per literal, ~3 ms)
        follows: list[list[int]] = [[] for _ in literals]
        for j, m in enumerate(self.names):
            if only[j]:
                for n in CONTINUES[m]:
                    k = self.index.get(n.encode())
                    if k is not None:
                        follows[k].append(j)
        self.follow: list[Follow | None] = [
            self.follow_of(tuple((j, literals[j]) for j in js)) if js else None for js in follows]
        scanned = [i for i in range(len(literals)) if not only[i]]
        self._scanned = scanned
        # literal id -> its steady group (recogniser.steady), or None
        self.groups: list[SteadyGroup | None] = [STEADY.get(n) for n in self.names]
        # group name -> the literal id of its anchor when the anchor is one of the group's
        # scanned literals (the fast scan then says whether a block holds it), else None
        self.anchor_id: dict[str, int | None] = {}
        for g in self.groups:
            if g is not None:
                i = self.index.get(g.anchor)
                self.anchor_id[g.name] = i if i is not None and not only[i] and self.groups[i] is g else None
        self.hs = self.fast = None
        self._fast_lock = threading.Lock()
        # id(database) -> scratches not in use: one per scan running at once (a scratch is
        # Hyperscan's working memory, never shared by two scans; the database is read-only)
        self._free_scratch: dict[int, list] = {}
        try:
            import hyperscan
        except Exception:          # not installed, or no wheel for this platform
            return
        self.hs = _compiled(hyperscan, [literals[i] for i in scanned], [], scanned, [0] * len(scanned))
        self._hyperscan = hyperscan
        # the steady literals, and the fast databases by the steady literals they hold (fast_hits)
        self.steady_literals = [(i, literals[i]) for i in scanned if self.groups[i]]
        self._fast_dbs: dict[tuple[int, ...], object] = {}
        self.fast = self._fast_database(tuple(i for i, _ in self.steady_literals))

    # `re` alternations of the literals: only the fallback and lines looked at on their own
    # need them, and compiling ~170 alternatives costs ~0.1 s of every start-up
    @functools.cached_property
    def rx(self) -> re.Pattern:
        return re.compile(b"|".join(re.escape(self.literals[i]) for i in self._scanned))

    @functools.cached_property
    def rx_all(self) -> re.Pattern:
        return re.compile(b"|".join(re.escape(t) for t in self.literals))

    def _fast_database(self, steady: tuple[int, ...]):
        """A fast path database: the literals in no steady group, the steady literals `steady`
        reported once per block (SINGLEMATCH: that says the group is there), plus every
        group's anomaly patterns with ids from len(literals) up. Built once per set of steady
        literals (and cached on disk, see _compiled); `self.fast` holds them all."""
        if steady in self._fast_dbs:
            return self._fast_dbs[steady]
        hyperscan, scanned = self._hyperscan, self._scanned
        keep = [k for k, i in enumerate(scanned) if not self.groups[i] or i in steady]
        ids = [scanned[k] for k in keep]
        literals = [self.literals[i] for i in ids]
        flags = [hyperscan.HS_FLAG_SINGLEMATCH if self.groups[i] else 0 for i in ids]
        patterns: dict[tuple[bytes, int], int] = {}
        for g in {g.name: g for g in self.groups if g and g.anomalies}.values():
            for pat in g.anomalies:
                patterns.setdefault(pat, len(self.literals) + len(patterns))
        regexes = []
        for (rx, fl), i in patterns.items():
            regexes.append(rx)
            flags.append(fl)
            ids.append(i)
        try:
            db = _compiled(hyperscan, literals, regexes, ids, flags)
        except Exception:        # a pattern hyperscan cannot compile: the line-by-line path only
            db = None
        self._fast_dbs[steady] = db
        return db

    _follow_cache: dict[tuple, "Follow"] = {}

    def follow_of(self, pairs: tuple[tuple[int, bytes], ...]) -> "Follow | None":
        """(the (id, literal) pairs, one regex for them all): the regex tells in one call
        whether a line holds any of them (most lines after a record line do not)."""
        if not pairs:
            return None
        f = self._follow_cache.get(pairs)
        if f is None:
            f = self._follow_cache[pairs] = (pairs, regex_cache.compile(b"|".join(re.escape(t) for _, t in pairs)))
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

    def fast_hits(self, body: bytes) -> list[tuple[int, int]]:
        """(end offset, id) of one hit of each steady literal in `body` (not always its first,
        in no order), then the other literals' hits and anomaly hits (id >= len(literals)), in
        offset order.

        The steady literals are on nearly every line, and even reported once per block each
        of their occurrences costs Hyperscan a confirmation: a fifth of the block's scan. So
        in a large block they are first looked for with `bytes.find` in its first
        STEADY_WINDOW bytes (microseconds: a group that is in a block is nearly always in its
        start), and the block is scanned with a database that holds only the steady literals
        not found there (a group that starts later in the block, or is not in it: absent
        literals cost Hyperscan next to nothing)."""
        out: list[tuple[int, int]] = []
        add = out.append
        db = self.fast
        if len(body) >= STEADY_SPLIT_FROM:
            rest = []
            find = body.find
            for i, lit in self.steady_literals:
                q = find(lit, 0, STEADY_WINDOW)
                if q >= 0:
                    add((q + len(lit), i))
                else:
                    rest.append(i)
            if out:
                with self._fast_lock:
                    db = self._fast_database(tuple(rest)) or db
        with self._fast_lock:
            free = self._free_scratch.setdefault(id(db), [])
            scratch = free.pop() if free else db.scratch.clone()
        try:
            db.scan(body, match_event_handler=lambda i, _f, to, _fl, _c: add((to, i)), scratch=scratch)
        finally:
            with self._fast_lock:
                free.append(scratch)
        return out

    def line_ids(self, line: bytes) -> list[int]:
        """The (scanned) literal ids in one line, every one of them."""
        if self.hs is None:
            return self.ids_in(line)
        got: set[int] = set()             # (called for every line parsed: no list of hits first)
        add = got.add
        self.hs.scan(line, match_event_handler=lambda i, _f, _to, _fl, _c: add(i))
        return sorted(got)

    def ids_in(self, line: bytes, continuations: bool = False) -> list[int]:
        """The literal ids in one line (for the `re` fallback), with the continuation
        literals too if asked."""
        if continuations and self._hs_all is not None:
            return self._ids_in_all(line)
        rx = self.rx_all if continuations else self.rx
        return self._with_overlapped(sorted({self.index[t] for t in rx.findall(line)}), line, continuations)

    def _with_overlapped(self, ids: list[int], line: bytes, continuations: bool = False) -> list[int]:
        """findall's matches do not overlap, so a trigger that starts inside another's match is
        not reported ('step=5 loss: nan': '5 loss' hides 'loss: nan'); Hyperscan's scan of a block
        reports both. Add the triggers (and with `continuations` the continuation literals: four
        spaces hide two) that may start inside a found literal and are in the line."""
        more: set[int] | None = None
        for i in ids:
            for j in self._overlapping(i, continuations):
                if (more is None or j not in more) and j not in ids and self.literals[j] in line:
                    more = more or set(ids)
                    more.add(j)
        return sorted(more) if more else ids

    def _overlapping(self, i: int, continuations: bool = False) -> tuple[int, ...]:
        """The scanned literals (with `continuations` every literal) that can start inside literal
        i, or at its start (a shorter one that begins it: the alternation reports only one of
        'Error:' and 'Error'), memoised."""
        got = self._overlap_memo.get((i, continuations))
        if got is None:
            lit, found = self.literals[i], []
            by_first = self._by_first_byte_all if continuations else self._by_first_byte
            for k in range(len(lit)):
                suffix = lit[k:]
                for j in by_first.get(suffix[0], ()):
                    t = self.literals[j]
                    if j != i and (t.startswith(suffix) or suffix.startswith(t)):
                        found.append(j)
            got = self._overlap_memo[(i, continuations)] = tuple(found)
        return got

    @functools.cached_property
    def _overlap_memo(self) -> dict[tuple[int, bool], tuple[int, ...]]:
        return {}

    @functools.cached_property
    def _by_first_byte(self) -> dict[int, list[int]]:
        return self._first_bytes(self._scanned)

    @functools.cached_property
    def _by_first_byte_all(self) -> dict[int, list[int]]:
        return self._first_bytes(range(len(self.literals)))

    def _first_bytes(self, ids) -> dict[int, list[int]]:
        by: dict[int, list[int]] = {}
        for i in ids:
            by.setdefault(self.literals[i][0], []).append(i)
        return by

    @functools.cached_property
    def _hs_all(self):
        """A Hyperscan database of every literal, continuation-only ones too (from the
        on-disk cache: ~1 ms, where compiling `rx_all`, ~840 alternatives, costs ~20 ms:
        small logs read both ways by sources/unwrap.py, rule examples, lines parsed alone)."""
        if self.hs is None:
            return None
        n = len(self.literals)
        try:
            return _compiled(self._hyperscan, self.literals, [], list(range(n)), [0] * n)
        except Exception:        # a literal Hyperscan refuses: `rx_all` then, as without Hyperscan
            return None

    def _ids_in_all(self, line: bytes) -> list[int]:
        """`rx_all.findall(line)` as ids, from Hyperscan's hits: findall's matches do not
        overlap, each the leftmost one from where the last ended, and at one position the
        first alternative (the lowest id: the alternation lists the literals in id order)."""
        hits: list[tuple[int, int]] = []
        add, lens = hits.append, self._lens
        self._hs_all.scan(line, match_event_handler=lambda i, _f, to, _fl, _c: add((to - lens[i], i)))
        if not hits:
            return []
        hits.sort()
        got: set[int] = set()
        pos = 0
        for start, i in hits:
            if start >= pos:
                got.add(i)
                pos = start + lens[i]
        return self._with_overlapped(sorted(got), line, True)

    @functools.cached_property
    def _lens(self) -> list[int]:
        return [len(t) for t in self.literals]


def _compiled(hyperscan, literals: list[bytes], regexes: list[bytes], ids: list[int], flags: list[int]):
    """A hyperscan block database of `literals` then `regexes` (ids and flags in that order),
    from the on-disk cache when it holds this exact set (compiling both databases costs
    ~0.25 s, a third of a small `analyze`). The key covers the literals as they are (escaping
    ~840 of them for every start-up cost ~1.6 ms: only a compile needs them escaped), the
    regexes, ids, flags and hyperscan's version; any cache trouble just compiles."""
    key = sha256_hex(repr(("literals", literals, regexes, ids, flags, getattr(hyperscan, "__version__", ""),
                           hyperscan.__file__)).encode())[:32]
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsdoctor" / "hyperscan"
    path = folder / f"{key}.db"
    try:
        db = hyperscan.loadb(path.read_bytes(), mode=hyperscan.HS_MODE_BLOCK)
        db.scratch = hyperscan.Scratch(db)      # a loaded database comes without one
        return db
    except Exception:            # not cached yet, unreadable, or written by another build
        pass
    exprs = [re.escape(t) for t in literals] + regexes
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=exprs, ids=ids, elements=len(ids), flags=flags)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.{os.getpid()}.tmp"
        tmp.write_bytes(hyperscan.dumpb(db))
        os.replace(tmp, path)    # atomic: a concurrent reader sees a whole file or none
    except Exception:            # read-only home, full disk: compile next time too
        pass
    return db


_blocks_kept = False
BIG_BLOCK = 1 << 20       # an input whose first block is this big is read in many large blocks


def keep_freed_blocks() -> None:
    """_keep_freed_blocks, once per process: called by the reader when an input's first
    block is large (BIG_BLOCK), so a small log does not load _ctypes for it."""
    global _blocks_kept
    if not _blocks_kept:
        _blocks_kept = True
        _keep_freed_blocks()


def _keep_freed_blocks() -> None:
    """Let glibc reuse the memory of freed blocks instead of returning it to the kernel: each
    8 MiB block (the read, the line-aligned body) otherwise comes from a fresh mmap whose every
    page faults on first touch, which cost a fifth of `analyze`'s CPU (in the kernel). At most
    a few blocks are alive at once, so the heap kept stays under ~50 MB. The call goes through
    `_ctypes` itself: the `ctypes` package (its ~40 types, `struct`) cost ~7 ms of import."""
    try:
        import _ctypes

        class CInt(_ctypes._SimpleCData):        # ctypes.c_int
            _type_ = "i"

        class CFunction(_ctypes.CFuncPtr):       # a CDLL's function: cdecl, returns an int
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = CInt

        mallopt = CFunction(_ctypes.dlsym(_ctypes.dlopen(None), "mallopt"))
    except (ImportError, OSError, AttributeError):     # not glibc (musl, macOS), no dlopen: nothing to tune
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 64 << 20)
    mallopt(M_TRIM_THRESHOLD, 128 << 20)


def matcher() -> Matcher:
    """The matcher of every trigger literal of the registry (built once: compiling the
    hyperscan database costs ~0.1 s)."""
    global _matcher, _trigger_list
    if _matcher is None:
        _trigger_list = sorted(HANDLERS, key=len, reverse=True)
        _matcher = Matcher([t.encode() for t in _trigger_list])
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
    are thinned in the scanning loop itself, on the fast path when hyperscan is there.
    """
    m = matcher()
    lineno = 1            # number of the first line in `buf`
    tail = b""
    carry: list[tuple[int, bytes]] = []     # continuation literals for the next block's first line
    fast = sampler is not None and m.fast is not None
    scan = _scan_fast if fast else _scan
    # On the fast path the next blocks are scanned in threads while this one's lines are
    # parsed: hs_scan releases the GIL, so the other cores take the scan's time off the wall
    # clock (the CPU time is the same). The order of everything yielded is kept.
    queued: collections.deque[tuple[bytes, _Ahead | None]] = collections.deque()
    in_flight = SCANS_IN_FLIGHT if fast else 0
    try:
        for block in blocks:
            buf = tail + block if tail else block
            cut = buf.rfind(b"\n")
            if cut < 0:
                if len(buf) > 4 * MAX_LINE:         # inside a giant line
                    while queued:
                        body, ahead = queued.popleft()
                        lineno += yield from scan(m, body, lineno, carry, sampler, ahead)
                    keep = MAX_LINE
                    carry.clear()
                    yield from _sampled(sampler, _giant(m, buf[:-keep], lineno))
                    tail = buf[-keep:]
                else:
                    tail = buf
                continue
            body, tail = buf[:cut + 1], buf[cut + 1:]
            queued.append((body, _Ahead(m.fast_hits, body) if fast else None))
            while len(queued) > in_flight:
                body, ahead = queued.popleft()
                lineno += yield from scan(m, body, lineno, carry, sampler, ahead)
        while queued:
            body, ahead = queued.popleft()
            lineno += yield from scan(m, body, lineno, carry, sampler, ahead)
    finally:                                # an abandoned read: no scan left running
        for _body, running in queued:
            if running is not None:
                running.wait()
    if tail:
        yield from scan(m, tail + b"\n", lineno, carry, sampler)
    if sampler is not None and sampler.pending:
        yield from sampler.flush()


class _Ahead:
    """`fn(arg)` computed in a thread; `result()` waits for it (and raises what it raised)."""

    def __init__(self, fn, arg):
        self._out = self._err = None
        self._thread = threading.Thread(target=self._run, args=(fn, arg), daemon=True)
        self._thread.start()

    def _run(self, fn, arg) -> None:
        try:
            self._out = fn(arg)
        except BaseException as e:       # handed to the reader in result()
            self._err = e

    def wait(self) -> None:
        self._thread.join()

    def result(self):
        self._thread.join()
        if self._err is not None:
            raise self._err
        return self._out


def _giant(m: Matcher, piece: bytes, lineno: int) -> Iterator[tuple[int, bytes, list[int]]]:
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


def _scan(m: Matcher, body: bytes, lineno: int, carry: list[tuple[int, bytes]],
          sampler: "SteadySampler | None", ahead: "_Ahead | None" = None) -> Generator[Item, None, int]:
    """The line-by-line path for one block; returns the number of lines in `body`."""
    # The hot loop of `analyze`: one iteration per trigger hit, so it stays flat.
    first = lineno
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
            cont = _continuation(body, line_end, fl, carry)
            if cont is None:
                break
            nxt_start, nxt_end, nxt, extra = cont
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
    return lineno - first + count(b"\n", counted_to)


def _scan_fast(m: Matcher, body: bytes, lineno: int, carry: list[tuple[int, bytes]],
               sampler: SteadySampler, ahead: "_Ahead | None" = None) -> Generator[Item, None, int]:
    """The fast path for one block (see the module docstring). Steady lines reach Python only
    when sampled, unusual (an anomaly pattern), or the last of their group before another
    candidate line or the block's end; a group without anomaly patterns, or whose
    `block_ok` says no, sends the block down the line-by-line path."""
    n_literals = len(m.literals)
    groups: dict[str, SteadyGroup] = {}
    seen: set[int] = set()               # steady literals in the block (reported once each)
    starts: list[int] = []               # starts of the lines to parse
    rfind = body.rfind
    for end, i in (ahead.result() if ahead is not None else m.fast_hits(body)):
        g = m.groups[i] if i < n_literals else None
        if g is None:                    # another literal, or an anomaly pattern
            starts.append(rfind(b"\n", 0, end) + 1)
        else:
            groups[g.name] = g
            seen.add(i)
    counts, anchors = {}, {}
    for g in groups.values():
        # A group is there when any of its literals is, not always its anchor (a tqdm bar in
        # 'it/s]' has no 's/it]'): an anchor hyperscan did not see is not counted or looked
        # for (each count, find or rfind of an absent anchor is a pass over the block).
        i = m.anchor_id[g.name]
        anchors[g.name] = a = g.anchor if i is None or i in seen else None
        counts[g.name] = n = _anchor_count(body, g, a, sampler) if a is not None else 0
        if g.anomalies is None or (g.block_ok is not None and not g.block_ok(body, n)):
            return (yield from _scan(m, body, lineno, carry, sampler))
    first_extra: list[int] = []
    if carry:                            # the previous block's last line may continue here
        head = body[:body.find(b"\n")]
        first_extra = [j for j, lit in carry if lit in head]
        carry.clear()
        if first_extra:
            starts.append(0)
    others = sorted(set(starts))
    if sampler.pending:                  # steady lines held back in earlier blocks (below, or line by line)
        yield from _release(m, sampler, body, anchors, others[0] if others else None)
    hold: set[int] = set()
    for g in groups.values():
        count, a = counts[g.name], anchors[g.name]
        picks = sampler.kept_in(g.name, count)
        if a is None:
            continue
        starts += _sampled_starts(body, a, count, picks)
        lo = 0
        for p in others:                 # the group's last line before each other line
            q = rfind(a, lo, p)
            if q >= 0:
                starts.append(rfind(b"\n", 0, q) + 1)
            lo = p
        q = rfind(a, lo)                 # its last line in the block: held back, parsed only if an
        if q >= 0:                       # other line comes before the group's next one (or at the end)
            hold.add(rfind(b"\n", 0, q) + 1)
    last = rfind(b"\n", 0, len(body) - 1) + 1
    ids = m.line_ids(body[last:-1])
    if ids and not _is_steady(m, body[last:-1], ids) and follow_of_ids(m, ids) is not None:
        starts.append(last)              # a record the next block may continue: parse it (and carry)
        starts += hold                   # an other line: the groups' last lines before it are parsed
        hold = set()
    return (yield from _emit(m, body, lineno, starts, first_extra, carry, hold, sampler))


ESTIMATE_FROM = 256 << 10    # bytes of a block in which a sampled group's lines are counted


def _anchor_count(body: bytes, g: SteadyGroup, anchor: bytes, sampler: SteadySampler) -> int:
    """The number of lines of group `g` in `body`: counted exactly for small blocks, for groups
    with a `block_ok` test and when the keep-all phase may end past the first ESTIMATE_FROM
    bytes; otherwise counted in those bytes and scaled to the block (the keep-all picks all
    lie in the counted part, where they are walked to one by one). A count is a pass over
    the block (~1 GB/s, as slow as the whole Hyperscan scan), and in the stride phase it only
    sizes the sample and places its lines: unusual lines come from the anomaly patterns and
    the last line before any other candidate from `rfind`, exactly, whatever the estimate."""
    size = len(body)
    if size <= 2 * ESTIMATE_FROM or g.block_ok is not None:
        return body.count(anchor)
    part = body.count(anchor, 0, ESTIMATE_FROM)
    if part < sampler.keep_all - sampler.count.get(g.name, 0):
        return body.count(anchor)     # the keep-all phase may reach past the counted part
    return max(1, part * size // ESTIMATE_FROM)


def _sampled_starts(body: bytes, anchor: bytes, count: int, picks: list[int]) -> list[int]:
    """Starts of the lines holding the anchor occurrences numbered `picks` (0-based, of
    `count` in `body`). Close picks (the keep-all phase) are walked to exactly; far ones are
    looked for where they would be if the lines were evenly spread (sampling only needs
    lines spread over the block, and a walk would cost a call per skipped line)."""
    out: list[int] = []
    pos = nxt = 0                        # search from `pos`; the next occurrence there is number `nxt`
    find, size = body.find, len(body)
    for k in picks:
        if k - nxt > 16:
            pos, nxt = max(pos, size * k // count), k
        while True:
            q = find(anchor, pos)
            if q < 0:
                return out
            pos, nxt = q + 1, nxt + 1
            if nxt > k:
                break
        out.append(body.rfind(b"\n", 0, q) + 1)
    return out


def _newlines(body: bytes, start: int, end: int) -> int:
    """Newlines in body[start:end]. Long spans: the length lost by deleting them, which runs
    at memchr/memcpy speed, about twice bytes.count's (a block's line count is a full pass
    over it, as costly as half the Hyperscan scan)."""
    if end - start < 1 << 16:
        return body.count(b"\n", start, end)
    piece = body[start:end]
    return len(piece) - len(piece.replace(b"\n", b""))


def _emit(m: Matcher, body: bytes, lineno: int, starts: list[int], first_extra: list[int],
          carry: list[tuple[int, bytes]], hold: set[int] = frozenset(),
          sampler: SteadySampler | None = None) -> Generator[Item, None, int]:
    """Yield the lines at `starts` with the lines that continue them (see `on`); the steady
    lines at `hold` are numbered and left in `sampler.pending` (a later block or the end of
    the input decides whether they are parsed). Return the number of lines in `body`.

    The block's lines are all found and numbered before the first is yielded: numbering is
    a pass over the whole block (~16 MiB, in the gaps between the lines), and done between
    the yields it left each parsed line's parser and detectors with caches the count had
    just flushed (sources/logs.py parses them in runs too; README, Benchmarks)."""
    out: list[Item] = []
    add = out.append
    find = body.find
    count = functools.partial(_newlines, body)
    first = lineno
    counted_to, done_to = 0, 0           # newlines counted up to; lines yielded up to
    emit = set(starts)
    for s in sorted(emit | hold) if hold else sorted(emit):
        if s < done_to:
            continue
        e = find(b"\n", s)
        line = body[s:e]
        ids = m.line_ids(line)
        if s not in emit:                # held back, when it is a steady line (else parsed now)
            if ids and _is_steady(m, line, ids):
                lineno += count(counted_to, s)
                counted_to = s
                sampler.pending["+".join(sorted({m.groups[i].name for i in ids}))] = (lineno, line, ids)
                continue
        if s == 0 and first_extra:
            ids = sorted({*ids, *first_extra})
        # whether `line` is a complete steady record: asked once per line (its checks run
        # the group's Python test); None while not known yet
        steady: bool | None = bool(ids) and _is_steady(m, line, ids)
        if not steady:
            # an anomaly or a sampled piece in a wrapped record: read from the record's start,
            # when the line above is the (incomplete, so not steady) start of one
            r = _record_start(m, body, s, done_to)
            if r is not None and r != s:
                e_r = find(b"\n", r)
                ids_r = m.line_ids(body[r:e_r])
                fl_r = follow_of_ids(m, ids_r)
                if not _reaches(m, body, r, ids_r, s):
                    r = None             # the lines between do not continue it: line s starts its own
                elif ids and (_is_steady(m, body[r:e_r], ids_r) or
                            not set(ids) <= {j for j, _ in fl_r[0]}.union(ids_r)):
                    r = None             # a complete record above, or a literal of its own: it stands alone
                else:            # (the record line was found not steady just above when `ids`)
                    steady = False if ids else None
                    s, e, line, ids = r, e_r, body[r:e_r], ids_r
            if r is None and not ids:
                continue
        lineno += count(counted_to, s)
        counted_to = s
        if len(line) > MAX_LINE:
            out.extend(_giant(m, line, lineno))
            done_to = e + 1
            continue
        add((lineno, line, ids))
        # a complete steady record is not continued: the next one is on the next line
        while True:
            if steady is None:
                steady = _is_steady(m, line, ids)
            if steady or (fl := follow_of_ids(m, ids)) is None:
                break
            cont = _continuation(body, e, fl, carry)
            if cont is None:
                break
            nxt_s, nxt_e, nxt, extra = cont
            ids = sorted({*m.line_ids(nxt), *extra})
            lineno += count(counted_to, nxt_s)
            counted_to = nxt_s
            e, line, steady = nxt_e, nxt, None
            add((lineno, nxt, ids))
        done_to = e + 1
    lines = lineno - first + count(counted_to, len(body))
    yield from out
    return lines


def _release(m: Matcher, sampler: SteadySampler, body: bytes, anchors: dict[str, bytes | None],
             first_other: int | None) -> list[Item]:
    """The held-back steady lines (sampler.pending) a new block makes necessary, in line order:
    a group's last line before an other candidate line is parsed (the step of an error stays
    exact), so a held line is parsed when this block has an other line before the next line
    of one of its groups; it is dropped when every group of it has a line before that (or in
    the block, when there is no other line), and stays held otherwise."""
    out = []
    end = len(body) if first_other is None else first_other
    for key, item in list(sampler.pending.items()):
        newer = all((a := anchors.get(n)) is not None and body.find(a, 0, end) >= 0 for n in key.split("+"))
        if newer or first_other is not None:
            del sampler.pending[key]
            if not newer:
                out.append(item)
    return sorted(out)


def _record_start(m: Matcher, body: bytes, s: int, done_to: int) -> int | None:
    """The start of the nearest line above `s` (a few at most) holding a literal whose
    continuations may reach line `s`, or None."""
    for _ in range(MAX_WALK_BACK):
        if s <= done_to:
            return None
        s = body.rfind(b"\n", 0, s - 1) + 1
        ids = m.line_ids(body[s:body.find(b"\n", s)])
        if ids:
            return s if follow_of_ids(m, ids) is not None else None
    return None


def _reaches(m: Matcher, body: bytes, r: int, ids_r: list[int], s: int) -> bool:
    """Do the lines after the one at `r` continue it, one after the other, down to line `s`? A
    piece of a wrapped Megatron record ('number of nan iterations: 0 |', the last of a record whose
    head a paste cut) holds the record start's own literal, but the next record's head below it is
    no continuation of it: read as one, that head was skipped and its record's NaN lost."""
    pos, ids, scratch = r, ids_r, []
    while pos < s:
        fl = follow_of_ids(m, ids)
        cont = _continuation(body, body.find(b"\n", pos), fl, scratch) if fl is not None else None
        if cont is None or cont[0] > s:
            return False
        pos, ids = cont[0], sorted({*m.line_ids(cont[2]), *cont[3]})
    return pos == s


MAX_REJOIN_BLANKS = 3


def _continuation(body: bytes, line_end: int, fl: Follow,
                  carry: list[tuple[int, bytes]]) -> tuple[int, int, bytes, list[int]] | None:
    """The line after the one ending at `line_end`, if it continues it (holds one of the
    continuation literals `fl`): (start, end, line, ids of those literals). At the block's
    end the literals are left in `carry` for the next block's first line."""
    start = line_end + 1
    if start >= len(body):
        carry.extend(fl[0])
        return None
    end = body.find(b"\n", start)
    nxt = body[start:end]
    # the empty lines a rejoined hard-wrapped line leaves behind (sources/unwrap.py keeps the line
    # count) do not end a record: the next line after them may continue it
    skip = 0
    while not nxt and skip < MAX_REJOIN_BLANKS and end + 1 < len(body):
        skip += 1
        start = end + 1
        end = body.find(b"\n", start)
        nxt = body[start:end]
    if not fl[1].search(nxt):
        return None
    return start, end, nxt, [j for j, lit in fl[0] if lit in nxt]


def _is_steady(m: Matcher, line: bytes, ids: list[int]) -> bool:
    """Every literal of the line is in a steady group that finds the line steady (a line may
    hold two groups' records: see SteadySampler._group)."""
    seen: list[SteadyGroup] = []
    for i in ids:
        g = m.groups[i]
        if g is None:
            return False
        if g not in seen:
            if not g.check(line):
                return False
            seen.append(g)
    return True


def follow_of_ids(m: Matcher, ids: list[int]) -> Follow | None:
    return m.follow[ids[0]] if len(ids) == 1 else _follows(m, ids)


def _follows(m: Matcher, ids: list[int]) -> Follow | None:
    pairs: tuple[tuple[int, bytes], ...] = ()
    for i in ids:
        f = m.follow[i]
        if f is not None:
            pairs += f[0]
    return m.follow_of(tuple(sorted(set(pairs)))) if pairs else None


def line_triggers(raw: bytes, ids: list[int] | None = None) -> list[str]:
    """Which literals are in this line (from the scanner's hits, in _trigger_list order). An
    ANSI code removed by clean() could join a literal, so such lines test them all."""
    m = matcher()
    if b"\x1b" in raw:
        return _trigger_list
    if ids is None:                    # a line on its own: no previous line to tell
        ids = m.ids_in(raw, continuations=True)
    names = m.names
    return [names[i] for i in ids]

