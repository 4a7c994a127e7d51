"""Recognisers: DeepSpeed's own messages (deepspeed/runtime/fp16/loss_scaler.py:
DynamicLossScaler.update_scale, deepspeed/utils/timer.py: ThroughputTimer and
SynchronizedWallClockTimer, deepspeed/runtime/config.py batch assertions,
deepspeed/runtime/config_utils.py pydantic validation, op_builder/builder.py).

Training health (loss scaler overflows, progress, throughput, wall-clock timers), runtime
config errors (batch assertion, pydantic validation, optimizer/scheduler parameters) and
op build / JIT failures. Wordings from DeepSpeed 0.1 to 0.19 are handled.
"""
from __future__ import annotations

import math
import re

from ...findings import clip
from ...lazy_regex import compile_later
from ..lines import MAX_EVIDENCE_TEXT, Line, StreamState, armed_within
from ..recogniser import NONFINITE_ANOMALIES, no_nonfinite, on, steady

# ---------------------------------------------------------------- shared helpers
NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|NaN|NAN|inf|Inf|INF|infinity)"


def num(s: str | None) -> float | None:
    """'2.1E+00', 'nan', 'NAN', '-inf', '1048576.0' -> float; None when unparsable."""
    if s is None:
        return None
    try:
        return float(s)            # float() skips surrounding whitespace itself: most values are plain
    except ValueError:
        pass
    s = s.strip().strip("'\"")
    try:
        return float(s)
    except ValueError:
        return None


def scale(s: str | None) -> float | int | None:
    """Loss scales print as '8', '4.0', '1048576.0': keep them as ints when whole."""
    v = num(s)
    if v is None or not math.isfinite(v):
        return v
    return int(v) if v.is_integer() else v


def set_step(st: StreamState, rank: int | None, step: int) -> None:
    """Record the step a rank is at, so later lines (overflows, errors) can say when."""
    st.last_step[rank] = step
    if rank is not None:
        st.last_step[None] = step       # fallback for lines that carry no rank


def nested(dotted: str, value) -> dict:
    """'zero_optimization.offload_params', None -> {'zero_optimization': {'offload_params': None}}
    (a merge patch: null deletes the key)."""
    out: dict = {}
    cur = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


# ---------------------------------------------------------------- fp16 / bf16 loss scaler
_ATTEMPT = compile_later(r"Attempted loss scale: (" + NUM + r"), reducing to (" + NUM + r")")
_HYST = compile_later(r"Attempted loss scale: (" + NUM + r"), but hysteresis is (\d+)\. Reducing hysteresis to (\d+)")


@on("OVERFLOW!", "loss scale overflow!")
def overflow(line: Line, st: StreamState):
    t = line.text
    step = st.step_of(line.rank)
    m = _HYST.search(t)
    if m:
        s = scale(m.group(1))
        return line.event("overflow", step=step, prev_scale=s, new_scale=s,
                          hysteresis=int(m.group(3)), dtype="fp16")
    m = _ATTEMPT.search(t)
    if m:
        return line.event("overflow", step=step, prev_scale=scale(m.group(1)), new_scale=scale(m.group(2)),
                          hysteresis=None, dtype="fp16")
    if "Gradients are non-finite" in t:
        # LossScaler (bf16, or fp16 with a static loss_scale > 0): no scale to report
        return line.event("overflow", step=step, prev_scale=None, new_scale=None, hysteresis=None, dtype="bf16")
    if t.rstrip().endswith("Skipping step."):
        # DynamicLossScaler.update_scale (runtime/fp16/loss_scaler.py, v0.8.3+) adds the scale only when its
        # dtype is torch.half: '[deepspeed] OVERFLOW! Rank 0 Skipping step.' alone is a bf16 run's skipped step
        return line.event("overflow", step=step, prev_scale=None, new_scale=None, hysteresis=None, dtype="bf16")
    return None


# ZeRO-0 fp16 (FP16_Optimizer / FP16_UnfusedOptimizer): the iteration and the new scale
# come on two lines; no hysteresis, no exception at the floor ('from 1 to 1' forever).
_GRAD_OVF = compile_later(r"Grad overflow on iteration:? (\d+)")
_REDUCE = compile_later(r"Reducing dynamic loss scale from (" + NUM + r") to (" + NUM + r")")
_INCREASE = compile_later(r"Increasing dynamic loss scale from (" + NUM + r") to (" + NUM + r")")
_STATIC = compile_later(r"Using static loss scale of:? (" + NUM + r")")


@on("Grad overflow on iteration")
def grad_overflow(line: Line, st: StreamState):
    m = _GRAD_OVF.search(line.text)
    if m:
        st.scratch["ds_overflow_iter"] = (line.lineno, int(m.group(1)))
    return None


def _pending_iter(line: Line, st: StreamState) -> int | None:
    p = st.scratch.pop("ds_overflow_iter", None)
    if armed_within(p, line, 3, same_line=True):
        return p[1]
    return st.step_of(line.rank)


@on("Reducing dynamic loss scale from")
def reduce_scale(line: Line, st: StreamState):
    m = _REDUCE.search(line.text)
    if not m:
        return None
    return line.event("overflow", step=_pending_iter(line, st), prev_scale=scale(m.group(1)),
                      new_scale=scale(m.group(2)), hysteresis=None, dtype="fp16", zero0=True)


@on("Increasing dynamic loss scale from")
def increase_scale(line: Line, st: StreamState):
    m = _INCREASE.search(line.text)
    return line.event("loss_scale", step=st.step_of(line.rank), value=scale(m.group(2))) if m else None


@on("Using static loss scale of")
def static_scale(line: Line, st: StreamState):
    p = st.scratch.get("ds_overflow_iter")
    if not armed_within(p, line, 3, same_line=True):
        return None          # the init message 'Creating fp16 optimizer with static loss scale'
    m = _STATIC.search(line.text)
    return line.event("overflow", step=_pending_iter(line, st), prev_scale=None, new_scale=None,
                      hysteresis=None, dtype="fp16", static=True, scale=scale(m.group(1)) if m else None)


# deepspeed/runtime/zero/stage3.py: DeepSpeedZeroOptimizer_Stage3._post_step callers (step):
# logger.warning("%d pytorch allocator cache flushes since last step. this happens when there is
# high memory pressure ...") on rank 0, whenever memory_stats()["num_alloc_retries"] grew.
# deepspeed/runtime/zero/stage_1_and_2.py (ZeRO 1-2, reduce_ready_partitions_and_remove_grads /
# reduce_ipg_grads): a parameter whose gradient hook fires twice in one backward ("The parameter
# {name} has already been reduced. Gradient computed twice for this partition. Multiple gradient
# reduction(s) is/are currently not supported"; {name} is 'unknown' unless DeepSpeed's debug names
# are set). Seen here on a real ZeRO-2 run: a module used twice under reentrant checkpointing.
_REDUCED_TWICE = compile_later(r"The parameter (\S+) has already been reduced")


@on("has already been reduced")
def gradient_reduced_twice(line: Line, st: StreamState):
    m = _REDUCED_TWICE.search(line.text)
    if not m or "Gradient computed twice" not in line.text or not st.once(("reduced-twice", line.rank)):
        return None
    param = m.group(1).rstrip(".")
    return line.event("config_error", step=st.step_of(line.rank), error="grad_reduced_twice", key=None,
                      param=None if param == "unknown" else param, message=" ".join(line.text.split())[:300])


_ALLOC_FLUSHES = compile_later(r"(\d+) pytorch allocator cache flushes since last step")


