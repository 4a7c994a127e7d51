"""detect/progress.py: the one per-input step counter the failure and memory detectors read (part AN)."""
from dsdoctor.detect.progress import COUNTED_KINDS, InputProgress
from dsdoctor.events import Event
from dsdoctor.pipeline import Diagnoser


def _ev(kind: str, step, source: str = "a.log", line: int | None = None) -> Event:
    return Event(kind, 0, step, None, {}, source, line)


def test_counts_each_inputs_rises_only():
    p = InputProgress()
    for st, src in [(1, "a"), (1, "a"), (0, "a"), (2, "a"), (None, "a"), (5, "b")]:
        p.feed(_ev("step", st, src), 0)
    assert (p.advances("a"), p.advances("b"), p.advances("c")) == (2, 1, 0)
    assert not p.went_on("a", 0) and p.went_on("a", -1)


def test_advances_before_a_line_leaves_out_the_later_ones():
    p = InputProgress()
    for st in range(5):
        p.feed(_ev("step", st, line=10 * st), 0)
    assert p.advances_before("a.log", 25) == 5 - 2         # steps at lines 30 and 40 came after line 25
    assert p.advances_before("a.log", None) == 5


def test_the_diagnoser_feeds_it_once_and_its_detectors_share_it():
    d = Diagnoser()
    assert all(det.progress is d.progress for det in d.detectors)
    assert not {"exception", "killed", "process_exit", "exit", "oom"} & COUNTED_KINDS    # a failure's step is no progress
    for st in range(4):
        d.feed(_ev("loss", st))
    assert d.progress.advances("a.log") == 4
