"""Run facts printed by DeepSpeed itself, so fixes can be computed from a log alone:
the `DeepSpeedEngine configuration:` block (INFO, runtime/config.py `print`) and the
`DeepSpeed info: version=...` banner. These become `context` events."""
from __future__ import annotations

import re

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

# "[config.py:678:print]   zero_optimization_stage ...... 2"
_ARG = compile_later(r":print\]\s{3}(\w+) \.*\s*(.*)$")
_INT_ARGS = {"train_batch_size": "train_batch", "train_micro_batch_size_per_gpu": "micro_batch",
             "gradient_accumulation_steps": "gas", "world_size": "world_size",
             "zero_optimization_stage": "zero_stage"}
_KV = compile_later(r"(\w+)=([^\s()]+)")
_TOTAL_STEPS = compile_later(r"'total_num_steps': (\d+)\b")


def _num(v: str):
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if f.is_integer() else f


def _offload(text: str, name: str) -> str | None:
    # 0.19 pydantic repr: device='cpu'; older enum repr: device=<OffloadDeviceEnum.cpu: 'cpu'>
    m = re.search(name + r"=(None|\w+\(device=<?'?(?:\w+\.)?(\w+))", text)
    if not m:
        return None
    return "none" if m.group(1) == "None" else m.group(2)


@on(":print]   ")
def engine_config(line: Line, st: StreamState):
    m = _ARG.search(line.text)
    if not m:
        return None
    arg, val = m.group(1), m.group(2).strip()
    facts: dict = {}
    if arg in _INT_ARGS:
        facts[_INT_ARGS[arg]] = _num(val)
    elif arg == "gradient_clipping":
        facts["gradient_clipping"] = _num(val)
    elif arg in ("fp16_enabled", "bfloat16_enabled"):
        facts["fp16" if arg.startswith("fp16") else "bf16"] = val == "True"
    elif arg in ("float16_config", "bfloat16_config"):
        kv = dict(_KV.findall(val))
        enabled = kv.get("enabled") == "True"
        if arg == "float16_config":
            facts["fp16"] = enabled
            if enabled:
                for k in ("initial_scale_power", "loss_scale_window", "hysteresis", "min_loss_scale"):
                    if k in kv:
                        facts[k] = _num(kv[k])
        else:
            facts["bf16"] = enabled
    elif arg == "zero_config":
        kv = dict(_KV.findall(val))
        if kv.get("overlap_comm") in ("True", "False"):
            facts["overlap_comm"] = kv["overlap_comm"] == "True"
        for name in ("offload_optimizer", "offload_param"):
            dev = _offload(val, name)
            if dev:
                facts[name] = dev
    elif arg == "scheduler_name" and val != "None":
        facts["scheduler"] = val
    elif arg == "scheduler_params":
        # "{'warmup_min_lr': 0, ..., 'total_num_steps': 120}": the printed dict of the config's params
        m = _TOTAL_STEPS.search(val)
        if m:
            facts["total_num_steps"] = _num(m.group(1))
    facts = {k: v for k, v in facts.items() if v is not None}
    return line.event("context", **facts) if facts else None


# runtime/engine.py DeepSpeedEngine._configure_lr_scheduler: a scheduler passed to initialize() wins over
# the config's `scheduler` section, which is then dropped without a warning
@on("DeepSpeed using client LR scheduler", "DeepSpeed using client callable to create LR scheduler")
def client_scheduler(line: Line, st: StreamState):
    return line.event("context", lr_scheduler_source="client")


_VERSION = compile_later(r"DeepSpeed info: version=([\w.+-]+)")


@on("DeepSpeed info: version=")
def ds_version(line: Line, st: StreamState):
    m = _VERSION.search(line.text)
    return line.event("context", ds_version=m.group(1)) if m else None
