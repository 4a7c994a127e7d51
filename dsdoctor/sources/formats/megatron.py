"""Recognisers: Megatron-LM iteration lines (see ../shared/log-formats.md)."""
from __future__ import annotations

from typing import Iterator

from ...events import Event
from ..logs import Line, StreamState, on  # noqa: F401


def finish(st: StreamState) -> Iterator[Event]:
    return iter(())
