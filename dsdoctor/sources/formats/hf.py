"""Recognisers: HF Transformers Trainer (transformers/trainer_callback.py: ProgressCallback.on_log,
transformers/trainer.py: Trainer.log).

Metric dicts in both forms: 4.x numbers ({'loss': 2.345, 'grad_norm': nan, ...}; a float NaN
prints as a bare `nan`, so ast.literal_eval cannot read them) and 5.x strings
({'loss': '2.345', 'grad_norm': 'inf', ...}). The DeepSpeed/TrainingArguments mismatch
error lists one '- ds key=value vs hf key=value' line per mismatch.
"""
from __future__ import annotations

import math
import re

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on, steady
from .deepspeed import code_echo, nested, num, set_step

_PAIR = compile_later(r"['\"]([\w/.\-]+)['\"]: ['\"]?([^,'\"}]*)['\"]?")
# Metrics that are training quantities: a NaN/Inf in any of them means the loss computation
# diverged (TRL's DPO/KTO/ORPO/PPO trainers log 'rewards/chosen', 'logps/rejected',
# 'logits/chosen', 'kl', ... next to 'loss', and may log 'loss': 0.0 while those are nan).
_TRAINING_METRIC = compile_later(r"(?i)loss|reward|logp|logit|(?:^|/|_)kl(?:$|/|_)|entropy|advantage")


# The Trainer prints a metric dict every `logging_steps`: most of an HF log, so the dicts
# with a loss are sampled like DeepSpeed's step lines when all values are finite.
_LOSS, _GRAD_NORM = "{'loss': ", "'grad_norm': "
STEADY_GROUPS = (steady("hf_metrics", _LOSS, _GRAD_NORM),)


_RL_KEYS = ("reward", "kl", "reward_std")
_RL_PREFIXES = ("rewards/", "objective/", "policy/")


@on(_LOSS, "{'train_runtime': ", "{'eval_loss': ", _GRAD_NORM, "'rewards/chosen': ",
    # any metric dict (TRL/PPO 'objective/kl', JSON lines) with a non-finite value
    "': nan", "': inf", "': -inf", "\": NaN", "\": Infinity", "\": -Infinity", "\": nan", "\": inf")
def metrics(line: Line, st: StreamState):
    t = line.text
    i = t.find("{'")
    if i < 0:
        i = t.find('{"')
    if i < 0:
        return None
    d = {k: v.strip() for k, v in _PAIR.findall(t[i:t.find("}", i) + 1 if "}" in t[i:] else len(t)])}
    step = st.step_of(line.rank)
    if t.startswith(_RAY_REPORT):
        step = _ray_report_index(line, st, t) or step
    out = []
    event = line.event
    vals = {k: num(v) for k, v in d.items()}     # each value read once (a dict per parsed line)
    # grad_norm first: the detector pairs a non-finite grad norm with the loss of the same log
    if (v := vals.get("grad_norm")) is not None:
        out.append(event("grad_norm", step, value=v))
    for key in ("loss", "eval_loss"):
        if (v := vals.get(key)) is not None:
            # a Trainer row (logging_nan_inf_filter logs a NaN as 0.0): detect/nonfinite.py reads a sudden
            # 'loss' 0.0 whether a grad_norm is logged (4.46: a finite one) or not (4.36); not an RL
            # trainer's row (TRL's GRPO/PPO log 'reward', 'kl', 'rewards/...'), whose policy loss is 0.0
            # to the printed digits on many healthy steps (group-normalised advantages, beta 0)
            sudden_ok = key == "loss" and not any(k in _RL_KEYS or k.startswith(_RL_PREFIXES) for k in d)
            # TRL's GRPO/RLOO: 'frac_reward_zero_std' 1 says every prompt's completions got the same reward, so
            # every advantage is 0 and (beta 0, the default) so are the loss and its gradient: no NaN filtered
            extra = {"no_advantage": True} if key == "loss" and vals.get("frac_reward_zero_std") == 1 else {}
            out.append(event("loss", step, value=v, name=key, epoch=vals.get("epoch"),
                             grad_norm_logged=("grad_norm" in d) if sudden_ok else None, **extra))
    for key, v in vals.items():
        if key not in ("loss", "eval_loss", "grad_norm") and v is not None and not math.isfinite(v) \
                and _TRAINING_METRIC.search(key) and not _loss_stands(vals, key):
            out.append(event("loss", step, value=v, name=key, epoch=vals.get("epoch")))
            break                       # the first one names the problem; the others are echoes
    if (v := vals.get("learning_rate")) is not None:
        out.append(event("lr", step, value=v))
    if (v := vals.get("train_samples_per_second")) is not None:
        out.append(event("throughput", step, samples_per_sec=v, summary=True))
    return out


