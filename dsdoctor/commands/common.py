"""What every command shares: the one-line error exit."""
from __future__ import annotations

import sys

import typer


def fail(msg: str, code: int = 2) -> None:
    """Print `dsdoctor: error: MSG` on stderr and exit (2: unusable input or options)."""
    print(f"dsdoctor: error: {msg}", file=sys.stderr)
    raise typer.Exit(code)
