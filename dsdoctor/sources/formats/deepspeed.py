"""Recognisers: deepspeed messages (see ../shared/log-formats.md)."""
from __future__ import annotations

from ..logs import Line, StreamState, on  # noqa: F401

