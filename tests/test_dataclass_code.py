"""dsdoctor/dataclass_code.py: a dataclass made with the cached code of its generated methods
is the one dataclasses makes (the same code, annotations, defaults), whether the code was
compiled now or read back from the disk cache, and cache trouble only costs a compile."""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import ClassVar

import pytest

from dsdoctor import dataclass_code


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(dataclass_code, "_codes", None)
    monkeypatch.setattr(dataclass_code, "_new", {})
    return tmp_path


def _classes():
    """One of each kind the project uses: plain, frozen, slots, defaults and factories,
    string annotations, ClassVar, order, kw_only."""
    class Plain:
        a: int
        b: "str | None" = None
        c: list = field(default_factory=list)
        d: ClassVar[int] = 3

    class Frozen:
        x: float
        y: tuple = ()

    class Slotted:
        kind: str
        data: dict = field(default_factory=dict)

    class Ordered:
        n: int
        m: int = field(default=0, compare=False, repr=False)

    class KwOnly:
        p: int
        q: int = 2
    return [(Plain, {}), (Frozen, {"frozen": True}), (Slotted, {"slots": True}),
            (Ordered, {"order": True, "unsafe_hash": True}), (KwOnly, {"kw_only": True})]


def _make(cached: bool, monkeypatch) -> list[type]:
    if cached:
        monkeypatch.setattr(dataclasses, "exec", dataclass_code.cached_exec, raising=False)
    else:
        monkeypatch.delattr(dataclasses, "exec", raising=False)
    made = []
    for cls, kw in _classes():
        made.append(dataclasses.dataclass(**kw)(cls))
    monkeypatch.delattr(dataclasses, "exec", raising=False)
    return made


def _methods(cls: type) -> dict:
    out = {}
    for name, fn in vars(cls).items():
        code = getattr(fn, "__code__", None)
        if code is None:
            continue
        out[name] = (code.co_code, code.co_consts, code.co_names, code.co_varnames, code.co_freevars,
                     code.co_filename, code.co_flags, fn.__qualname__, fn.__annotations__, fn.__defaults__,
                     fn.__kwdefaults__)
    return out


def _same(a: list[type], b: list[type]) -> None:
    for x, y in zip(a, b):
        mx, my = _methods(x), _methods(y)
        assert mx.keys() == my.keys() and mx, x
        for name in mx:
            assert mx[name][:7] == my[name][:7], (x, name)
            assert repr(mx[name][7:]) == repr(my[name][7:]), (x, name)


def test_cached_code_makes_the_same_classes(fresh_cache, monkeypatch):
    plain = _make(False, monkeypatch)
    now = _make(True, monkeypatch)
    assert dataclass_code._new            # compiled this time, to be saved
    _same(plain, now)
    dataclass_code._save()
    monkeypatch.setattr(dataclass_code, "_codes", None)
    monkeypatch.setattr(dataclass_code, "_new", {})
    again = _make(True, monkeypatch)
    assert dataclass_code._new == {}      # every text came from the file
    _same(plain, again)
    p, f, s, o, k = again
    assert p(1).c == [] and p(1) == p(1) and repr(p(1, "x")) .endswith("Plain(a=1, b='x', c=[])")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f(1.0).x = 2.0
    assert not hasattr(s("k"), "__dict__") and o(1) < o(2) and hash(o(1, 5)) == hash(o(1, 6))
    with pytest.raises(TypeError):
        k(1)


def test_damaged_cache_is_compiled_again(fresh_cache, monkeypatch):
    dataclass_code.path().parent.mkdir(parents=True)
    dataclass_code.path().write_bytes(b"\x00not marshal")
    _same(_make(False, monkeypatch), _make(True, monkeypatch))
    assert dataclass_code._new


def test_analyze_installs_it_for_its_own_process_only(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    log = tmp_path / "rank0.log"
    log.write_text("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n")
    probe = ("import dataclasses, sys\nimport dsdoctor.api\nbefore = 'exec' in vars(dataclasses)\n"
             "from dsdoctor.cli import main\n"
             "try:\n    main(['analyze', '--json', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
             "print(before, vars(dataclasses).get('exec') is not None, file=sys.stderr)\n")
    res = subprocess.run([sys.executable, "-c", probe, str(log)], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(root), "XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.stderr.split()[-2:] == ["False", "True"], res.stderr
