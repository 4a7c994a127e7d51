"""Compiled regular expressions, cached on disk (`~/.cache/dsdoctor/regex`).

`re.compile` parses a pattern and generates its matcher code in Python, ~0.25 ms a pattern:
~13 ms of a 64 MiB log's `analyze` for the ~50 recogniser patterns its lines use (compiled on
first use, lazy_regex.py). That code depends only on the pattern, its flags and the Python
build, so it is kept (marshal, under a key of the build and of `_sre`'s version) and handed to
`_sre.compile` as `re._compiler.compile` itself does: the same Pattern (`==` compares the
code; tests/test_regex_cache.py). Patterns met for the first time are written when the
process ends. Any trouble, or a Python without these internals: plain `re.compile`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from . import marshal_cache

try:
    import _sre
    from re import _compiler, _parser
except ImportError:          # (Python 3.10: sre_compile; no cache there)
    _compiler = None

FORMAT = "1"        # bump when an entry's layout changes

_entries: dict | None = None      # (pattern, flags) -> _sre.compile's arguments after the pattern
_new: dict = {}


def path() -> Path:
    return marshal_cache.path_for("regex", f"{FORMAT}\0{sys.version}\0{_sre.MAGIC}\0{_sre.CODESIZE}")


def _read() -> dict:
    return marshal_cache.read(path())


def _entry(pattern: str | bytes, flags: int) -> tuple:
    """What re._compiler.compile passes to _sre.compile, as plain ints (marshal refuses the
    opcodes' int subclass)."""
    p = _parser.parse(pattern, flags)
    code = [int(c) for c in _compiler._code(p, flags)]
    groupindex = dict(p.state.groupdict)
    indexgroup: list[Any] = [None] * p.state.groups
    for k, i in groupindex.items():
        indexgroup[i] = k
    return int(flags | p.state.flags), code, p.state.groups - 1, groupindex, tuple(indexgroup)


def compile(pattern: str | bytes, flags: int = 0) -> re.Pattern:
    """`re.compile(pattern, flags)`, its code from the disk cache when it is there."""
    global _entries
    flags = int(flags)
    if _compiler is None or flags & (re.DEBUG | getattr(re, "TEMPLATE", 0)) or not isinstance(pattern, (str, bytes)):
        return re.compile(pattern, flags)
    if _entries is None:
        _entries = _read()
    key = (pattern, flags)
    entry = _entries.get(key)
    if entry is not None:
        try:
            return _sre.compile(pattern, *entry)
        except Exception:        # an entry _sre refuses (damaged): compile it again
            pass
    try:
        entry = _entry(pattern, flags)
        rx = _sre.compile(pattern, *entry)
    except re.error:
        raise
    except Exception:            # internals not as expected: what re does
        return re.compile(pattern, flags)
    if not _new:
        import atexit
        atexit.register(_save)
    _entries[key] = _new[key] = entry
    return rx


def _save() -> None:
    """Add this process's new patterns to the file."""
    marshal_cache.save(path(), _new)
