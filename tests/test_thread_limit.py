"""The process/thread limit: CPython's "can't start new thread" and libgomp's fatal line name one family,
whether it comes as an exception or as the last line of a process that printed no traceback."""
from dsdoctor.detect.families import classify
from dsdoctor.sources.formats.error_lines import libgomp_fatal
from dsdoctor.sources.lines import Line, StreamState


def test_both_wordings_are_the_thread_limit():
    assert classify("RuntimeError", "can't start new thread", "/usr/lib/python3.11/threading.py:start").name == \
        "thread_limit"
    assert classify("error_line", "libgomp: Thread creation failed: Resource temporarily unavailable").category == \
        "environment"


def test_libgomp_fatal_line_is_an_error_line_and_its_other_lines_are_not():
    st = StreamState("x.log", None)
    ev = libgomp_fatal(Line("libgomp: Thread creation failed: Resource temporarily unavailable", "x.log", 7, None, None), st)
    assert ev is not None and ev.kind == "error_line" and ev.data["level"] == "fatal"
    assert libgomp_fatal(Line("loaded libgomp: yes", "x.log", 8, None, None), st) is None