@on("pytorch allocator cache flushes since last step")
def allocator_flushes(line: Line, st: StreamState):
    m = _ALLOC_FLUSHES.search(line.text)
    if not m:
        return None
    return line.event("alloc_flushes", step=st.step_of(line.rank), flushes=int(m.group(1)))


@on("Current loss scale already at minimum")
def at_minimum(line: Line, st: StreamState):
    return line.event("scale_at_minimum", step=st.step_of(line.rank))


# ---------------------------------------------------------------- progress and throughput
_PROGRESS = compile_later(r"\bstep=(\d+), skipped=(\d+), lr=(\[[^\]]*\]|\S+)")


@on(", skipped=")
def progress(line: Line, st: StreamState):
    m = _PROGRESS.search(line.text)
    if not m:
        return None
    step = int(m.group(1))
    set_step(st, line.rank, step)
    out = [line.event("skipped", step=step, skipped=int(m.group(2)), nan_iters=None)]
    lrs = [v for v in (num(x) for x in m.group(3).strip("[]").split(",")) if v is not None]
    if lrs:
        out.append(line.event("lr", step=step, value=lrs if len(lrs) > 1 else lrs[0]))
    return out


_GLOBAL_STEP = compile_later(r"global_step=(\d+)")
# ThroughputTimer's CurrSamplesPerSec (utils/timer.py) and the hybrid engine's one-r CurSamplesPerSec
# (runtime/hybrid_engine.py DeepSpeedHybridEngine.step: '|E2E latency=...s |Gather latency=... |Generate time=...
# |Training time=... |Others=...|CurSamplesPerSec={:.2f} |AvgSamplesPerSec={:.2f}', DeepSpeed-Chat's RLHF step)
_CURR_SPS = compile_later(r"Curr?SamplesPerSec=(" + NUM + ")")
_SPS = compile_later(r"(?<![A-Za-z])SamplesPerSec=(" + NUM + ")")


@on("SamplesPerSec=")
def samples_per_sec(line: Line, st: StreamState):
    t = line.text
    m = _GLOBAL_STEP.search(t)
    step = None
    if m:
        step = int(m.group(1))
        set_step(st, line.rank, step)
    m = _CURR_SPS.search(t) or _SPS.search(t)
    if not m:
        return None
    return line.event("throughput", step=step if step is not None else st.step_of(line.rank),
                      samples_per_sec=num(m.group(1)))


# '[Rank 0] time (ms) | fwd_microstep: 2.96 | bwd_microstep: 17.78 | ...' (v0.10.1+) and
# 'rank=0 time (ms) | forward_microstep: 2.96 | ...' (v0.3-v0.10.0); Megatron's own timer lines
# ('time (ms) | forward-compute: ...') have the same shape.
_TIMER = compile_later(r"([A-Za-z_][\w\- ]*?): (" + NUM + ")")
# the rank the record itself names, right before 'time (ms)': it wins over the line's own when two
# processes' output is glued into one line ('rank=1 step=0 loss: 1.2293[Rank 0] time (ms) | ...', seen
# here: rank 1's print without its newline yet, then rank 0's timer record)
_OWN_RANK = compile_later(r"(?:\[Rank (\d+)\]|\brank=(\d+)) ?$")


@on("time (ms) |")
def timers(line: Line, st: StreamState):
    head, body = line.text.split("time (ms) |", 1)
    vals = {}
    for part in body.split("|"):
        m = _TIMER.search(part.split("(")[0])
        if m:
            v = num(m.group(2))
            if v is not None:
                vals[m.group(1).strip()] = v
    if not vals:
        return None
    m = _OWN_RANK.search(head[-24:])
    rank = int(m.group(1) or m.group(2)) if m else line.rank
    ev = line.event("timers", step=st.step_of(rank), rank=rank)
    ev.data = vals          # data is {timer_name: ms}; names like 'step' must not clash with arguments
    return ev


# PipelineEngine: 'steps: 12 loss: 2.3456 iter time (s): 1.234 samples/sec: 51.9'
_PIPE = compile_later(r"steps: (\d+) loss: (" + NUM + r") .*?iter time \(s\): (" + NUM + r") samples/sec: (" + NUM + ")")


@on("iter time (s):")
def pipeline_progress(line: Line, st: StreamState):
    m = _PIPE.search(line.text)
    if not m:
        return None
    step = int(m.group(1))
    set_step(st, line.rank, step)
    it = num(m.group(3))
    return [line.event("loss", step=step, value=num(m.group(2)), name="loss"),
            line.event("throughput", step=step, iter_ms=it * 1000 if it is not None else None,
                       samples_per_sec=num(m.group(4)))]


# A script's own 'loss: nan' (print(f"loss: {loss}")): only non-finite values, which cannot be
# mistaken for something else; Megatron/pipeline/HF lines have their own recognisers.
_LOOSE_LOSS = compile_later(r"\b(\w*loss)\s*[:=]\s*(?:tensor\()?\s*(-?(?:nan|inf))\b|"
                         # no separator ('| loss nan |', 'with loss nan'): only where a value ends, or where
                         # the line's next key and its value follow ('step 400 loss nan lr 3.0e-04')
                         r"\b(\w*loss)\s+(-?(?:nan|inf))(?=\s*(?:$|[|,;)\]}]|-\s)|"
                         r"\s+[a-z_][\w/]*(?:\s*[:=]\s*|\s+)(?:[-+]?[\d.]|-?nan\b|-?inf\b))", re.I)
# A bound or a running record, not a reading: 'max_loss=inf' (a limit in a printed config),
# 'best_val_loss: inf' (the tracker's start value before the first evaluation).
_BOUND_NAME = compile_later(r"(?:^|_)(?:max|min|best|lowest|highest|target|threshold|limit|init|initial)_", re.I)


@on("loss: nan", "loss: inf", "loss: -inf", "loss=nan", "loss=inf", "loss = nan", "loss = inf",
    "loss: tensor(nan", "loss: NaN", "loss: Inf", "Loss: nan", "Loss: inf", "Loss: NaN", "Loss = nan",
    # verl/OpenRLHF 'actor/pg_loss:nan', fairseq '| loss nan |', DeepSpeed-Chat 'with loss nan'
    "loss:nan", "loss:inf", "loss:-inf", "loss nan", "loss inf", "loss -inf",
    # the same words capitalised ('Epoch 0 | Step 80 | Loss nan'; the pattern ignores case, the literals do not)
    "Loss nan", "Loss inf", "Loss NaN", "loss NaN", "Loss:nan", "Loss = inf")
def loose_loss(line: Line, st: StreamState):
    t = line.text
    if "iter time (s)" in t or "{'" in t or re.search(r"iteration\s+\d+/", t):
        return None
    m = next((m for m in _LOOSE_LOSS.finditer(t)
              if not _BOUND_NAME.search(m.group(1) or m.group(3))), None)
    if not m:
        return None
    step = None
    ms = re.search(r"\b(?:global_step|step|iteration|iter)[=: ]\s*(\d+)", t)
    if ms:
        step = int(ms.group(1))
        set_step(st, line.rank, step)
    name, value = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return line.event("loss", step=step if step is not None else st.step_of(line.rank),
                      value=num(value), name=name)


_VERSION = compile_later(r"DeepSpeed info: version=([\w.+-]+)")


@on("DeepSpeed info: version=")
def version(line: Line, st: StreamState):
    m = _VERSION.search(line.text)
    return line.event("context", ds_version=m.group(1)) if m else None


