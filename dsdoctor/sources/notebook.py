"""A Jupyter notebook (.ipynb, from Jupyter, Colab, Kaggle, VS Code) as the log it holds: the text
its cells printed, in cell order. nbformat 4 stores each code cell's `outputs` as JSON
(nbformat/v4/nbformat.v4.schema.json): `{"output_type": "stream", "name": "stdout", "text": [...]}`
for what the run printed (the training log), `{"output_type": "error", "ename", "evalue",
"traceback": [...]}` for the exception that stopped a cell (IPython's own traceback, lines full
of ANSI colour codes: IPython/core/ultratb.py), and `execute_result` / `display_data` with a
`text/plain` form (tqdm's notebook widget keeps its text there). A user who runs `dsdoctor analyze
run.ipynb` gets the same diagnosis as for the text they would have copied out of the notebook.

Only json is needed (no nbformat at run time). A notebook that is not valid JSON (cut short by a
full disk, a half-finished download) is read with a tolerant scan of its JSON strings, so the
outputs before the cut are still evidence. Line numbers are those of the unwrapped text.
"""
from __future__ import annotations

import json
import re
from typing import Iterable, Iterator

MAX_NOTEBOOK = 256 << 20          # a notebook is read whole (JSON); larger ones are read as they are
# nbformat writes the keys sorted with indent 1 ('{\n "cells": [\n  {\n   "cell_type": ...'), other
# writers (VS Code, Colab) also start with "cells" or "metadata"; a notebook holds "cell_type" early
_HEAD = re.compile(rb'\A\s*\{\s*"(?:cells|metadata|nbformat)"\s*:')
_OUTPUT_KEYS = ("text", "traceback", "text/plain")


def is_notebook(block: bytes) -> bool:
    return bool(_HEAD.match(block[:256])) and b'"cell_type"' in block[:1 << 20]


def decode(data: bytes) -> bytes:
    """The text a notebook's cells printed, one output after the other."""
    try:
        nb = json.loads(data)
    except ValueError:
        return "\n".join(_scan_strings(data.decode("utf-8", errors="replace"))).encode("utf-8", errors="surrogateescape")
    out: list[str] = []
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        # nbformat 3 kept the cells in worksheets
        sheets = nb.get("worksheets") if isinstance(nb, dict) else None
        cells = [c for ws in sheets if isinstance(ws, dict) for c in ws.get("cells", []) or []] \
            if isinstance(sheets, list) else []
    for cell in cells:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for o in outputs if isinstance(outputs, list) else ():
            if isinstance(o, dict):
                out.extend(_output_lines(o))
    return "\n".join(out).encode("utf-8", errors="surrogateescape")


def _text(v) -> str:
    """A multiline string of nbformat: a string or a list of strings (each ending in its newline)."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "".join(s for s in v if isinstance(s, str))
    return ""


def _output_lines(o: dict) -> list[str]:
    kind = o.get("output_type")
    if kind == "stream":
        text = _text(o.get("text"))
    elif kind in ("error", "pyerr"):
        tb = o.get("traceback")
        if isinstance(tb, list) and tb:
            text = "\n".join(s for s in tb if isinstance(s, str))
        else:           # a front end that kept only the name and the message
            text = f"{o.get('ename', 'Error')}: {o.get('evalue', '')}"
    elif kind in ("execute_result", "display_data", "pyout"):
        data = o.get("data")
        text = _text(data.get("text/plain")) if isinstance(data, dict) else _text(o.get("text"))
    else:
        return []
    text = text.rstrip("\n")
    return text.split("\n") if text else []


# one JSON key or string value: a notebook cut short is scanned for the strings that follow the
# keys outputs keep their text under ("text", "traceback", "text/plain"); "source" (the cell's
# code) and the rest are skipped
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?')


def _scan_strings(text: str) -> Iterator[str]:
    # the string the cut fell in is closed, so its start is read too
    quotes = len(re.findall(r'(?<!\\)(?:\\\\)*"', text))
    if quotes % 2:
        text = text.rstrip("\\") + '"'
    key = None
    in_outputs = False
    error: dict[str, str] = {}          # the ename and evalue of the error output being read
    for m in _TOKEN.finditer(text):
        if m.group(2):
            key = _unescape(m.group(1))
            if key == "outputs":
                in_outputs = True
            elif key in ("source", "cell_type"):
                in_outputs = False
            continue
        if not in_outputs:
            continue
        if key in ("ename", "evalue"):
            error[key] = _unescape(m.group(1))
        elif key in _OUTPUT_KEYS:
            yield from _unescape(m.group(1)).rstrip("\n").split("\n")
    if key == "traceback" and error:
        # cut inside a traceback: its last line, the exception, is what nbformat keeps as ename/evalue
        yield f"{error.get('ename', 'Error')}: {error.get('evalue', '')}"


def _unescape(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except ValueError:
        return s


def has_outputs(path) -> bool:
    """Whether the notebook file at `path` printed anything (check_readable's question: a notebook
    saved before it ran, or with its outputs cleared, holds nothing to analyse)."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_NOTEBOOK + 1)
    return len(data) > MAX_NOTEBOOK or bool(decode(data).strip())


def decode_blocks(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """A notebook's blocks as its printed text (the notebook is read whole: JSON). One that is
    too big to read whole is left as it is (its escaped lines still hold most literals)."""
    parts: list[bytes] = []
    size = 0
    it = iter(blocks)
    for b in it:
        parts.append(b)
        size += len(b)
        if size > MAX_NOTEBOOK:
            yield from parts
            yield from it
            return
    yield decode(b"".join(parts))
