"""sources/scanner.py: a line's literals with the continuation-only ones come from a Hyperscan
database of every literal (Matcher._ids_in_all); they are the ids `rx_all.findall` gives (its
matches do not overlap: leftmost first, then the first alternative), whatever the overlaps, plus the
triggers that start inside one of them (Matcher._with_overlapped, on both paths alike)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from dsdoctor.sources import scanner


def test_ids_in_all_is_findall_of_every_literal():
    m = scanner.matcher()
    if m._hs_all is None:
        pytest.skip("no Hyperscan: ids_in uses rx_all itself")
    rnd = random.Random(5)
    lines: list[bytes] = []
    for _ in range(6000):             # literals glued, overlapping or inside each other
        s = b""
        for lit in (rnd.choice(m.literals) for _ in range(rnd.randint(1, 5))):
            if s and rnd.random() < 0.5:
                k = rnd.randint(0, min(len(s), len(lit)))
                s = s[:len(s) - k] + lit if s.endswith(lit[:k]) else s + lit
            else:
                s += rnd.choice([b"", b" ", b"x"]) + lit
        lines.append(s)
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    for f in sorted(fixtures.rglob("*.log"))[:300]:
        lines += f.read_bytes().split(b"\n")[:100]
    for line in lines:
        assert m._ids_in_all(line) == m._with_overlapped(sorted({m.index[t] for t in m.rx_all.findall(line)}),
                                                         line, True), line


def test_a_continuation_literal_inside_another_is_reported_for_a_lone_line():
    # four spaces (a traceback frame's code line) hide the notebook table's two: a row parsed on
    # its own (a rule example, a small paste read both ways) must still reach the table's recogniser
    m = scanner.matcher()
    assert "  " in scanner.line_triggers(b"100     2.287000        2.195520")
    assert "  " in [m.names[i] for i in m.ids_in(b"100     2.287000        2.195520", continuations=True)]


def test_a_literal_that_begins_a_longer_one_is_reported_with_it():
    """'Error' and 'Error:' start at the same place: the alternation's findall reports only one,
    so the other is added back (a new 'Error:' literal hid every exception line's 'Error')."""
    m = scanner.Matcher([b"Error:", b"Error", b"rror: x"])
    got = {m.literals[i] for i in m.ids_in(b"ValueError: x")}
    assert got == {b"Error:", b"Error", b"rror: x"}