# 'Creating torch.bfloat16 ZeRO stage 2 optimizer' (also 'fp16'/'bf16' spellings),
# 'Creating fp16 optimizer with dynamic loss scale' (ZeRO-0), 'Creating BF16 optimizer'
# (engine.py:2578-2746, INFO): the dtype and stage rules need when no --config is given.
_CREATING = compile_later(r"Creating (?:torch\.)?(\w+) ZeRO stage (\d) optimizer")
_DTYPES = {"float16": "fp16", "fp16": "fp16", "half": "fp16", "bfloat16": "bf16", "bf16": "bf16",
           "float32": "fp32", "float": "fp32", "fp32": "fp32"}


@on("Creating torch.", "ZeRO stage", "Creating fp16 ", "Creating BF16 optimizer")
def creating_optimizer(line: Line, st: StreamState):
    t = line.text
    m = _CREATING.search(t)
    if m:
        return line.event("context", dtype=_DTYPES.get(m.group(1).lower()), zero_stage=int(m.group(2)))
    if "Creating fp16 optimizer with" in t or "Creating fp16 unfused optimizer with" in t:
        return line.event("context", dtype="fp16", zero_stage=0)
    if "Creating BF16 optimizer" in t:
        return line.event("context", dtype="bf16")
    return None


# ---------------------------------------------------------------- runtime config errors
_BATCH = compile_later(r"world_size\s*(\d+) != (\d+) \* (\d+) \* (\d+)")


@on("train_batch_size is not equal to micro_batch_per_gpu")
def batch_assertion(line: Line, st: StreamState):
    m = _BATCH.search(line.text)
    if not m:
        return line.event("config_error", error="batch_mismatch", key="train_batch_size",
                          message=line.text[-300:], numbers={})
    tb, mb, gas, ws = (int(x) for x in m.groups())
    return [line.event("context", world_size=ws),
            line.event("config_error", error="batch_mismatch", key="train_batch_size", message=line.text[-300:],
                       numbers={"train_batch_size": tb, "micro_batch": mb, "gas": gas, "world_size": ws},
                       train_batch_size=tb, micro_batch=mb, gas=gas, world_size=ws)]


_GT0 = compile_later(r"(Train batch size|Micro batch size per gpu|Gradient accumulation steps): (-?\d+) has to be greater than 0")
_GT0_KEYS = {"Train batch size": "train_batch_size", "Micro batch size per gpu": "train_micro_batch_size_per_gpu",
             "Gradient accumulation steps": "gradient_accumulation_steps"}


@on("has to be greater than 0")
def batch_not_positive(line: Line, st: StreamState):
    m = _GT0.search(line.text)
    if not m:
        return None
    return line.event("config_error", error="batch_not_positive", key=_GT0_KEYS[m.group(1)],
                      message=m.group(0), numbers={"value": int(m.group(2))}, value=int(m.group(2)))


# runtime/config.py: DeepSpeedConfig._set_batch_related_parameters, when neither batch size is given
@on("Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided")
def batch_missing(line: Line, st: StreamState):
    return line.event("config_error", error="batch_missing", key="train_micro_batch_size_per_gpu",
                      message=line.text.strip()[-300:])


# runtime/config.py _reject_removed_config_keys: a key of a feature removed in 0.19 (#8489) stops
# DeepSpeedConfig with the message DeepSpeed keeps for that key (_REMOVED_TOP_LEVEL_CONFIG_KEYS /
# _REMOVED_ZERO_CONFIG_KEYS, copied into the key catalogue's snapshot): the message names the key.
# (not "DeepSpeedConfigError: " as the trigger: the scanner's literals do not overlap, and that one would
# hide "Error" from the exception reader)
@on("has been removed")
def removed_key(line: Line, st: StreamState):
    if "DeepSpeedConfigError" not in line.text:
        return None
    from ...config.catalogue import snapshot_catalogue      # a json read, once, on such a line only
    cat = snapshot_catalogue()
    for table, prefix in ((cat.removed, ""), (cat.removed_zero, "zero_optimization.")):
        for k, msg in table.items():
            if msg.split(" See https:")[0][:150] in line.text:     # the two MiCS keys share 60 characters
                return line.event("config_error", error="removed_key", key=prefix + k,
                                  message=line.text.strip()[-300:], patch=nested(prefix + k, None))
    return None


# utils/logging.py get_log_level_from_string: the ds_config's log_level (runtime/engine.py
# set_log_level_from_string(self.log_level())) or the launcher's --log_level (launcher/runner.py,
# launch.py: set_log_level_from_string(args.log_level), whose code line in the traceback says so).
_LOG_LEVEL = compile_later(r"ValueError: (.*?) is not one of the valid logging levels")


@on("set_log_level_from_string(args.log_level)")
def log_level_launcher_frame(line: Line, st: StreamState):
    st.scratch["ds_log_level_launcher"] = line.lineno
    return None


@on("is not one of the valid logging levels")
def bad_log_level(line: Line, st: StreamState):
    m = _LOG_LEVEL.search(line.text)
    if not m or not st.once(("bad_log_level",)):
        return None                       # every rank raises it; one finding
    armed = st.scratch.get("ds_log_level_launcher")
    launcher = armed_within(armed, line, 12)
    return line.event("config_error", error="bad_log_level", key="--log_level" if launcher else "log_level",
                      value=m.group(1), launcher=launcher, message=line.text.strip()[-300:],
                      patch=None if launcher else {"log_level": "info"})


# "auto" reaching DeepSpeed itself (only the HF Trainer / accelerate replace it): the batch
# arithmetic of runtime/config.py (_set_batch_related_parameters / _batch_assertion) then fails
# with a TypeError on a str. The frame line arms it, the TypeError right after fires.
@on("in _batch_assertion", "in _set_batch_related_parameters")
def batch_frame(line: Line, st: StreamState):
    st.scratch["ds_batch_frame"] = line.lineno
    return None


@on("not supported between instances of 'str'", "can't multiply sequence by non-int of type 'str'",
    "unsupported operand type(s) for", "can only concatenate str")
def batch_str(line: Line, st: StreamState):
    armed = st.scratch.get("ds_batch_frame")
    if not armed_within(armed, line, 6) or "TypeError" not in line.text:
        return None
    st.scratch.pop("ds_batch_frame", None)
    return line.event("config_error", error="auto_outside_hf", key="train_batch_size",
                      message=line.text.strip()[-300:])


# The same elsewhere in the engine: a config value read through its accessor (runtime/engine.py
# DeepSpeedEngine._take_model_step 'if self.gradient_clipping() > 0.0:', the optimizer / scheduler
# params, bucket sizes) is still a string ("auto", or a quoted number) and the comparison or
# arithmetic on it raises a TypeError naming 'str'. The frame in deepspeed/runtime/ arms it; the code
# line right after the frame (handed over by any identifier character, not chained) names the
# accessor when it is `self.<name>()`.
_DS_ACCESSOR = compile_later(r"\bself\.(\w+)\(\)")


@on('deepspeed/runtime/', continuation=tuple("abcdefghijklmnopqrstuvwxyz_"), chain=False)
def runtime_frame(line: Line, st: StreamState):
    if 'deepspeed/runtime/' in line.text and 'File "' in line.text:
        st.scratch["ds_runtime_frame"] = [line.lineno, None]
        return None
    armed = st.scratch.get("ds_runtime_frame")
    if armed_within(armed, line, 1):
        m = _DS_ACCESSOR.search(line.text)
        armed[1] = m.group(1) if m else None
    return None


@on("not supported between instances of 'str'", "unsupported operand type(s) for",
    "must be real number, not str", "can't multiply sequence by non-int of type")
def runtime_str(line: Line, st: StreamState):
    armed = st.scratch.get("ds_runtime_frame")
    t = line.text
    if not armed_within(armed, line, 6) or "TypeError" not in t or "'str'" not in t and " str" not in t:
        return None
    if st.scratch.get("ds_batch_frame") is not None:
        return None             # the batch arithmetic: batch_str has it
    st.scratch.pop("ds_runtime_frame", None)
    return line.event("config_error", error="auto_left", key=armed[1] or "(a config value)", accessor=armed[1],
                      op=None, message=t.strip()[-300:])


