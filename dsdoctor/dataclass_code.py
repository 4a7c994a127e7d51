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
import os
import sys
from pathlib import Path

FORMAT = "1"        # bump when an entry's layout changes
MAX_ENTRIES = 2000  # then start afresh: texts of classes since changed pile up otherwise

_codes: dict | None = None        # source text -> its code object
_new: dict = {}


def path() -> Path:
    from .digest import sha256_hex
    key = sha256_hex(f"{FORMAT}\0{sys.version}\0{sys.implementation.cache_tag}".encode())[:24]
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsdoctor" / "dataclass" / f"{key}.marshal"


def _read() -> dict:
    import marshal
    try:
        got = marshal.loads(path().read_bytes())
        return got if isinstance(got, dict) and len(got) < MAX_ENTRIES else {}
    except Exception:            # not cached yet, unreadable, or damaged
        return {}


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
    """Add this process's new texts to the file (merged with what other processes wrote
    meanwhile; atomic: a concurrent reader sees a whole file or none)."""
    import marshal
    try:
        codes = _read()
        codes.update(_new)
        p = path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(codes))
        os.replace(tmp, p)
    except Exception:            # read-only home, full disk: compile next time too
        pass
