"""Recogniser: a training script's own step line, printed as text.

    print(f"rank={rank} step={step} loss={loss:.4f} lr={lr:.3e}")      -> 'rank=0 step=5 loss=0.4472 lr=6.990e-04'
    logger.info(f"step: {step}, loss={loss}, lr={lr}, grad_norm={gn}")
    print(f"Epoch 0 | Step 80 | Loss = 2.31 | grad norm = 1.2")

A line is a step line when it names a step (step/global_step/iter/iteration with a number) and,
after it, a loss with '=' (a 'loss:' line is left alone: see the trigger). The loss, and an lr / learning_rate and a grad norm on the same
line, become the same events as a JSON-lines record's (formats/jsonlog.py), so the LR schedule,
divergence and grad-norm detectors read scripts that log in plain text. Only finite losses:
'loss: nan' is formats/deepspeed.py loose_loss's. Lines other recognisers own are left to them
(HF metric dicts, JSON records, Megatron's 'iteration N/ M |', the pipeline engine's 'iter time
(s)'), and so are evaluation losses.
"""
from __future__ import annotations

import math

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_N = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_STEP = compile_later(r"(?i)\b(?:global[_ ]?step|step|iter(?:ation)?)\s*[:=#]?\s*\[?(\d+)(?:\s*/\s*\d+)?\]?(?![\d.])")
_LOSS = compile_later(r"(?i)(?:^|[\s,|(\[{;])(?P<pre>[A-Za-z]+[ _])?loss\s*[:=]\s*(?:tensor\()?(?P<v>" + _N + r")(?![\w.])")
_LR = compile_later(r"(?i)\b(?:lr|learning[_ ]rate)\s*[:=]\s*\[?(" + _N + r")(?![\w.])")
_GN = compile_later(r"(?i)\bgrad(?:ient)?[_ ]?norm\s*[:=]\s*(" + _N + r")(?![\w.])")
_RANK = compile_later(r"(?i)\brank\s*[:=]?\s*(\d{1,6})\b")
_EVAL = ("eval", "val", "valid", "validation", "test", "dev")
_OWNED = ("{'", '{"', "iter time (s)", "lm loss:", "| consumed samples")


# (only 'loss=' forms: 'loss: ' hits the pieces of Megatron's wrapped iteration record, whose
# continuation lines must reach megatron.py with nothing else triggered on them)
@on("loss=", "loss =", "Loss=", "Loss =", "LOSS=")
def script_step(line: Line, st: StreamState):
    t = line.text
    if len(t) > 400 or any(o in t for o in _OWNED):
        return None
    ml = _LOSS.search(t)
    if ml is None:
        return None
    pre = (ml.group("pre") or "").strip(" _").lower()
    if pre in _EVAL:
        return None
    ms = _STEP.search(t, 0, ml.start() + 1)
    if ms is None:
        return None
    loss = float(ml.group("v"))
    if not math.isfinite(loss):
        return None
    step = int(ms.group(1))
    rank = line.rank
    if rank is None and (mr := _RANK.search(t, 0, ms.start() + 1)):
        rank = int(mr.group(1))
    st.last_step[rank] = step
    if rank is not None:
        st.last_step[None] = step
    out = [line.event("loss", step=step, rank=rank, value=loss, name="loss")]
    for kind, rx in (("lr", _LR), ("grad_norm", _GN)):
        m = rx.search(t)
        if m:
            v = float(m.group(1))
            if math.isfinite(v) or kind == "grad_norm":
                out.append(line.event(kind, step=step, rank=rank, value=v))
    return out