# The same value reaching a compiled DeepSpeed op: pybind11 refuses the call ('multi_tensor_adam():
# incompatible function arguments. The following argument types are supported: ...' then 'Invoked with:
# ...' and the arguments, lr / weight_decay among them, on the lines after), as a real run with
# optimizer.params {"lr": "auto"} given to deepspeed.initialize prints it (deepspeed/ops/adam/fused_adam.py
# FusedAdam.step -> multi_tensor_apply.py). A quoted 'auto' among the arguments names the cause.
_PYBIND_FN = compile_later(r"(\w+)\(\): incompatible function arguments")


@on("incompatible function arguments")
def pybind_refused(line: Line, st: StreamState):
    m = _PYBIND_FN.search(line.text)
    st.scratch["ds_pybind"] = [line.lineno, m.group(1) if m else None, line.text.strip()[-300:]]
    return None


# pybind11 prints 'Invoked with: ' only under that refusal (pybind11.h cpp_function::dispatcher): a paste
# that starts below the refusal's first line (its op name cut, the supported signatures' tail left) still
# holds the call that was refused
@on("Invoked with: ")
def pybind_invoked_with(line: Line, st: StreamState):
    if not armed_within(st.scratch.get("ds_pybind"), line, 60, same_line=True):
        st.scratch["ds_pybind"] = [line.lineno, None, line.text.strip()[:300]]
    return None


@on("'auto'")
def pybind_auto_argument(line: Line, st: StreamState):
    armed = st.scratch.get("ds_pybind")
    if not armed_within(armed, line, 60):
        return None
    st.scratch.pop("ds_pybind", None)
    op = armed[1] or ""
    key = "optimizer.params" if any(w in op for w in ("adam", "lamb", "lion", "adagrad", "muon")) else "(a config value)"
    return line.event("config_error", error="auto_left", key=key, accessor=None, op=op or None, message=armed[2])


# runtime/config.py: DeepSpeedConfig.__init__ (and accelerate utils/deepspeed.py: HfDeepSpeedConfig)
# when the config argument is neither a dict nor an existing file nor base64
_CFG_PATH = compile_later(r"Expected a string path to an existing deepspeed config.*?Received: (.+)$")


@on("Expected a string path to an existing deepspeed config")
def config_path(line: Line, st: StreamState):
    if st.scratch.get("ds_cfg_path"):
        return None
    st.scratch["ds_cfg_path"] = True
    m = _CFG_PATH.search(line.text)
    return line.event("config_error", error="config_path", key="(config file)",
                      path=m.group(1).strip()[:200] if m else None, message=line.text.strip()[-300:])


# runtime/engine.py: DeepSpeedEngine._configure_zero_optimizer - ZeRO 1/2 partition optimizer
# states, so deepspeed.initialize needs an optimizer (from the ds_config or the client)
_ZERO_OPT = compile_later(r"zero stage (\d) requires an optimizer")


@on("requires an optimizer")
def zero_needs_optimizer(line: Line, st: StreamState):
    m = _ZERO_OPT.search(line.text)
    if not m:
        return None
    return line.event("config_error", error="zero_needs_optimizer", key="optimizer", stage=int(m.group(1)),
                      message=line.text.strip()[-300:])


# DeepSpeed 0.19 tries a non-existing path as base64 first: the user sees a binascii.Error from
# base64.urlsafe_b64decode(config) inside DeepSpeedConfig.__init__ instead of the ValueError above.
@on("urlsafe_b64decode(config)")
def config_base64_frame(line: Line, st: StreamState):
    st.scratch["ds_cfg_b64"] = line.lineno
    return None


@on("binascii.Error: ")
def config_base64_error(line: Line, st: StreamState):
    armed = st.scratch.get("ds_cfg_b64")
    if not armed_within(armed, line, 12) or st.scratch.get("ds_cfg_path"):
        return None
    st.scratch["ds_cfg_path"] = True
    return line.event("config_error", error="config_path", key="(config file)", path=None,
                      message=line.text.strip()[-300:])


# A traceback prints each frame's source line under its 'File "..."' line, indented: when the
# message is a literal in that code ("raise ValueError('Duplicate keys ...')", "assert not (...),
# 'bfloat16 and fp16 ...'"), the code line holds the trigger too but is not the message (its
# values are still placeholders); the exception line below it is.
_CODE_ECHO = ("raise ", "assert ", "logger.", "print(", 'f"', "f'", '"', "'")


def code_echo(line: Line) -> bool:
    """A traceback's source line holding a message literal (indented code), not the message."""
    return line.text[:1].isspace() and line.text.lstrip().startswith(_CODE_ECHO)


# runtime/config_utils.py: dict_raise_error_on_duplicate_keys (the JSON has the same key twice)
_DUP = compile_later(r"Duplicate keys in DeepSpeed config: \[([^\]]*)\]")


@on("Duplicate keys in DeepSpeed config: ")
def duplicate_keys(line: Line, st: StreamState):
    m = _DUP.search(line.text)
    if code_echo(line) or not m:
        return None                 # the source line's '{}' is no list of keys: the message follows
    keys = [k.strip(" '\"") for k in m.group(1).split(",")]
    return line.event("config_error", error="duplicate_keys", key=keys[0] if keys else "(config file)",
                      keys=keys, message=line.text.strip()[-300:])


# pydantic: '1 validation error for DeepSpeedZeroConfig' / 'offload_params' /
# '  Extra inputs are not permitted [type=extra_forbidden, ...]' (v2) or
# '  extra fields not permitted (type=value_error.extra)' (v1). The header opens a short
# window; the field line and the reason line that follow fill it.
_SECTIONS = {"DeepSpeedZeroConfig": "zero_optimization", "DeepSpeedFP16Config": "fp16",
             "DeepSpeedBF16Config": "bf16", "CommsLoggerConfig": "comms_logger",
             "DeepSpeedMonitorConfig": "", "DeepSpeedZeroOffloadParamConfig": "zero_optimization.offload_param",
             "DeepSpeedZeroOffloadOptimizerConfig": "zero_optimization.offload_optimizer",
             "DeepSpeedConfigModel": ""}
_VAL_HEAD = compile_later(r"(\d+) validation errors? for (\w+)")
_FIELD = compile_later(r"^\s*([A-Za-z_][\w.]*)\s*$")


@on("validation error for", "validation errors for")
def pydantic_head(line: Line, st: StreamState):
    m = _VAL_HEAD.search(line.text)
    if m:
        st.scratch["ds_pyd"] = {"model": m.group(2), "line": line.lineno, "field": None}
        # the field and reason may follow on the same (joined) line
        rest = line.text[m.end():]
        fm = re.match(r"\s+([A-Za-z_][\w.]*)\s+(.*)", rest)
        if fm:
            st.scratch["ds_pyd"]["field"] = fm.group(1)
            return _pydantic_reason(line, st, fm.group(2))
    return None


@on("Extra inputs are not permitted", "extra fields not permitted", "[type=", "(type=")
def pydantic_reason(line: Line, st: StreamState):
    if "validation error" in line.text:
        return None           # handled by pydantic_head
    return _pydantic_reason(line, st, line.text)


# The field line is a bare identifier with no trigger literal of its own: it is seen only
# when it names a key from KNOWN_KEYS / _FIELD_TRIGGERS (registered below); otherwise the
# finding says which section failed and quotes the reason.
_REASON_KIND = [("Extra inputs are not permitted", "extra_key"), ("extra fields not permitted", "extra_key"),
                ("int_from_float", "not_integer"), ("valid integer", "not_integer"),
                ("int_parsing", "not_integer"), ("Input should be", "bad_value"), ("type=", "bad_value")]

