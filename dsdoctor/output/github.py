"""GitHub Actions workflow commands: one `::error file=F,line=L,col=C,title=T::message` line per
finding, which the Actions runner turns into an annotation on the file (and in the job summary).
Levels: critical/error -> error, warning -> warning, info -> notice. Escaping as the runner's
toolkit does it (actions/toolkit, packages/core/src/command.ts: escapeData, escapeProperty).
"""
from __future__ import annotations

import sys
from typing import TextIO

from ..findings import Finding
from . import locations, message, relative_path

LEVEL = {"critical": "error", "error": "error", "warning": "warning", "info": "notice"}


def _data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(s: str) -> str:
    return _data(s).replace(":", "%3A").replace(",", "%2C")


def annotation(f: Finding, texts: dict[str, str] | None = None) -> str:
    props = []
    for src, line, col, _ in locations(f, texts):
        path = relative_path(src)
        if path is None:
            continue
        props.append(f"file={_prop(path)}")
        if line:
            props.append(f"line={line}")
        if col:
            props.append(f"col={col}")
        break
    props.append(f"title={_prop(f'{f.rule} ({f.severity}): {f.title}')}")
    return f"::{LEVEL.get(f.severity, 'warning')} {','.join(props)}::{_data(message(f))}"


def print_github(findings: list[Finding], texts: dict[str, str] | None = None, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for f in findings:
        out.write(annotation(f, texts) + "\n")
