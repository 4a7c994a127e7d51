"""Recognisers: NaN/Inf found by a framework's own check rather than in a logged loss.

- torch autograd anomaly mode (torch.autograd.set_detect_anomaly(True)): torch/csrc/autograd/
  engine.cpp validate_outputs / python_anomaly_mode raise
  "Function 'DivBackward0' returned nan values in its 0th output."
- Megatron-LM's --check-for-nan-in-loss-and-grad: megatron/core/distributed/param_and_grad_buffer.py
  (check_for_nan_in_grad) "... found NaN in local grad norm ... in backward pass before
  data-parallel communication collective", and megatron/training/training.py / core/rerun_state_machine.py
  "found NaN in local forward loss calculation".
"""
from __future__ import annotations

import math

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_FN = compile_later(r"Function '(\w+)' returned (nan|inf) values in its (\d+)\w* output")


@on("' returned nan values in its ", "' returned inf values in its ")
def anomaly(line: Line, st: StreamState):
    m = _FN.search(line.text)
    if not m:
        return None
    v = math.nan if m.group(2) == "nan" else math.inf
    return line.event("loss", step=st.step_of(line.rank), value=v, name=f"gradient of {m.group(1)}",
                      anomaly=m.group(1))


@on("found NaN in local", "found Inf in local")
def megatron_check(line: Line, st: StreamState):
    t = line.text
    name = "grad norm" if "grad norm" in t else "loss" if "loss" in t else "gradients"
    return line.event("loss", step=st.step_of(line.rank), value=math.nan if "NaN" in t else math.inf,
                      name=name, check="megatron")