# invented or misplaced keys seen in articles and issues -> (real key, note)
KNOWN_KEYS = {
    "offload_params": ("zero_optimization.offload_param", "the key is offload_param (singular), and it works with ZeRO stage 3 only"),
    "nvme_path": ("zero_optimization.offload_optimizer.nvme_path", "nvme_path belongs inside offload_optimizer / offload_param, next to device: nvme"),
    "fp16_override_modules": ("bf16.enabled", "there is no per-module precision override; use bf16, or torch_autocast"),
    "zero_allowed_param_types": ("zero_allow_untested_optimizer", "no such key; the similar real one is top-level zero_allow_untested_optimizer"),
    "zero_force_param_types": ("zero_force_ds_cpu_optimizer", "no such key; the similar real one is top-level zero_force_ds_cpu_optimizer"),
    "min_loss_scale": ("fp16.min_loss_scale", "min_loss_scale is an integer >= 1 (default 1)"),
    "initial_scale_power": ("fp16.initial_scale_power", "initial_scale_power is an integer (default 16)"),
    "offload_optimizer.device": ("zero_optimization.offload_optimizer.device", "device is one of none, cpu, nvme"),
    "stage": ("zero_optimization.stage", "stage is 0, 1, 2 or 3"),
}


_FIELD_TRIGGERS = ("offload_params", "nvme_path", "fp16_override_modules", "zero_allowed_param_types",
                   "zero_force_param_types", "min_loss_scale", "initial_scale_power", "offload_optimizer",
                   "offload_param", "cpu_offload_params", "reduce_bucket_size", "allgather_bucket_size",
                   "stage3_", "overlap_comm", "log_dir", "contiguous_gradients", "sub_group_size")


@on(*_FIELD_TRIGGERS)
def pydantic_field(line: Line, st: StreamState):
    head = st.scratch.get("ds_pyd")
    m = _FIELD.match(line.text)
    if head and armed_within(head["line"], line, 2):
        if m:
            head["field"] = m.group(1)
    elif m:
        # a paste that starts at the field line (its header cut off): the reason line follows
        st.scratch["ds_pyd_field"] = (line.lineno, m.group(1))
    return None


# The field line itself ('enable', 'offload_param.pin_memroy': pydantic's error loc, joined by dots)
# holds no literal of its own: it is handed over as the one line right after the header or after
# the previous error's reason line (a continuation by any identifier character, not chained).
_IDENT_CHARS = tuple("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


# A headless report pasted in a Markdown fence starts at the line right after the '```': a bare
# identifier there is the field of the reason line that follows (remembered for _headless).
@on("validation error for", "validation errors for", "Extra inputs are not permitted",
    "extra fields not permitted", "[type=", "(type=", "errors.pydantic.dev/", "```", continuation=_IDENT_CHARS,
    chain=False)
def pydantic_field_line(line: Line, st: StreamState):
    head = st.scratch.get("ds_pyd")
    if head is None and line.text[:1] not in ("`", " ", "\t"):
        m = _FIELD.match(line.text)
        if m and not line.text.startswith("```"):
            st.scratch["ds_pyd_field"] = (line.lineno, m.group(1))
        return None
    if head and "For further information visit https://errors.pydantic.dev/" in line.text:
        if head.get("field") is None and armed_within(head["line"], line, 2):
            head["line"] = line.lineno       # pydantic 2's link line closes an error: the next field follows it
        return None
    if head and head.get("field") is None and armed_within(head["line"], line, 1):
        m = _FIELD.match(line.text)
        if m:
            head["field"] = m.group(1)
    return None


# pydantic 2's error line: '  <msg> [type=<kind>, input_value=<repr>, input_type=<type>]' (pydantic_core
# ValidationError.__str__): with no header above it (the paste starts below it), still a config error
_PYD2_LINE = compile_later(r"\[type=\w+, input_value=.*, input_type=\w+\]")
# pydantic 1's: '  <msg> (type=<value|type>_error.<code>[; <ctx>])' (pydantic/error_wrappers.py display_errors,
# _display_error_type_and_ctx; DeepSpeed before 0.10 validated with pydantic 1): 'extra fields not
# permitted (type=value_error.extra)' under its field line, the header cut off
_PYD1_LINE = compile_later(r"^\s*\S.* \(type=(?:type|value)_error(?:\.\w+)+(?:; [^)]*)?\)\s*$")


def _pydantic_reason(line: Line, st: StreamState, text: str):
    head = st.scratch.get("ds_pyd")
    if not head or not armed_within(head["line"], line, 6, same_line=True):
        head = _headless(line, st, text)
        if head is None:
            return None
    kind = next((k for frag, k in _REASON_KIND if frag in text), None)
    if kind is None:
        return None
    field = head.get("field")
    if field and head["model"] == _NO_HEADER:
        head["model"] = _headless_model(field, _extra(text))    # the next error's field, its header cut
    section = _SECTIONS.get(head["model"], "")
    leaf = field or "?"
    key = f"{section}.{leaf}" if section and field else (field or section or "?")
    known = KNOWN_KEYS.get(leaf) or KNOWN_KEYS.get(field or "")
    m = re.search(r"input_value=([^,\]]+)", text)
    data = dict(error=f"pydantic_{kind}", key=key, field=field, model=head["model"],
                message=text.strip()[:300], input_value=m.group(1) if m else None)
    if known:
        data.update(real_key=known[0], note=known[1])
    elif head.get("not_ds") and kind != "extra_key":     # (an extra key's report says so itself)
        data.update(not_ds_key=True, note=f"'{field}' is not a key of DeepSpeed's config models: this report "
                                          f"may come from another library's settings (the training script's "
                                          f"or front-end's arguments, vLLM's engine)")
    elif kind == "extra_key" and field and section:
        # a nested field comes as its dotted path ('offload_param.pin_memroy'): its own sub-section
        sub, _, leaf_name = field.rpartition(".")
        where = f"{section}.{sub}" if sub else section
        near = _misspelt(where, leaf_name)
        if near:
            data.update(real_key=f"{where}.{near}", note="It looks like a misspelling")
    if kind == "extra_key" and field:
        data["patch"] = nested(key, None)             # remove the key DeepSpeed rejects
        if not known and data.get("real_key") and data["input_value"] is not None:
            value = _json_value(data["input_value"])
            if value is not None:                     # and write its value under the real name
                from ...fixes import combine_patches
                data["patch"] = combine_patches(data["patch"], nested(data["real_key"], value))
                data["renamed"] = True
    elif kind == "not_integer" and leaf == "min_loss_scale":
        data["patch"] = nested(key, 1)
    head["line"] = line.lineno          # several errors follow one header
    head["field"] = None
    return line.event("config_error", **data)


_NO_HEADER = "(its header is not in the log)"


def _headless_model(field: str, extra: bool) -> str:
    """The model of a headless report's field: the section of DeepSpeed's config whose keys hold the
    field's first part (offload_param -> zero_optimization), or, for an extra key (`extra`: the
    model has no such field), whose key it misspells. A bad value of a field no DeepSpeed section
    has comes from another model (another library's settings: _ds_key)."""
    from ...config.catalogue import snapshot_catalogue
    cat = snapshot_catalogue()
    first = field.split(".")[0]
    top = cat.section(())
    if not top or first in top.keys or first in top.children:
        return _NO_HEADER
    for sec in ("zero_optimization", "fp16", "bf16"):
        s = cat.section((sec,))
        if s and (first in s.keys or first in s.children):
            return next(k for k, v in _SECTIONS.items() if v == sec)
    # an unknown key (an extra one): the one section holding a key it misspells
    # ('zero_quantized_gradient' -> zero_optimization), not the top level, where a patch
    # removing it would remove nothing
    near = [sec for sec in ("", "zero_optimization", "fp16", "bf16")
            if extra and "." not in field and (_misspelt(sec, field) if sec else _misspelt_top(field))]
    if len(near) == 1 and near[0]:
        return next(k for k, v in _SECTIONS.items() if v == near[0])
    return _NO_HEADER


def _extra(text: str) -> bool:
    return "Extra inputs are not permitted" in text or "extra fields not permitted" in text


def _headless(line: Line, st: StreamState, text: str) -> dict | None:
    """The header of a pydantic report whose header line is not in the log (pasted from the field
    line or the reason line on): the model is unknown; the section is the one of DeepSpeed's config
    whose keys hold the field's first part (offload_param -> zero_optimization)."""
    if st.scratch.get("ds_pyd") is not None or not (_PYD2_LINE.search(text) or _PYD1_LINE.search(text)):
        return None
    at = st.scratch.pop("ds_pyd_field", None)
    field = at[1] if armed_within(at, line, 1) else None
    model = _headless_model(field, _extra(text)) if field else _NO_HEADER
    head = {"model": model, "line": line.lineno - 1, "field": field}
    if field and not _ds_key(field):
        head["not_ds"] = True
    st.scratch["ds_pyd"] = head
    return head


def _ds_key(field: str) -> bool:
    """Is `field` (pydantic's dotted loc) a key of DeepSpeed's config models, at the top level or in
    one of its sections (config/catalogue.py: the installed deepspeed's models, or their snapshot)?"""
    from ...config.catalogue import snapshot_catalogue
    top = snapshot_catalogue().section(())
    if top is None:
        return True
    parts = field.split(".")
    for sec in (top, *top.children.values()):
        s: object = sec
        for p in parts[:-1]:
            s = s.children.get(p) if s is not None else None
        if s is not None and (parts[-1] in s.keys or parts[-1] in s.children):
            return True
    return False


_UNEXPECTED = compile_later(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'|"
                         r"__init__\(\) got an unexpected keyword argument '(\w+)'")
_SCHEDULERS = {"LRRangeTest", "OneCycle", "WarmupLR", "WarmupDecayLR", "WarmupCosineLR"}


def _valid_params(cls: str | None) -> str | None:
    """The real params of a DeepSpeed scheduler, from the one catalogue the doctor uses too."""
    if cls not in _SCHEDULERS:
        return None
    from ...config.schedulers import FALLBACK     # the checked table, no deepspeed import here
    params = FALLBACK.get(cls)
    return ", ".join(p for p in params if p != "last_batch_iteration") if params else None


# The keyword arguments of DeepSpeed's optimizers and the torch ones they fall back to (ops/adam/fused_adam.py
# FusedAdam, ops/adam/cpu_adam.py DeepSpeedCPUAdam, ops/lamb, ops/lion, torch.optim.AdamW / SGD / Adagrad).
_OPTIMIZER_PARAMS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "bias_correction", "adam_w_mode", "adamw_mode",
                     "momentum", "dampening", "nesterov", "lr_decay", "max_coeff", "min_coeff", "fp32_optimizer_states")


