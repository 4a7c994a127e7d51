"""A traceback inside one JSON-lines record, read as the lines it stands for.

A JSON logger writes the whole traceback of `logger.exception(...)` into one field of one line:
python-json-logger's "exc_info" (pythonjsonlogger/core.py BaseJsonFormatter.add_fields:
formatException), structlog's "exception" (structlog/processors.py format_exc_info), loguru's
serialize=True "text" (the formatted message with its traceback). structlog's dict_tracebacks
(structlog/tracebacks.py ExceptionDictTransformer) writes a list instead, one dict per exception of the
chain: {"exc_type", "exc_value", "frames": [{"filename", "lineno", "name"}, ...]}, the raised one first.
Read as one line, such a record holds 'Traceback (most recent call last):' and no exception line the
recognisers can see (the failure reads as a traceback cut off), and the dict form holds neither (the
failed run read as healthy). Each is turned into the traceback's own lines, handed to every recogniser
like any log line, at the record's line number, rank and time (sources/parse.py).
"""
from __future__ import annotations

from ..lines import Line, StreamState
from ..recogniser import ReadAs, on
from .jsonlog import record_in

MAX_RECORD = 1 << 20            # a traceback with rich locals runs to a few hundred KiB
_TB = "Traceback (most recent call last)"


# The head inside a JSON string (the same literal as formats/traceback.py's, whose handler runs first
# on the record's line: the traceback it opens there is the one these lines close), and structlog's
# dict form's own key (without its opening quote, which the '{"' of formats/jsonlog.py may hold:
# the literals of a line on its own are found without overlaps)
@on(_TB, 'exc_type": "', 'exc_type":"')
def json_traceback(line: Line, st: StreamState):
    rec = record_in(line, MAX_RECORD)
    if rec is None:
        return None
    lines = traceback_lines(rec)
    return ReadAs(lines) if lines else None


def traceback_lines(rec: dict) -> list[str]:
    """The lines of the traceback a record holds, or []: from a string field that holds one (the
    first found, nested records looked into once), or from structlog's exception dicts."""
    for v in rec.values():
        if isinstance(v, str) and _TB in v and "\n" in v:
            return v.split("\n")
        if isinstance(v, list) and v and isinstance(v[0], dict) and "exc_type" in v[0]:
            return _from_dicts(v)
    for v in rec.values():
        if isinstance(v, dict):
            for w in v.values():
                if isinstance(w, str) and _TB in w and "\n" in w:
                    return w.split("\n")
    return []


def _from_dicts(chain: list) -> list[str]:
    """CPython's layout of structlog's dict_tracebacks: the chain printed cause first, as
    Lib/traceback.py does (the list holds the raised exception first)."""
    out: list[str] = []
    for exc in reversed(chain):
        if not isinstance(exc, dict):
            continue
        if out:
            out += ["", "The above exception was the direct cause of the following exception:", ""]
        out.append("Traceback (most recent call last):")
        for fr in exc.get("frames") or ():
            if isinstance(fr, dict):
                out.append(f'  File "{fr.get("filename")}", line {fr.get("lineno")}, in {fr.get("name")}')
        value = str(exc.get("exc_value") or "")
        out.append(f"{exc.get('exc_type')}: {value}" if value else str(exc.get("exc_type")))
        out += value.split("\n")[1:] if "\n" in value else []
    return out
