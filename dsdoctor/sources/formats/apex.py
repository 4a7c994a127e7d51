"""Recogniser: NVIDIA apex amp's dynamic loss scaler (O1/O2 mixed precision, used by older
Megatron, fairseq and many research scripts).

apex/amp/scaler.py: LossScaler.update_scale prints on every overflow
  'Gradient overflow.  Skipping step, loss scaler {idx} reducing loss scale to {scale}'
(two spaces after the first period). The scale is halved (self._loss_scale /= 2.) and has no
floor unless min_loss_scale is given, so a collapse runs towards 0.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on
from .deepspeed import NUM, num, scale

_APEX = compile_later(r"Gradient overflow\.\s+Skipping step, loss scaler \d+ reducing loss scale to (" + NUM + ")")


@on("Skipping step, loss scaler ")
def apex_overflow(line: Line, st: StreamState):
    m = _APEX.search(line.text)
    if not m or num(m.group(1)) is None:
        return None
    new = num(m.group(1))
    return line.event("overflow", step=st.step_of(line.rank), prev_scale=scale(str(new * 2)),
                      new_scale=scale(m.group(1)), hysteresis=None, dtype="fp16")