@on("got an unexpected keyword argument")
def unexpected_kwarg(line: Line, st: StreamState):
    m = _UNEXPECTED.search(line.text)
    if not m:
        return None
    cls = m.group(1)
    arg = m.group(2) or m.group(3)
    if cls in _SCHEDULERS or (cls and cls.endswith("LR")):
        section = "scheduler"
    elif cls and ("Adam" in cls or "Lamb" in cls or "Lion" in cls or "SGD" in cls or "Adagrad" in cls or "Muon" in cls):
        section = "optimizer"
    else:
        return None           # some other function: not a ds_config key
    patch = nested(f"{section}.params.{arg}", None)
    real = None
    if section == "optimizer":     # a misspelt parameter keeps its value under the real name
        import difflib
        real = next(iter(difflib.get_close_matches(arg, _OPTIMIZER_PARAMS, n=1, cutoff=0.75)), None)
    return line.event("config_error", error=f"{section}_param", key=f"{section}.params.{arg}", cls=cls,
                      param=arg, valid_params=_valid_params(cls), message=line.text[-300:],
                      patch=patch, real_param=real)


# runtime/engine.py _scheduler_from_config: `scheduler(optimizer, **scheduler_params)` with a required
# argument of DeepSpeed's scheduler left out ("WarmupDecayLR.__init__() missing 1 required positional
# argument: 'total_num_steps'", a real run here).
_SCHED_MISSING = compile_later(r"TypeError: (\w+)\.__init__\(\) missing \d+ required positional arguments?: '(\w+)'")


@on("required positional argument")
def scheduler_missing_param(line: Line, st: StreamState):
    m = _SCHED_MISSING.search(line.text)
    if not m or m.group(1) not in _SCHEDULERS or not st.once(("scheduler_missing_param",)):
        return None
    return line.event("config_error", error="scheduler_missing_param", key=f"scheduler.params.{m.group(2)}",
                      cls=m.group(1), param=m.group(2), message=line.text.strip()[-300:])


_BAD_SCHED = compile_later(r"DeepSpeed does not recognize LR scheduler (\w+)")


@on("DeepSpeed does not recognize LR scheduler")
def bad_scheduler(line: Line, st: StreamState):
    if code_echo(line):
        return None
    m = _BAD_SCHED.search(line.text)
    v = m.group(1) if m else None
    # a misspelling of one of DeepSpeed's own (its check is case-sensitive): the closest one
    lower = {s.lower(): s for s in _SCHEDULERS}
    import difflib
    close = difflib.get_close_matches(v.lower(), list(lower), n=1, cutoff=0.85) if v else []
    real = lower[close[0]] if close else None
    return line.event("config_error", error="unknown_scheduler", key="scheduler.type", value=v, suggestion=real,
                      message=line.text[-300:])


_BAD_OPT = compile_later(r"(\w+) is not a supported DeepSpeed Optimizer")


@on("is not a supported DeepSpeed Optimizer")
def bad_optimizer(line: Line, st: StreamState):
    if code_echo(line):
        return None
    m = _BAD_OPT.search(line.text)
    v = m.group(1) if m else None
    removed = v in ("OneBitAdam", "ZeroOneAdam", "OneBitLamb")
    real = None
    if v and not removed:         # a misspelt name: the closest of DeepSpeed's own (the doctor's lint does the same)
        import difflib
        from ...config.lint import DS_OPTIMIZERS_FALLBACK
        real = next(iter(difflib.get_close_matches(v.lower(), DS_OPTIMIZERS_FALLBACK, n=1, cutoff=0.6)), None)
    return line.event("config_error", error="unknown_optimizer", key="optimizer.type", value=v, removed=removed,
                      suggestion=real, patch={"optimizer": {"type": real}} if real else None, message=line.text[-300:])


@on("bfloat16 and fp16 modes cannot be simultaneously enabled")
def both_precisions(line: Line, st: StreamState):
    if code_echo(line):
        return None
    return line.event("config_error", error="bf16_and_fp16", key="fp16.enabled", message=line.text[-300:])


@on("'max_grad_norm' is not supported as an optimizer parameter")
def max_grad_norm(line: Line, st: StreamState):
    if "WARNING" in line.text and st.scratch.get("ds_mgn"):
        return None
    st.scratch["ds_mgn"] = True       # warned once at config parse, raised again by the engine
    return line.event("config_error", error="max_grad_norm", key="optimizer.params.max_grad_norm",
                      message=line.text[-300:])


