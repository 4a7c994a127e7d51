"""Python tracebacks and stack dumps: remember the frames so an error line can say in which
phase of training it happened (init, forward, backward, ZeRO-3 fetch, step, checkpoint)."""
from __future__ import annotations

import re

from ..logs import Line, StreamState
from ..registry import on

_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_PYSPY = re.compile(r"^\s+(\S+) \(([^:()]+\.py):\d+\)")
MAX_FRAMES = 60


@on("Traceback (most recent call last)")
def _start(line: Line, st: StreamState) -> None:
    st.frames[line.rank] = []


@on('File "')
def _frame(line: Line, st: StreamState) -> None:
    m = _FRAME.search(line.text)
    if m:
        fr = st.frames.setdefault(line.rank, [])
        fr.append(f"{m.group(1)}:{m.group(2)}")
        if len(fr) > MAX_FRAMES:
            del fr[: len(fr) - MAX_FRAMES]


# (phase, frame predicates). Checked in this order: specific phases first, because a
# ZeRO-3 fetch or an optimizer step also has forward()/backward() frames further out.
_PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("checkpoint_load", ("load_checkpoint", "_load_checkpoint", "load_state_dict_from", "serialization.py:load",
                         "_load_zero_checkpoint", "load_module_state_dict")),
    ("checkpoint_save", ("save_checkpoint", "_save_checkpoint", "_save_zero_checkpoint", "serialization.py:save")),
    ("init", ("deepspeed/__init__.py:initialize", "_configure_optimizer", "_configure_zero_optimizer",
              "initialize_optimizer_states", "_configure_basic_optimizer", "_create_fp32_partitions",
              "_setup_for_real_optimizer", "engine.py:__init__", "stage_1_and_2.py:__init__", "stage3.py:__init__")),
    ("zero3_fetch", ("fetch_sub_module", "partitioned_param_coordinator.py", "_all_gather", "allgather_params",
                     "pre_sub_module_forward_function", "pre_sub_module_backward_function",
                     "_pre_forward_module_hook", "all_gather_coalesced")),
    ("step", ("engine.py:step", "_take_model_step", "engine.py:_step", "stage_1_and_2.py:step", "stage3.py:step",
              "fused_adam.py:step", "cpu_adam.py:step", "optimizer.py:step", "optim/adam", "optim/adamw",
              "_optimizer_step", "fused_optimizer.py:step", "bf16_optimizer.py:step")),
    ("backward", ("engine.py:backward", "autograd/__init__.py:backward", "_engine_run_backward", "run_backward",
                  "_tensor.py:backward", "reduce_ipg_grads", "allreduce_bucket", "reduce_partition_and_remove_grads")),
    ("forward", (":forward", "_call_impl", "_wrapped_call_impl", "module.py:__call__")),
]


def phase_of(frames: list[str] | None) -> str | None:
    if not frames:
        return None
    for phase, keys in _PHASES:
        for fr in frames:
            if any(k in fr for k in keys):
                return phase
    return None


def take_phase(line: Line, st: StreamState) -> str | None:
    """Phase of the traceback that `line` (an exception line) ends; clears it."""
    fr = st.frames.pop(line.rank, None)
    if fr is None and line.rank is not None:
        fr = st.frames.pop(None, None)
    return phase_of(fr)
