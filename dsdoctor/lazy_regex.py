"""Regular expressions compiled when first used.

Python's `re` keeps no compiled patterns on disk: the ~180 module-level patterns of the log
recognisers (sources/formats/*) and detectors cost ~50 ms of every start-up when compiled at
import, yet most are only used when a line holds their recogniser's trigger literal, which
most logs never print. `compile_later(...)` stands in for `re.compile(...)` at module level.
The code of the ones a log does use comes from regex_cache.py's disk cache.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any

from . import regex_cache

_METHODS = ("search", "match", "fullmatch", "finditer", "findall", "sub", "subn", "split")


class LazyPattern:
    """Behaves as the re.Pattern of `re.compile(pattern, flags)` (its methods and `flags`,
    `groups`, `groupindex`), compiled on the first call. The methods are slots holding the
    real pattern's bound methods once compiled, so a call then costs what a re.Pattern's
    does (~10 ns more). `.pattern` (the source) needs no compiling: hyperscan tables read it
    at import."""

    __slots__ = ("pattern", "_flags", "_rx", *_METHODS)

    def __init__(self, pattern: str | bytes, flags: int = 0):
        self.pattern = pattern
        self._flags = flags
        self._rx: re.Pattern | None = None
        for name in _METHODS:
            setattr(self, name, partial(self._first_call, name))

    def _first_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.compiled(), name)(*args, **kwargs)

    def compiled(self) -> re.Pattern:
        if self._rx is None:
            self._rx = rx = regex_cache.compile(self.pattern, self._flags)
            for name in _METHODS:
                setattr(self, name, getattr(rx, name))
        return self._rx

    @property
    def flags(self) -> int:
        return self.compiled().flags

    @property
    def groups(self) -> int:
        return self.compiled().groups

    @property
    def groupindex(self) -> Any:
        return self.compiled().groupindex

    def __repr__(self) -> str:
        return f"compile_later({self.pattern!r})"


def compile_later(pattern: str | bytes, flags: int = 0) -> LazyPattern:
    """`re.compile(pattern, flags)`, done when the pattern is first used."""
    return LazyPattern(pattern, flags)
