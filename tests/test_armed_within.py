"""sources/lines.py armed_within: the one test of the recognisers that one line arms (a frame line, a
header) and a line at most n lines below fires (sources/formats/*.py)."""
from __future__ import annotations

from dsdoctor.sources.lines import Line, armed_within


def _at(lineno: int) -> Line:
    return Line("x", "log", lineno, None, None)


def test_fires_from_the_next_line_to_n_lines_below():
    assert [n for n in range(8, 16) if armed_within(10, _at(n), 3)] == [11, 12, 13]


def test_same_line_lets_the_arming_line_fire_too():
    assert [n for n in range(8, 16) if armed_within(10, _at(n), 3, same_line=True)] == [10, 11, 12, 13]


def test_n_of_one_is_the_very_next_line():
    assert [n for n in range(8, 16) if armed_within(10, _at(n), 1)] == [11]


def test_a_record_holds_the_arming_line_first():
    assert armed_within((10, "what it read"), _at(12), 2)
    assert armed_within([10, None], _at(12), 2)
    assert not armed_within((10, "what it read"), _at(13), 2)


def test_nothing_armed_never_fires():
    assert armed_within(None, _at(5), 100, same_line=True) is False
