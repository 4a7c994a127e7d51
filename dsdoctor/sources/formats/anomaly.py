"""Recognisers: NaN/Inf found by a framework's own check rather than in a logged loss.

- torch autograd anomaly mode (torch.autograd.set_detect_anomaly(True)): torch/csrc/autograd/
  engine.cpp validate_outputs / python_anomaly_mode raise
  "Function 'DivBackward0' returned nan values in its 0th output."
- torch.multinomial, the sampling step of `generate(do_sample=True)` (RL rollouts, evaluation samples):
  aten/src/ATen/native/Distributions.cpp "probability tensor contains either `inf`, `nan` or element < 0"
  (read in this machine's libtorch_cpu.so): the model's logits went non-finite.
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


# the rank and iteration the rerun state machine names (rerun_state_machine.py validate_result: 'Rank {rank}, node
# {node}, device {device}, iteration {i}: Unexpected result ...' raised with reruns disabled, 'Unexpected result {r}
# on rank {rank} at iteration #{i} ...' logged in validate_results mode): a NeMo or Slurm log has no rank prefix
_WHERE = compile_later(r"\bRank (\d+), node \S+, device \S+, iteration #?(\d+):|\bon rank (\d+) at iteration #(\d+)")


@on("found NaN in local", "found Inf in local")
def megatron_check(line: Line, st: StreamState):
    t = line.text
    name = "grad norm" if "grad norm" in t else "loss" if "loss" in t else "gradients"
    rank, step = line.rank, None
    m = _WHERE.search(t)
    if m:
        r, i = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
        rank = int(r) if rank is None else rank
        step = int(i)
    return line.event("loss", step=step if step is not None else st.step_of(rank), rank=rank,
                      value=math.nan if "NaN" in t else math.inf, name=name, check="megatron")


# A training script's own NaN stop, the wording of the reference training loops most scripts copy:
# facebookresearch/detr engine.py train_one_epoch and facebookresearch/mae engine_pretrain.py
# ('print("Loss is {}, stopping training".format(loss_value))' then sys.exit(1)); the same sentence
# without the stop ('loss is nan') is a script's own check too.
_LOSS_IS = compile_later(r"\b[Ll]oss is (nan|NaN|inf|Inf|-inf)\b")


@on("oss is nan", "oss is NaN", "oss is inf", "oss is Inf", "oss is -inf")
def script_nan_check(line: Line, st: StreamState):
    m = _LOSS_IS.search(line.text)
    if not m:
        return None
    v = math.nan if m.group(1).lower() == "nan" else -math.inf if m.group(1) == "-inf" else math.inf
    return line.event("loss", step=st.step_of(line.rank), value=v, name="loss", check="script")


# A script's own NaN check in its other wordings: "NaN loss detected at step 2231", "Detected NaN loss",
# "encountered inf loss, stopping", "FloatingPointError: non-finite loss" (raised or printed). A found-verb or an
# error class must be on the line and no negation before it: an argument dump's "skip NaN loss: True" or a
# "no NaN loss detected" summary is not a NaN.
_NAN_LOSS = compile_later(r"\b(NaN|nan|NAN|Inf|inf|INF|non-finite|nonfinite)[ -]loss(?:es)?\b")
_FOUND = compile_later(r"(?i)\b(?:detected|detect|encountered|found|got|occurred|appeared|raise)\b|\w(?:Error|Exception):")
_DENIED = compile_later(r"(?i)\b(?:no|not|without|never|skip)\b")
_CODE = ("raise ", "print(", "logger.", "logging.", "log.", "warnings.warn(", "if ", "assert ", "msg = ", "f\"", "f'")


@on("NaN loss", "nan loss", "NAN loss", "Inf loss", "inf loss", "INF loss", "non-finite loss", "nonfinite loss")
def script_nan_loss(line: Line, st: StreamState):
    t = line.text
    m = _NAN_LOSS.search(t)
    # a traceback's source line (the raise or print that words it) is code, not the run's reading
    if not m or t.lstrip().startswith(_CODE) or not _FOUND.search(t) or _DENIED.search(t[:m.start()]):
        return None
    v = math.inf if m.group(1).lower() == "inf" else math.nan
    return line.event("loss", step=st.step_of(line.rank), value=v, name="loss", check="script")


# torch/nn/utils/clip_grad.py _clip_grads_with_norm_ / clip_grad_norm_(error_if_nonfinite=True):
# "The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be clipped."
@on("is non-finite, so it cannot be clipped")
def clip_nonfinite(line: Line, st: StreamState):
    return line.event("loss", step=st.step_of(line.rank), value=math.nan, name="grad norm", check="clip_grad_norm_")


@on("probability tensor contains either `inf`, `nan` or element < 0")
def sampling_nonfinite(line: Line, st: StreamState):
    return line.event("loss", step=st.step_of(line.rank), value=math.nan, name="sampling probabilities (generate)",
                      check="multinomial")
