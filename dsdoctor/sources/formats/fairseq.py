"""Recognisers: fairseq's fp16 dynamic loss scaler (not DeepSpeed, but the same failure).

fairseq/trainer.py: Trainer.train_step logs every overflow as
  'NOTE: overflow detected, setting loss scale to: {scale}'   (0.9+, logger.info)
  '| WARNING: overflow detected, setting loss scale to: {scale}'   (0.6-0.8, print)
and fairseq/optim/dynamic_loss_scaler.py: DynamicLossScaler.check_overflow raises
  FloatingPointError('Minimum loss scale reached ({min_loss_scale}). Your loss is probably
  exploding. Try lowering the learning rate, using gradient clipping or increasing the batch size.')
The scaler divides by scale_factor (default 2.0) on each overflow; --min-loss-scale defaults
to 1e-4, so fairseq scales live far below DeepSpeed's (which start at 2^16 with a floor of 1).
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on
from .deepspeed import NUM, num, scale

_SET = compile_later(r"overflow detected, setting loss scale to: (" + NUM + ")")
_MIN = compile_later(r"Minimum loss scale reached \((" + NUM + r")\)")
FAIRSEQ_MIN_LOSS_SCALE = 1e-4        # fairseq/dataclass/configs.py: CommonConfig.min_loss_scale
SCALE_FACTOR = 2.0                   # fairseq/optim/dynamic_loss_scaler.py: DynamicLossScaler(scale_factor=2.0)


@on("overflow detected, setting loss scale to: ")
def overflow(line: Line, st: StreamState):
    m = _SET.search(line.text)
    if not m:
        return None
    new = num(m.group(1))
    if new is None:
        return None
    return line.event("overflow", step=st.step_of(line.rank), prev_scale=scale(str(new * SCALE_FACTOR)),
                      new_scale=scale(m.group(1)), hysteresis=None, dtype="fp16",
                      min_scale=st.scratch.get("fairseq_min_scale", FAIRSEQ_MIN_LOSS_SCALE))


@on("Minimum loss scale reached (")
def at_minimum(line: Line, st: StreamState):
    m = _MIN.search(line.text)
    if m and num(m.group(1)):
        st.scratch["fairseq_min_scale"] = num(m.group(1))
    return line.event("scale_at_minimum", step=st.step_of(line.rank),
                      min_scale=num(m.group(1)) if m else None)
