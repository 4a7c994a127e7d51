"""The doctor's own lines on a rank's stderr, each written whole.

A rank's stdout and stderr are often one pipe (`dsdoctor run`, the launchers, `2>&1`), and
the doctor's threads (the event writer, the watchdog, the roll call) print while the training
prints. print() writes the text and then the newline in two calls, two write(2)s when the
streams are unbuffered (PYTHONUNBUFFERED=1, which `dsdoctor run` sets): a training line
written between them came out behind our text ("...the training goes onstep 189 loss 0.01"),
no longer a line of its own. One write of text + newline (atomic on a pipe up to PIPE_BUF)
ends our line before anything else can start in it.
"""
from __future__ import annotations

import sys


def say(line: str) -> None:
    """Write `line` and its newline to stderr in one call; a closed or failing stderr is
    ignored (the doctor's message must never stop the training)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
