"""What every command shares: the one-line error exit."""
from __future__ import annotations

import sys


def fail(msg: str, code: int = 2) -> None:
    """Print `dsdoctor: error: MSG` on stderr and exit (2: unusable input or options).
    SystemExit, not typer.Exit: the same exit under typer and click's test runner, and
    `analyze` runs without importing typer (commands/params.py)."""
    print(f"dsdoctor: error: {msg}", file=sys.stderr)
    raise SystemExit(code)
