"""The code of dataclasses' generated methods, cached on disk (`~/.cache/dsdoctor/dataclass`).

`@dataclass` writes each method it adds (`__init__`, `__repr__`, `__eq__`, a frozen class's
`__setattr__`...) as source text and compiles it with `exec`: on Python 3.11, ~80 compilations
for the ~20 classes `analyze` creates, ~12 ms of its ~120 ms start-up. The text depends only on
the class, so its compiled code (marshal, under a key of the Python build) is handed to `exec`
instead of the text: the same text compiled the same way (file name `<string>`, no inherited
`__future__` flags), so the same functions (tests/test_dataclass_code.py). Only the `analyze`
command line installs it (cli.py), for its own process; texts met for the first time are
written when the process ends. Any trouble: `exec` of the text, as dataclasses does.
"""
from __future__ import annotations

import builtins
import sys
from pathlib import Path

from . import marshal_cache

FORMAT = "1"        # bump when an entry's layout changes
MAX_ENTRIES = 2000  # then start afresh: texts of classes since changed pile up otherwise

_codes: dict | None = None        # source text -> its code object
_new: dict = {}


def path() -> Path:
    return marshal_cache.path_for("dataclass", f"{FORMAT}\0{sys.version}\0{sys.implementation.cache_tag}")


def _read() -> dict:
    return marshal_cache.read(path(), MAX_ENTRIES)


def cached_exec(source, globals=None, locals=None, /):
    """`exec(source, globals, locals)` as dataclasses calls it, the source's code from the cache."""
    global _codes
    if type(source) is not str:
        return builtins.exec(source, globals, locals)
    if _codes is None:
        _codes = _read()
    code = _codes.get(source)
    if code is None:
        # what exec does with a text: file name "<string>"; dont_inherit: not this module's
        # `from __future__ import annotations` (dataclasses.py has none)
        code = compile(source, "<string>", "exec", dont_inherit=True)
        if not _new:
            import atexit
            atexit.register(_save)
        _codes[source] = _new[source] = code
    return builtins.exec(code, globals, locals)


def install() -> None:
    """Make dataclasses' `exec` (a name it looks up in its module, then in builtins) the cached one."""
    import dataclasses
    dataclasses.exec = cached_exec


def _save() -> None:
    """Add this process's new texts to the file."""
    marshal_cache.save(path(), _new, MAX_ENTRIES)
