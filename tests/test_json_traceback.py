"""A traceback inside one JSON-lines record (formats/json_traceback.py): python-json-logger's
"exc_info", structlog's "exception" (a string, or dict_tracebacks' list), loguru's serialize "text".
The records are real output of those libraries (fixtures/excerpts/gen_p_json_*.log)."""
from __future__ import annotations

import json

from dsdoctor.sources.formats.json_traceback import traceback_lines
from dsdoctor.sources.logs import events_from_text

TB = ('Traceback (most recent call last):\n  File "/work/train.py", line 12, in <module>\n    train()\n'
      "FileNotFoundError: [Errno 2] No such file or directory: 'shard-00042.arrow'")
STEPS = "".join(json.dumps({"event": f"step {i} loss {2.5 - i / 10:.4f}", "level": "info"}) + "\n" for i in range(3))


def _exceptions(text: str):
    return [e for e in events_from_text(text) if e.kind == "exception"]


def test_a_traceback_string_field_gives_its_exception_line():
    rec = {"asctime": "2026-12-06 07:18:15,126", "levelname": "ERROR", "message": "training failed", "exc_info": TB}
    exc = _exceptions(STEPS + json.dumps(rec) + "\n")
    assert [(e.data["type"], e.line) for e in exc] == [("FileNotFoundError", 4)]


def test_structlogs_exception_dicts_are_laid_out_as_cpython_does():
    chain = [{"exc_type": "RuntimeError", "exc_value": "outer", "frames": [{"filename": "/a.py", "lineno": 3, "name": "f"}]},
             {"exc_type": "ValueError", "exc_value": "inner", "frames": []}]
    lines = traceback_lines({"event": "failed", "exception": chain})
    assert lines[0] == "Traceback (most recent call last):" and lines[1] == "ValueError: inner"
    assert "The above exception was the direct cause of the following exception:" in lines
    assert lines[-2:] == ['  File "/a.py", line 3, in f', "RuntimeError: outer"]


def test_a_failed_run_logged_with_dict_tracebacks_is_not_healthy():
    rec = {"event": "training failed", "level": "error", "exception": [
        {"exc_type": "FileNotFoundError", "exc_value": "[Errno 2] No such file or directory: 'x.arrow'",
         "frames": [{"filename": "/work/train.py", "lineno": 7, "name": "train"}]}]}
    exc = _exceptions(STEPS + json.dumps(rec) + "\n")
    assert exc and exc[0].data["type"] == "FileNotFoundError"


def test_the_records_own_reading_is_replaced_not_doubled():
    oom = ("RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)")
    rec = {"levelname": "ERROR", "message": "training failed", "exc_info": TB.rsplit("\n", 1)[0] + "\n" + oom}
    ooms = [e for e in events_from_text(json.dumps(rec) + "\n") if e.kind == "oom"]
    assert len(ooms) == 1 and ooms[0].text.startswith("RuntimeError:")


def test_a_record_without_a_traceback_is_left_to_the_other_recognisers():
    assert traceback_lines({"event": "Traceback (most recent call last) was printed above"}) == []
    assert _exceptions('{"event": "step 3 loss 1.0"}\n') == []