def _loss_stands(vals: dict, key: str) -> bool:
    """Whether the row's own loss (eval_loss for an eval_ metric) is a finite, non-zero number: then a NaN in a
    side column is that column's own emptiness, not a divergence. TRL's GRPO/RLOO log a reward function's
    mean with torch.nanmean over the rewards it gave (grpo_trainer.py _generate_and_score_completions): a
    function that returned None for every sample of the batch (a multi-task set, a reward for another task)
    logs 'rewards/<func>/mean': nan beside a finite 'reward' and 'loss'; ms-swift logs 'reward_std': nan for
    one sample. A real divergence makes the loss itself nan, or 0.0 (the Trainer's logging_nan_inf_filter)."""
    loss = vals.get("eval_loss" if key.startswith("eval_") else "loss")
    return loss is not None and math.isfinite(loss) and loss != 0.0


# transformers integrations/deepspeed.py: HfTrainerDeepSpeedConfig.fill_match appends
# f"- ds {ds_key_long}={ds_val} vs hf {hf_key}={hf_val}", where hf_key may be a computed value
# such as "num_training_steps (calculated)" or "train_batch_size (calculated)".
# accelerate's DeepSpeedPlugin.fill_match (accelerate/utils/dataclasses.py) says the same of the
# arguments given to the Accelerator / accelerate launch: f"- ds {ds_key_long}={ds_val} vs arg
# {ds_key_long}={kwargs[ds_key_long]}" under 'Please correct the following DeepSpeed config values
# that mismatch kwargs  values:'.
_MISMATCH = compile_later(r"- ds ([\w.]+)=(\S+) vs (hf|arg) ([\w.]+(?: \(calculated\))?)=(\S+)")


@on("mismatch TrainingArguments values", "values that mismatch kwargs")
def mismatch_head(line: Line, st: StreamState):
    st.scratch["hf_mismatch"] = line.lineno
    return [_mismatch(line, m) for m in _MISMATCH.finditer(line.text)]


@on("- ds ")
def mismatch_item(line: Line, st: StreamState):
    head = st.scratch.get("hf_mismatch")
    if not armed_within(head, line, 40, same_line=True) or "mismatch TrainingArguments" in line.text \
            or "values that mismatch kwargs" in line.text:
        return None
    m = _MISMATCH.search(line.text)
    if not m:
        return None
    st.scratch["hf_mismatch"] = line.lineno
    return _mismatch(line, m)


def _mismatch(line: Line, m: re.Match):
    ds_val, hf_val = num(m.group(2)), num(m.group(5))
    return line.event("config_error", error="hf_mismatch", key=m.group(1), hf_key=m.group(4),
                      against="accelerate" if m.group(3) == "arg" else "trainer",
                      ds_value=m.group(2) if ds_val is None else ds_val,
                      hf_value=m.group(5) if hf_val is None else hf_val,
                      numbers={"ds": ds_val, "hf": hf_val}, message=m.group(0),
                      patch=nested(m.group(1), "auto"))


