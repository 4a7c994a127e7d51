"""Auto-attach in every rank of a run started by `dsdoctor run` (the coverage.py pattern).

A `.pth` file installed with dsdoctor runs `maybe_install()` at every interpreter start. It
does nothing unless DSDOCTOR_AUTOATTACH is set (the launchers pass the environment on to the
ranks). When set, it adds an import hook and returns: torch and deepspeed are NOT imported
here. Only when the user's code imports deepspeed does the hook wrap `deepspeed.initialize`,
so every engine it returns (plain scripts, HF Trainer, accelerate) gets `attach`ed.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

ENV = "DSDOCTOR_AUTOATTACH"
_doctors: list[Any] = []       # handles of the engines attached in this process


def maybe_install() -> None:
    """Called from the .pth at interpreter start: cheap, silent, never raises."""
    try:
        if os.environ.get(ENV, "").strip().lower() in ("", "0", "false", "no", "off"):
            return
        install()
    except Exception:
        pass


def install() -> None:
    if "deepspeed" in sys.modules:
        _patch(sys.modules["deepspeed"])
        return
    if not any(isinstance(f, _DeepSpeedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeepSpeedFinder())


class _DeepSpeedFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for `deepspeed` it asks the other finders and wraps the loader
    so `deepspeed.initialize` is patched right after deepspeed/__init__.py has run."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "deepspeed":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _PatchingLoader(spec.loader)
                return spec
            if spec is not None:
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: Any):
        self.inner = inner

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        try:
            _patch(module)
        except Exception:
            pass

    def __getattr__(self, name: str) -> Any:       # get_resource_reader, is_package, ...
        return getattr(self.inner, name)


def _patch(deepspeed: Any) -> None:
    orig = getattr(deepspeed, "initialize", None)
    if orig is None or getattr(orig, "_dsdoctor", False):
        return

    def initialize(*args: Any, **kwargs: Any) -> Any:
        result = orig(*args, **kwargs)
        try:
            engine = result[0] if isinstance(result, tuple) else result
            from .attach import attach
            _doctors.append(attach(engine))
        except Exception as e:       # the doctor must never break training
            from .say import say
            say(f"dsdoctor: could not attach ({type(e).__name__}: {e}); training continues")
        return result

    initialize._dsdoctor = True          # type: ignore[attr-defined]
    initialize.__wrapped__ = orig        # type: ignore[attr-defined]
    initialize.__doc__ = orig.__doc__
    deepspeed.initialize = initialize