# runtime/engine.py: DeepSpeedEngine._configure_optimizer raises ZeRORuntimeException when ZeRO-Offload
# (offload_optimizer.device cpu/nvme) gets a client optimizer that is not DeepSpeedCPUAdam/DeepSpeedCPULion
# and zero_force_ds_cpu_optimizer is true (its default, runtime/constants.py).
_CLIENT_OPT = compile_later(r"client provided optimizer \(<class '([\w.]+)")


@on("You are using ZeRO-Offload with a client provided optimizer")
def client_optimizer_offload(line: Line, st: StreamState):
    if not st.once(("client_optimizer_offload",)):
        return None                       # every rank raises it; one finding
    m = _CLIENT_OPT.search(line.text)
    return line.event("config_error", step=st.step_of(line.rank), error="client_optimizer_offload",
                      key="zero_force_ds_cpu_optimizer", cls=m.group(1) if m else None, engine_refused=True,
                      message=line.text.strip()[-300:])


# runtime/engine.py: DeepSpeedEngine._load_zero_checkpoint raises ZeRORuntimeException when the
# ZeRO optimizer states of a checkpoint were saved with another data-parallel world size:
# 'The checkpoint being loaded used a DP world size of {saved} but the current world size is
# {now}. Automatic adjustment of ZeRO's optimizer state partitioning with a new world size is
# not currently supported.'
_CKPT_DP = compile_later(r"used a DP world size of (\d+) but the current world size is (\d+)")


@on("The checkpoint being loaded used a DP world size of")
def checkpoint_world_size(line: Line, st: StreamState):
    if not st.once(("checkpoint_dp_world_size",)):
        return None                       # every rank raises it; one finding
    m = _CKPT_DP.search(line.text)
    return line.event("config_error", step=st.step_of(line.rank), error="checkpoint_dp_world_size",
                      key="checkpoint.load_universal", saved=int(m.group(1)) if m else None,
                      now=int(m.group(2)) if m else None, message=line.text.strip()[-300:])


# runtime/engine.py _checkpoint_tag_validation: save_checkpoint's tag hashed and compared across the ranks;
# '[rank=N] The checkpoint tag name '{tag}' is not consistent across all ranks. ...' is a WARNING under
# checkpoint.tag_validation "WARN" (the default) and the run goes on, each rank's part in another directory (run
# here on 2 ranks); under "FAIL" the same words are an AssertionError, which the traceback reader reports.
_TAG_MISMATCH = compile_later(r"\[rank=(\d+)\] The checkpoint tag name '([^']*)'")


@on("is not consistent across all ranks")
def checkpoint_tag_mismatch(line: Line, st: StreamState):
    if "WARNING" not in line.text or not st.once(("ckpt_tag_mismatch",)):
        return None                       # the assert's line is the traceback's; every rank warns: one finding
    m = _TAG_MISMATCH.search(line.text)
    return line.event("config_error", step=st.step_of(line.rank), rank=int(m.group(1)) if m else None,
                      error="ckpt_tag_mismatch", key="checkpoint.tag_validation", tag=m.group(2) if m else None,
                      tag_rank=int(m.group(1)) if m else None,
                      message=line.text.strip()[-300:])


# ---------------------------------------------------------------- op build / environment
_JIT = compile_later(r"Unable to JIT load the (\w+) op due to (.*)")
_BUILD = compile_later(r"Error building extension '(\w+)'")
_GLIBCXX = compile_later(r"(GLIBCXX_[\d.]+|CXXABI_[\d.]+)' not found")
_CUDA_MISMATCH = compile_later(r"Installed CUDA version ([\d.]+) does not match the version torch was compiled with ([\d.]+)")


def _env(line: Line, st: StreamState, error: str, op: str | None = None, **data):
    if code_echo(line):           # `assert cuda_home is not None, "CUDA_HOME does not exist..."`: the message follows
        return None
    seen = st.scratch.setdefault("ds_env_seen", set())
    k = (error, op, line.rank)
    if k in seen or (error == "op_build" and ("op_build", "unnamed", line.rank) in seen):
        return None               # the same build failure is printed by every retry (or, named, after ninja's stop)
    seen.add(k)
    if error == "op_build":
        said = st.scratch.get("compiler_error", {}).pop(line.rank, None)
        if said:                  # the compiler's own words: why the build failed
            data.update(compiler_line=said[0], compiler_error=said[1])
    return line.event("env_error", error=error, op=op, message=line.text[-300:], **data)


@on("Unable to JIT load the")
def jit_load(line: Line, st: StreamState):
    m = _JIT.search(line.text)
    if not m:
        return None
    why = "ninja" if "ninja" in m.group(2) else "op_build"
    return _env(line, st, why, m.group(1))


# torch 2.13's message carries ninja's output after it ("Error building extension 'cpu_adam': [1/3] c++ ..." then the
# compiler's lines, then 'ninja: build stopped'; run here): the compiler's words come after the head, so the
# event waits for ninja's stop (or the end of the input) to carry them.
_BUILD_PENDING = "op_build.pending"


@on("Error building extension '")
def build_error(line: Line, st: StreamState):
    m = _BUILD.search(line.text)
    op = m.group(1) if m else None
    if m and line.text[m.end():].startswith(": [") and not code_echo(line):
        st.scratch.setdefault(_BUILD_PENDING, {}).setdefault(line.rank, (line, op))
        return None
    return _env(line, st, "op_build", op)


def finish(st: StreamState):
    """End of input: a build failure whose ninja output was cut before ninja's stop."""
    for line, op in (st.scratch.pop(_BUILD_PENDING, None) or {}).values():
        ev = _env(line, st, "op_build", op)
        if ev is not None:
            yield ev


@on("' not found")
def glibcxx(line: Line, st: StreamState):
    m = _GLIBCXX.search(line.text)
    if not m:
        return None
    op = re.search(r"/(\w+)\.so", line.text)
    return _env(line, st, "glibcxx", op.group(1) if op else None, symbol=m.group(1))


@on("CUDA_HOME does not exist")
def cuda_home(line: Line, st: StreamState):
    return _env(line, st, "cuda_home")


@on("does not match the version torch was compiled with")
def cuda_mismatch(line: Line, st: StreamState):
    if "accepting this combination" in line.text:
        return None
    m = _CUDA_MISMATCH.search(line.text)
    return _env(line, st, "cuda_mismatch", None, system_cuda=m.group(1) if m else None,
                torch_cuda=m.group(2) if m else None)


# The compiler's own error in an op build's ninja output (gcc/nvcc: 'fatal error: {file}: No such
# file or directory'; clang: "fatal error: '{file}' file not found"): a development header the
# build needs is not installed (CUDA toolkit headers, Python.h).
_HEADER = compile_later(r"fatal error: '?([\w./+-]+\.(?:h|hpp|cuh))'?(?:: No such file or directory| file not found)")
_CUDA_HEADER = compile_later(r"^(?:cuda|cub|cublas|cufft|curand|cusparse|cusolver|nv|thrust/|cutlass/)", re.I)


@on("fatal error: ")
def missing_header(line: Line, st: StreamState):
    m = _HEADER.search(line.text)
    if not m:
        return None
    header = m.group(1)
    kind = "cuda" if _CUDA_HEADER.match(header) else "python" if header.startswith("Python") else "other"
    return _env(line, st, "missing_header", None, header=header, header_kind=kind)