# ---------------------------------------------------------------- integration errors
# ValueErrors raised by transformers / accelerate when the ds_config and the script disagree.
# Each literal is the stable part of the message at its raise site (the wording around it
# changed between versions); the rule for `error` gives the fix.
_INTEGRATION_ERRORS: tuple[tuple[str, str, str], ...] = (
    # transformers modeling_utils.py: PreTrainedModel.from_pretrained (4.2x-4.4x):
    #   "DeepSpeed Zero-3 is not compatible with `low_cpu_mem_usage=True` or with passing a `device_map`."
    # transformers integrations/accelerate.py: check_and_set_device_map (5.x):
    #   "DeepSpeed Zero-3 is not compatible with passing a `device_map`."
    ("DeepSpeed Zero-3 is not compatible with", "zero3_device_map", "zero_optimization.stage"),
    # transformers deepspeed.py: deepspeed_init (4.2-4.8, relaxed by huggingface/transformers#12690)
    ("ZeRO Offload can only work with DeepSpeed optimizers", "client_optimizer_offload",
     "zero_force_ds_cpu_optimizer"),
    # transformers integrations/deepspeed.py: HfTrainerDeepSpeedConfig.trainer_config_finalize
    ("not possible to automatically fill out the following `auto` entries", "auto_hidden_size",
     "zero_optimization.reduce_bucket_size"),
    # accelerate accelerator.py: Accelerator._prepare_deepspeed (0.1x-1.x; the comma after
    # "DeepSpeed" came later, so the literal starts after it)
    ("requires you to pass at least one of training or evaluation dataloaders", "accelerate_micro_batch",
     "train_micro_batch_size_per_gpu"),
    ("has `None` as batch size. Please set an integer value in `train_micro_batch_size_per_gpu`",
     "accelerate_micro_batch", "train_micro_batch_size_per_gpu"),
    ("You cannot specify an optimizer in the config file and in the code at the same time",
     "accelerate_optimizer_twice", "optimizer"),
    ("You cannot specify a scheduler in the config file and in the code at the same time",
     "accelerate_scheduler_twice", "scheduler"),
    ("You cannot create a `DummyOptim` without specifying an optimizer in the config file",
     "accelerate_dummy_optim", "optimizer"),
    # transformers trainer.py: Trainer.__init__ (TrainingArguments auto_find_batch_size under ZeRO-3)
    ("`auto_find_batch_size` isn't supported yet with DeepSpeed Zero-3", "auto_find_batch_size_zero3",
     "zero_optimization.stage"),
)
_AUTO_KEYS = compile_later(r"auto` entries in the DeepSpeed config file: \[([^\]]*)\]")


@on(*(lit for lit, _, _ in _INTEGRATION_ERRORS))
def integration_error(line: Line, st: StreamState):
    t = line.text
    for lit, err, key in _INTEGRATION_ERRORS:
        if lit in t:
            break
    else:
        return None
    if code_echo(line):                  # `raise ValueError("ZeRO Offload can ...")`: the message line follows
        return None
    # the same error is printed by every rank and once more by the launcher's summary
    seen = st.scratch.setdefault("hf_integration_seen", set())
    if err in seen:
        return None
    seen.add(err)
    data = dict(error=err, key=key, message=t.strip()[-300:])
    if err == "zero3_device_map":
        data["low_cpu_mem_usage"] = "low_cpu_mem_usage" in t
    elif err in ("accelerate_optimizer_twice", "accelerate_scheduler_twice"):
        data["patch"] = {key: None}          # merge patch: remove the ds_config section
    elif err == "auto_hidden_size":
        m = _AUTO_KEYS.search(t)
        data["auto_keys"] = [k.strip(" '\"") for k in m.group(1).split(",")] if m else None
    return line.event("config_error", step=st.step_of(line.rank), **data)


# transformers 5.25 utils/loading_report.py LoadStateDictInfo.create_loading_report: one row per weight whose shape
# differs, 'Reinit due to size mismatch - ckpt: {shape_ckpt} vs model:{shape_model}', under '{cls} LOAD REPORT
# from: {path}'. A checkpoint shape of torch.Size([0]) is ZeRO-3's empty partition: the folder was written by
# save_pretrained / module.state_dict() of a ZeRO-3 engine's module without gathering (run here on 2 ranks). With
# ignore_mismatched_sizes=False from_pretrained then raises ('You set `ignore_mismatched_sizes` to `False` ...'),
# with True the weights are silently re-initialised: either way the saved model holds no weights.
_EMPTY_CKPT_ROW = compile_later(r"^\W*([\w.{}, -]+?)\W*\|.*Reinit due to size mismatch - ckpt: torch\.Size\(\[0\]\) vs model:\s*"
                                r"(torch\.Size\(\[[\d, ]+\]\))")


