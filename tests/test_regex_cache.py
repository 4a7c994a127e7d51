"""dsdoctor/regex_cache.py: a pattern compiled from the disk cache is the pattern re.compile
makes (re.Pattern's `==` compares flags and the matcher code), and cache trouble only costs a
compile."""
from __future__ import annotations

import gc
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dsdoctor
from dsdoctor import regex_cache
from dsdoctor.lazy_regex import LazyPattern

ROOT = Path(__file__).resolve().parents[1]
needs_internals = pytest.mark.skipif(regex_cache._compiler is None, reason="no re._compiler (Python 3.10)")


def _project_patterns() -> list[tuple[str | bytes, int]]:
    for mod in pkgutil.walk_packages(dsdoctor.__path__, "dsdoctor."):
        if not mod.name.startswith(("dsdoctor.demo", "dsdoctor.live")) and not mod.name.endswith("__main__"):
            try:
                importlib.import_module(mod.name)
            except Exception:        # an optional dependency missing: its patterns are not needed
                pass
    pats = {(o.pattern, o._flags) for o in gc.get_objects() if isinstance(o, LazyPattern)}
    return sorted(pats, key=repr)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(regex_cache, "_entries", None)
    monkeypatch.setattr(regex_cache, "_new", {})
    return tmp_path


@needs_internals
def test_every_project_pattern_compiles_the_same_fresh_and_from_the_file(fresh_cache):
    pats = _project_patterns()
    assert len(pats) > 100
    fresh = [regex_cache.compile(p, f) for p, f in pats]
    regex_cache._save()
    assert regex_cache.path().is_file()
    regex_cache._entries, regex_cache._new = None, {}
    cached = [regex_cache.compile(p, f) for p, f in pats]
    assert regex_cache._new == {}            # every one came from the file
    for (p, f), a, b in zip(pats, fresh, cached):
        want = re.compile(p, f)
        assert a == want and b == want, p
        assert (b.groups, b.groupindex, b.pattern) == (want.groups, want.groupindex, want.pattern)


@needs_internals
def test_flags_groups_and_matches(fresh_cache):
    for _ in range(2):               # the second time from the entries kept
        rx = regex_cache.compile(r"(?P<step>\d+)\s+(loss)=(?P<v>\S+)", re.I)
        assert rx == re.compile(r"(?P<step>\d+)\s+(loss)=(?P<v>\S+)", re.I)
        m = rx.search("at 12 LOSS=nan")
        assert m and m.group("step") == "12" and m.group("v") == "nan" and m.lastindex == 3
        assert rx.flags == re.compile(r"x", re.I).flags
    assert regex_cache.compile(rb"(?m)^x$", 0) == re.compile(rb"(?m)^x$")


def test_a_bad_pattern_raises_as_re_does(fresh_cache):
    with pytest.raises(re.error):
        regex_cache.compile(r"(unclosed")


@needs_internals
def test_a_damaged_file_only_costs_a_compile(fresh_cache):
    regex_cache.path().parent.mkdir(parents=True)
    regex_cache.path().write_bytes(b"\x00garbage")
    assert regex_cache.compile(r"a(b)c") == re.compile(r"a(b)c")
    regex_cache._save()
    regex_cache._entries, regex_cache._new = None, {}
    assert regex_cache.compile(r"a(b)c") == re.compile(r"a(b)c") and regex_cache._new == {}


@needs_internals
def test_new_patterns_are_written_when_the_process_ends(fresh_cache):
    code = "from dsdoctor import regex_cache; regex_cache.compile(r'x(\\d+)y')"
    env = {"PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(fresh_cache), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert (r"x(\d+)y", 0) in regex_cache._read()