# An op build's ninja output (torch utils/cpp_extension.py _run_ninja_build runs `ninja -v`): each
# compile command names the op (-DTORCH_EXTENSION_NAME=), the compiler prints its error
# (gcc/clang '{file}:{line}:{col}: error: ...', nvcc's front end '{file}({line}): error: ...', the
# nvcc driver 'nvcc fatal   : ...', the linker '/usr/bin/ld: cannot find -l{lib}', '{obj}: undefined
# reference to ...'), and ninja ends with 'build stopped: subcommand failed.'. The
# first compiler error is kept and quoted with the build failure: it is the line that says why
# (an excerpt may end before torch's 'Error building extension' line, so ninja's stop reports it).
# GNU as names no line ('{file}.s: Fatal error: can't write N bytes to section .text of x.o: 'No space left on
# device'', run here with TORCH_EXTENSIONS_DIR on a full tmpfs); ninja's /bin/sh names a compiler it cannot
# run ('/bin/sh: 1: /usr/local/bin/g++-13: not found', run here with CXX set to a missing compiler).
_COMPILER_ERROR = compile_later(r"^(?:\S+:\d+(?::\d+)?: (?:fatal )?error: |\S+\(\d+\): (?:catastrophic )?error: |nvcc fatal\s*: "
                                r"|\S*\bld(?:\.\w+)?: (?:cannot find|error)|\S+: undefined reference to "
                                r"|\S+\.s: Fatal error: |/bin/(?:ba)?sh: (?:\d+: |line \d+: )?\S+: (?:command )?not found)")
_EXTENSION_NAME = compile_later(r"-DTORCH_EXTENSION_NAME=(\w+)|^Building extension module (\w+)\.\.\.")


@on(": error: ", "): error: ", "fatal error: ", "nvcc fatal", "ld: cannot find", "ld: error", "undefined reference to ",
    ": Fatal error: ", ": not found", ": command not found")
def compiler_error(line: Line, st: StreamState):
    said = st.scratch.setdefault("compiler_error", {})
    if line.rank not in said and len(said) < 64 and _COMPILER_ERROR.search(line.text):
        said[line.rank] = (line.lineno, clip(line.text.strip(), MAX_EVIDENCE_TEXT))
    return None


@on("-DTORCH_EXTENSION_NAME=", "Building extension module ")
def extension_name(line: Line, st: StreamState):
    m = _EXTENSION_NAME.search(line.text)
    if m:
        st.scratch["extension_name"] = m.group(1) or m.group(2)
    return None


@on("ninja: build stopped: subcommand failed.")
def ninja_stopped(line: Line, st: StreamState):
    pending = st.scratch.get(_BUILD_PENDING, {}).pop(line.rank, None)
    if pending is not None:           # torch's 'Error building extension' head before this output: its line
        return _env(pending[0], st, "op_build", pending[1])
    op = st.scratch.get("extension_name")
    ev = _env(line, st, "op_build", op)
    if ev is not None and op is None:
        st.scratch["ds_env_seen"].add(("op_build", "unnamed", line.rank))
    return ev


# torch utils/cpp_extension.py _get_build_directory: os.makedirs(<TORCH_EXTENSIONS_DIR>/<op>) before any compile.
# A root the job may not write fails there (run here with DeepSpeedCPUAdam: TORCH_EXTENSIONS_DIR on a read-only
# tmpfs, "OSError: [Errno 30] Read-only file system: '/tmp/x/cpu_adam'"; a regular file, "NotADirectoryError:
# [Errno 20] Not a directory: '/tmp/x/cpu_adam'"), then DeepSpeed's "requires the cpu_adam op, which failed to
# build/load". The frame arms the exception line that follows it.
_ERRNO = compile_later(r"\[Errno (\d+)\] ([^:']+?)(?:: '([^']*)')?\s*$")


@on("in _get_build_directory")
def build_directory_frame(line: Line, st: StreamState):
    st.scratch.setdefault("ext_dir_frame", {})[line.rank] = line.lineno
    return None


@on("[Errno ")
def build_directory_error(line: Line, st: StreamState):
    armed = st.scratch.get("ext_dir_frame", {})
    if not armed_within(armed.get(line.rank), line, 6):
        return None
    del armed[line.rank]
    m = _ERRNO.search(line.text)
    if not m:
        return None
    path = m.group(3) or ""
    op = path.rstrip("/").rsplit("/", 1)[-1] or None
    return _env(line, st, "ext_dir", op, errno=int(m.group(1)), reason=m.group(2).strip(),
                root=path.rstrip("/").rsplit("/", 1)[0] if "/" in path else None)


@on("object has no attribute 'ds_opt_adam'")
def ds_opt_adam(line: Line, st: StreamState):
    return _env(line, st, "op_build", "cpu_adam", downstream=True)


@on("Ninja is required to load C++ extensions")
def ninja_missing(line: Line, st: StreamState):
    return _env(line, st, "ninja")


# Per-step metric lines are sampled when steady (sources/recogniser.py `steady`): none of them
# when a value is nan/inf. A step line's `skipped=` is the run's running total, so it stays
# non-zero after the first fp16 overflow: each skipped step has its own OVERFLOW line, which
# is always read, and a sampled step line still carries the right total.
# The anchor of the throughput group is printed once per line (the fast path counts it):
# 'SamplesPerSec=' is there twice since v0.7 (RunningAvg..., Curr...). Lines of the older
# layouts ('{epoch}/{step}, SamplesPerSec=' and v0.7's '{epoch}/{step}, RunningAvg...') are
# never steady: all of them are read (deepspeed/utils/timer.py: ThroughputTimer.stop).
_OLD_THROUGHPUT = compile_later(rb"[0-9]/[0-9]+, (?:RunningAvg)?SamplesPerSec=")
# the hybrid engine's line (DeepSpeed-Chat's RLHF step, runtime/hybrid_engine.py) has no global_step and
# another anchor ('|CurSamplesPerSec='): never steady, so the fast path must hand it over too
_HYBRID_THROUGHPUT = compile_later(rb"\|CurSamplesPerSec=")


def _current_throughput_line(raw: bytes) -> bool:
    return b"/global_step=" in raw and no_nonfinite(raw)


STEADY_GROUPS = (
    steady("ds_timers", "time (ms) |"),
    steady("ds_throughput", "SamplesPerSec=", check=_current_throughput_line, anchor="CurrSamplesPerSec=",
           anomalies=(*NONFINITE_ANOMALIES, (_OLD_THROUGHPUT.pattern, 0), (_HYBRID_THROUGHPUT.pattern, 0))),
    steady("ds_step", ", skipped="),
)


def _misspelt(section: str, field: str) -> str | None:
    """The real key of `section` closest to `field` (a typo DeepSpeed's pydantic models refuse), from the
    checked key catalogue of the installed DeepSpeed's config models (its snapshot: no deepspeed import)."""
    import difflib

    from ...config.catalogue import snapshot_catalogue
    sec = snapshot_catalogue().section(tuple(section.split(".")))
    m = difflib.get_close_matches(field, sorted(sec.keys), n=1, cutoff=0.8) if sec and sec.keys else []
    return m[0] if m else None


def _misspelt_top(field: str) -> str | None:
    """The top-level key of DeepSpeed's config closest to `field` (as _misspelt for a section)."""
    import difflib

    from ...config.catalogue import snapshot_catalogue
    top = snapshot_catalogue().section(())
    keys = sorted(set(top.keys) | set(top.children)) if top else []
    m = difflib.get_close_matches(field, keys, n=1, cutoff=0.8)
    return m[0] if m else None


def _json_value(text: str):
    import json
    try:
        return json.loads(text.strip().strip("'\""))
    except ValueError:
        pass
    # pydantic prints input_value as a Python repr (True, False, None, 'cpu'): read it as a literal
    import ast
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, (bool, int, float, str)) or value is None else None