@on("Reinit due to size mismatch - ckpt: torch.Size([0])")
def zero3_empty_weights_loaded(line: Line, st: StreamState):
    m = _EMPTY_CKPT_ROW.search(line.text)
    if not st.once(("zero3-empty-ckpt", line.rank)):
        return None
    return line.event("config_error", step=st.step_of(line.rank), error="zero3_empty_weights_loaded", key=None,
                      param=m.group(1).strip() if m else None, model_shape=m.group(2) if m else None,
                      message=" ".join(line.text.split())[:300])


# transformers/trainer.py Trainer._inner_training_loop: an epoch whose iterator gave no batch ends
# the training early, as a warning: 'There seems not to be a single sample in your epoch_iterator,
# stopping training at step {global_step}! This is expected if you're using an IterableDataset and
# set num_steps ({max_steps}) higher than the number of available samples.'
_NO_SAMPLE = compile_later(r"stopping training at step (\d+)!.*?num_steps \((\d+)\)")


@on("There seems not to be a single sample in your epoch_iterator")
def dataset_exhausted(line: Line, st: StreamState):
    m = _NO_SAMPLE.search(line.text)
    if not st.once(("hf-no-sample",)):
        return None
    stopped, planned = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    return line.event("config_error", step=stopped, error="hf_dataset_exhausted", key="max_steps",
                      stopped_step=stopped, max_steps=planned, crashed=False, message=line.text.strip()[:300],
                      numbers={"stopped": stopped, "max_steps": planned})


# accelerate/data_loader.py DataLoaderDispatcher.__iter__ (an IterableDataset dispatched from rank
# 0): the same exhausted stream raises instead, "ValueError: Batch does not contain any data
# (`None`). At the end of all iterable data available before expected stop iteration."
@on("Batch does not contain any data")
def dispatcher_exhausted(line: Line, st: StreamState):
    if "At the end of all iterable data available" not in line.text or not st.once(("hf-no-sample",)):
        return None
    stopped = st.step_of(line.rank)
    return line.event("config_error", step=stopped, error="hf_dataset_exhausted", key="max_steps",
                      stopped_step=stopped, max_steps=None, crashed=True, message=line.text.strip()[:300],
                      numbers={"stopped": stopped, "max_steps": None})


# TRL's completion-only collator (trl/trainer/utils.py: DataCollatorForCompletionOnlyLM.torch_call;
# TRL is not installed here, the text is cited): when the response/instruction template is not
# found in an example, every label of it is set to -100 and it warns "Could not find response key
# `{template}` in the following instance: {text} This instance will be ignored in loss
# calculation. Note, if this happens often, consider increasing the `max_seq_length`."
# A batch of such examples has no trained token: its loss is 0/0.
@on("Could not find response key", "Could not find instruction key")
def labels_masked(line: Line, st: StreamState):
    i = line.text.find("Could not find ")
    return line.event("labels_masked", step=st.step_of(line.rank), detail=line.text[i:i + 200])


# Ray Train v2 logs each ray.train.report() of a worker (ray/train/v2/_internal/execution/context.py:
# TrainContext._wait_then_report 'Reporting training result {report_call_index}: TrainingReport(
# checkpoint=.., metrics={...}, ...) from rank {world_rank}'): the report's index is the run's progress
_RAY_REPORT = "Reporting training result "


def _ray_report_index(line: Line, st: StreamState, t: str) -> int | None:
    n = t[len(_RAY_REPORT):t.find(":", len(_RAY_REPORT))]
    if not n.isdecimal():
        return None
    set_step(st, line.rank, int(n))
    return int(n)
