"""Recognisers for the message formats of torch, NCCL, gloo, DeepSpeed, HF, Megatron,
launchers and the GPU driver. Each module registers handlers with `@on(trigger, ...)`:
a handler runs only for lines containing one of its literal triggers (see sources.logs).
Templates and version ranges: ../shared/log-formats.md and the installed sources.
"""
from __future__ import annotations

from typing import Iterator

from ...events import Event
from ..logs import StreamState
from . import traceback, memory, context_lines  # noqa: F401  (registration)
from . import deepspeed, nccl, launcher, hf, megatron, hardware, phases  # noqa: F401
from . import multinode  # noqa: F401

# other trainers' loss scalers, progress bars, framework NaN checks
from . import fairseq, apex, progress, anomaly  # noqa: F401,E402

_FINISHERS = [megatron.finish, traceback.finish]


def finish_stream(st: StreamState) -> Iterator[Event]:
    """End of an input: flush recognisers that buffer (wrapped lines)."""
    for fn in _FINISHERS:
        yield from fn(st)
