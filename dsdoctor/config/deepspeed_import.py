"""Import DeepSpeed once, lazily and safely: a missing or broken install is a reason, not a crash."""
from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from functools import lru_cache
from types import ModuleType


@lru_cache(maxsize=None)
def _load() -> tuple[ModuleType | None, str | None]:
    if not (os.environ.get("CUDA_VISIBLE_DEVICES") or os.path.exists("/dev/nvidiactl")):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")   # no GPU here: skip the accelerator probe
    try:
        import deepspeed
        import deepspeed.runtime.config  # noqa: F401  (the parts we introspect)
        import deepspeed.runtime.lr_schedules  # noqa: F401
    except BaseException as e:  # ImportError, or anything a broken install raises  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        return None, f"{type(e).__name__}: {first}".rstrip(": ")
    return deepspeed, None


def deepspeed_module() -> ModuleType | None:
    """The deepspeed package, or None when it cannot be imported."""
    return _load()[0]


def deepspeed_problem() -> str | None:
    """Why deepspeed cannot be imported (None when it can)."""
    return _load()[1]


@contextlib.contextmanager
def quiet_deepspeed() -> Iterator[None]:
    """DeepSpeed's own messages held back while we call its parser: its logger writes to stdout
    (deepspeed/utils/logging.py LoggerFactory, a StreamHandler on sys.stdout), where a deprecated
    key's warning would land inside `--json` or `--sarif` output."""
    ds_logger = logging.getLogger("DeepSpeed")
    old = ds_logger.level
    ds_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        ds_logger.setLevel(old)


@lru_cache(maxsize=None)
def torch_module() -> ModuleType | None:
    try:
        import torch
        import torch.optim.lr_scheduler  # noqa: F401
        return torch
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return None
