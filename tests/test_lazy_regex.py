"""compile_later: a module-level pattern compiled on first use behaves as re.compile's."""
from __future__ import annotations

import re

from dsdoctor.lazy_regex import LazyPattern, compile_later


def test_behaves_as_the_compiled_pattern():
    src, flags = r"step=(\d+)\s+(?P<lr>[0-9.e-]+)", re.IGNORECASE
    lazy, rx = compile_later(src, flags), re.compile(src, flags)
    assert lazy.pattern == rx.pattern and lazy._rx is None     # the source, without compiling
    text = "STEP=3 1e-4 step=4 2e-4"
    assert lazy.search(text).groups() == rx.search(text).groups()
    assert lazy._rx is not None
    assert lazy.match(text).span() == rx.match(text).span()
    assert lazy.fullmatch("step=1 2") is not None
    assert lazy.findall(text) == rx.findall(text)
    assert [m.span() for m in lazy.finditer(text)] == [m.span() for m in rx.finditer(text)]
    assert lazy.sub("x", text) == rx.sub("x", text) and lazy.subn("x", text) == rx.subn("x", text)
    assert lazy.split(text) == rx.split(text)
    assert (lazy.flags, lazy.groups, dict(lazy.groupindex)) == (rx.flags, rx.groups, dict(rx.groupindex))


def test_each_method_compiles_on_its_own_first_call():
    for name in ("match", "fullmatch", "findall", "split"):
        lazy = compile_later(rb"a+")
        getattr(lazy, name)(b"aab")
        assert getattr(lazy, name) == getattr(lazy.compiled(), name)   # now the pattern's own


def test_recognisers_patterns_are_compiled_later():
    from dsdoctor.detect import families
    from dsdoctor.sources.formats import deepspeed
    assert isinstance(deepspeed._ATTEMPT, LazyPattern) and isinstance(families._SETTINGS_REFUSED, LazyPattern)
