"""sources/lines.py: clean() tries on a line beginning with '[' only the decorations that can
begin with '[' (a speed-up): no other decoration may, and the result is what trying them all
gives; utc_seconds is datetime's timestamp() by arithmetic."""
from __future__ import annotations

import random
import re
from datetime import datetime, timezone
from pathlib import Path

from re import _constants as C, _parser

from dsdoctor.sources import lines as L


_CATEGORIES = {C.CATEGORY_DIGIT: r"\d", C.CATEGORY_NOT_DIGIT: r"\D", C.CATEGORY_SPACE: r"\s",
               C.CATEGORY_NOT_SPACE: r"\S", C.CATEGORY_WORD: r"\w", C.CATEGORY_NOT_WORD: r"\W"}


def _may_begin_with(items, ch: int) -> bool:
    """Can the parsed regex `items` match a text beginning with character `ch`? Conservative:
    True for anything it does not know."""
    for op, av in items:
        if op is C.AT:
            continue
        if op is C.LITERAL:
            return av == ch
        if op is C.NOT_LITERAL:
            return av != ch
        if op is C.IN:
            neg = any(o is C.NEGATE for o, _ in av)
            hit = any(o is C.LITERAL and a == ch or o is C.RANGE and a[0] <= ch <= a[1]
                      or o is C.CATEGORY and re.match(_CATEGORIES[a], chr(ch)) is not None for o, a in av)
            return hit != neg
        if op is C.SUBPATTERN:
            return _may_begin_with(av[-1], ch)       # (an empty group is not used in these patterns)
        if op is C.BRANCH:
            return any(_may_begin_with(b, ch) for b in av[1])
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, _hi, body = av
            if _may_begin_with(body, ch):
                return True
            if lo > 0:
                return False
            continue                                  # zero repeats: what follows decides
        return True
    return True


def test_only_the_bracket_forms_can_begin_with_a_bracket():
    for table in (L._PREFIX_TABLE, L._TS_TABLE):
        for rx, _what, bracket in table:
            assert bracket or not _may_begin_with(_parser.parse(rx.pattern, rx.flags), ord("[")), rx.pattern
    # the analysis itself: the bracket forms are found able to
    assert all(_may_begin_with(_parser.parse(rx.pattern, rx.flags), ord("[")) for rx, _w, b in L._PREFIX_TABLE if b)


def _clean_reference(raw: str, year: int | None = None):
    """clean() as it was, every decoration tried on every line."""
    s = (L._ANSI.sub("", raw) if "\x1b" in raw else raw).rstrip("\r\n")
    rank = host = None
    t = None
    label = False
    for _ in range(4):
        if not L._may_start(s):
            break
        changed = False
        for rx, what in L._PREFIXES:
            m = rx.match(s)
            if m:
                if what == "rank":             # the innermost rank prefix wins
                    rank = int(m.group(1))
                    label = rx.pattern == r"^(\d{1,5}):\s"
                elif what == "host":
                    host = m.group(1) or host
                s = s[m.end():]
                changed = True
        for rx, fmt in L._TS:
            m = rx.match(s)
            if m and t is None:
                t = L._parse_time(m, fmt, year)
                s = s[m.end():]
                changed = True
        if not changed:
            if t is None and s[:1] in "[IWEF" and s[:2] != "[r":
                m = L._GLOG.match(s)
                if m:
                    t = L._glog_time(m, year)
            break
    if s[-1:] in "])" and "x across cluster]" in s:
        s = L._RAY_REPEATED.sub("", s)
    if label:                                  # srun's task label gives way to a rank the message opens with
        m = L._RANK_IN_MSG.match(s)
        if m:
            rank = int(next(g for g in m.groups() if g is not None))
    if rank is None and "ank" in s:
        m = L._rank_in_msg(s)
        if m:
            rank = int(next(g for g in m.groups() if g is not None))
    return s, rank, t, host


_HEADS = ["[rank3]:", "[default0]:", "[1,3]<stderr>:", "[1,mpirank:2,algo-1]<stdout>:", "0: ", "12: ",
          "[pod/trainer-0/pytorch] ", "(RayTrainWorker pid=123, ip=10.0.0.2) ", "node-a1: ", "gpu3: ",
          "Dec 05 10:00:00 host1 python[42]: ", "> ", "> > ", "INFO 12-05 10:00:00 [engine.py:12] ",
          "stderr F ", "   12\t", "[2024-05-01 10:00:00,123] ", "[2024-05-01T10:00:00.5] ",
          "2024-05-01 10:00:00.123 ", "2024-05-01T10:00:00Z ", "05/01/2024 10:00:00 - ", "[E1205 10:00:00.123456 42 x.cpp:1] ",
          "W1205 10:00:00.123000 42 torch/run.py:1] ", "[", "[r", "[2", ""]
_TAILS = ["[INFO] [logging.py:123:log_dist] [Rank 0] step=1, skipped=0", "hello [rank=2] x",
          "Traceback (most recent call last):", "  0%|          | 1/500 [0:00:00<1:00:00,  1.38it/s]",
          "{'loss': '2.3'}", "msg [repeated 7x across cluster]", "[Rank 5] time (ms) | fwd: 1.0", ""]


def test_clean_gives_what_trying_every_decoration_gives():
    rnd = random.Random(13)
    cases = [h + t for h in _HEADS for t in _TAILS]
    for _ in range(20000):           # stacked decorations, in any order
        cases.append("".join(rnd.choice(_HEADS) for _ in range(rnd.randint(1, 5))) + rnd.choice(_TAILS))
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    for f in sorted(fixtures.rglob("*.log"))[:400]:
        try:
            cases += f.read_text(encoding="utf-8", errors="replace").splitlines()[:200]
        except OSError:
            pass
    for raw in cases:
        for year in (None, 2026):
            assert L.clean(raw, year) == _clean_reference(raw, year), raw


def _utc_reference(text: str):
    try:
        return datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                        int(text[17:19]), tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def test_utc_seconds_is_datetimes_timestamp():
    rnd = random.Random(7)
    texts = []
    for y in (1, 4, 100, 400, 1900, 1969, 1970, 1972, 2000, 2024, 2025, 2100, 9999):
        for mo in range(0, 14):
            for d in range(0, 33):
                texts.append(f"{y:04d}-{mo:02d}-{d:02d} {rnd.randint(0, 25):02d}:{rnd.randint(0, 61):02d}:"
                             f"{rnd.randint(0, 61):02d}")
    alphabet = "0123456789 -+_:Tx"
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 21))) for _ in range(20000)]
    for text in texts:
        got, want = L.utc_seconds(text), _utc_reference(text)
        assert got == want and type(got) is type(want), text
    assert re.fullmatch(r"\d+\.0", repr(L.utc_seconds("2026-03-14 09:00:02")))
