"""Scheduler params: what `scheduler.type` / `scheduler.params` DeepSpeed will accept.

DeepSpeed resolves `scheduler.type` as an attribute of deepspeed.runtime.lr_schedules, else as
a torch.optim.lr_scheduler class, and calls it with `**params` (engine.py:1923-1938): an
unknown param is a TypeError at deepspeed.initialize, a missing required one too. The params
are read from the installed classes' signatures; without deepspeed the checked table below
(deepspeed 0.19.8 runtime/lr_schedules.py: the scheduler classes' __init__) is used.

Shared by the doctor's lint and the LR-schedule diagnostics.
"""
from __future__ import annotations

import difflib
import inspect
from functools import lru_cache
from typing import Any

from .deepspeed_import import deepspeed_module, torch_module
from .problems import Problem


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()     # a param without a default

# deepspeed 0.19.8 runtime/lr_schedules.py:352-872 (used only when deepspeed does not import)
FALLBACK: dict[str, dict[str, Any]] = {
    "LRRangeTest": {"lr_range_test_min_lr": 1e-3, "lr_range_test_step_size": 2000,
                    "lr_range_test_step_rate": 1.0, "lr_range_test_staircase": False,
                    "last_batch_iteration": -1},
    "OneCycle": {"cycle_min_lr": REQUIRED, "cycle_max_lr": REQUIRED, "decay_lr_rate": 0.0,
                 "cycle_first_step_size": 2000, "cycle_second_step_size": None,
                 "cycle_first_stair_count": 0, "cycle_second_stair_count": None,
                 "decay_step_size": 0, "cycle_momentum": True, "cycle_min_mom": 0.8,
                 "cycle_max_mom": 0.9, "decay_mom_rate": 0.0, "last_batch_iteration": -1},
    "WarmupLR": {"warmup_min_lr": 0.0, "warmup_max_lr": None, "warmup_num_steps": 1000,
                 "warmup_type": "log", "last_batch_iteration": -1},
    "WarmupDecayLR": {"total_num_steps": REQUIRED, "warmup_min_lr": 0.0, "warmup_max_lr": 0.001,
                      "warmup_num_steps": 1000, "warmup_type": "log", "last_batch_iteration": -1},
    "WarmupCosineLR": {"total_num_steps": REQUIRED, "warmup_min_ratio": 0.0, "warmup_num_steps": 1000,
                       "cos_min_ratio": 0.0001, "warmup_type": "log", "last_batch_iteration": -1},
}
DEEPSPEED_SCHEDULERS = tuple(FALLBACK)
WARMUP_TYPES = ("log", "linear")


def signature_params(cls: type) -> dict[str, Any]:
    """A DeepSpeed scheduler's or optimizer's constructor keywords and defaults (REQUIRED when
    it has none), read from the installed class: the keys its ds_config "params" accept."""
    sig = inspect.signature(cls.__init__)
    out: dict[str, Any] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if i == 0 or name == "optimizer" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue          # self, the optimizer the engine passes, *args/**kwargs
        out[name] = REQUIRED if p.default is p.empty else p.default
    return out


@lru_cache(maxsize=None)
def _deepspeed_class(type_name: str) -> type | None:
    ds = deepspeed_module()
    if ds is None:
        return None
    obj = getattr(ds.runtime.lr_schedules, type_name, None)
    return obj if isinstance(obj, type) else None


@lru_cache(maxsize=None)
def _torch_class(type_name: str) -> type | None:
    torch = torch_module()
    if torch is None:
        return None
    obj = getattr(torch.optim.lr_scheduler, type_name, None)
    return obj if isinstance(obj, type) and hasattr(obj, "step") else None


def introspected() -> bool:
    """True when params come from the installed classes, False when from the fallback table."""
    return deepspeed_module() is not None


@lru_cache(maxsize=None)
def scheduler_params(type_name: str) -> dict[str, Any] | None:
    """param -> default (REQUIRED when it has none), or None when DeepSpeed would not find
    the scheduler (the engine asserts 'DeepSpeed does not recognize LR scheduler ...')."""
    if not isinstance(type_name, str) or not type_name:
        return None
    cls = _deepspeed_class(type_name) or _torch_class(type_name)
    if cls is not None:
        try:
            return signature_params(cls)
        except (TypeError, ValueError):
            pass
    if deepspeed_module() is None and type_name in FALLBACK:
        return dict(FALLBACK[type_name])
    return None


def known_schedulers() -> list[str]:
    names = list(DEEPSPEED_SCHEDULERS)
    torch = torch_module()
    if torch is not None:
        names += sorted(n for n in dir(torch.optim.lr_scheduler)
                        if _torch_class(n) is not None and n not in ("LRScheduler", "_LRScheduler"))
    return names


def required_params(type_name: str) -> list[str]:
    return [k for k, v in (scheduler_params(type_name) or {}).items() if v is REQUIRED]


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str | None:
    m = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    if not m:   # case-insensitive second try: warmuplr -> WarmupLR
        low = {c.lower(): c for c in choices}
        m = [low[name.lower()]] if name.lower() in low else []
    return m[0] if m else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# The intent behind an invented name and the real scheduler that does it.
INVENTED = {
    "WarmupOneCycle": "OneCycle",
}
# params of other schedulers that people put into OneCycle, and their OneCycle counterpart
_TO_ONECYCLE = {"warmup_min_lr": "cycle_min_lr", "warmup_max_lr": "cycle_max_lr",
                "warmup_num_steps": "cycle_first_step_size"}


def _onecycle_patch(params: dict[str, Any]) -> dict[str, Any]:
    """Translate warmup-style params to OneCycle's (None deletes a key in a merge patch)."""
    new: dict[str, Any] = {}
    for k, v in params.items():
        if k in _TO_ONECYCLE:
            new[k] = None
            new[_TO_ONECYCLE[k]] = v
    allowed = scheduler_params("OneCycle") or FALLBACK["OneCycle"]
    for k in params:
        if k not in allowed and k not in _TO_ONECYCLE:
            new[k] = None
    new.setdefault("cycle_min_lr", params.get("cycle_min_lr", _TO_PLACEHOLDER))
    new.setdefault("cycle_max_lr", params.get("cycle_max_lr", _TO_PLACEHOLDER))
    return {k: v for k, v in new.items() if v is not _TO_PLACEHOLDER}


_TO_PLACEHOLDER = object()


def check_scheduler_block(block: Any, prefix: str = "scheduler") -> list[Problem]:
    """Everything DeepSpeed would reject (or silently mis-handle) in a `scheduler` block.

    Problem names: scheduler_not_mapping, scheduler_no_type, scheduler_unknown_type,
    scheduler_no_params, scheduler_unknown_param, scheduler_missing_param,
    scheduler_bad_value, scheduler_warmup_exceeds_total, scheduler_bounds_inverted.
    """
    if not isinstance(block, dict):
        return [Problem("scheduler_not_mapping", prefix, {"value": block})]
    stype = block.get("type")
    params = block.get("params")
    if not isinstance(stype, str) or not stype:
        return [Problem("scheduler_no_type", f"{prefix}.type", {"value": stype})]
    allowed = scheduler_params(stype)
    if allowed is None:
        if torch_module() is None and deepspeed_module() is None and stype not in FALLBACK:
            return []            # cannot tell without torch: say nothing rather than guess
        real = INVENTED.get(stype) or suggest(stype, known_schedulers())
        facts: dict[str, Any] = {"value": stype, "suggestion": real,
                                 "invented": stype in INVENTED}
        if real == "OneCycle" and isinstance(params, dict):
            facts["patch"] = {prefix: {"type": "OneCycle", "params": _onecycle_patch(params)}}
        elif real:
            facts["patch"] = {prefix: {"type": real}}
        return [Problem("scheduler_unknown_type", f"{prefix}.type", facts)]
    out: list[Problem] = []
    if params is None:
        out.append(Problem("scheduler_no_params", f"{prefix}.params",
                           {"scheduler_type": stype, "required": required_params(stype),
                            "patch": {prefix: {"params": {}}} if not required_params(stype) else None}))
        return out
    if not isinstance(params, dict):
        return [Problem("scheduler_bad_value", f"{prefix}.params",
                        {"value": params, "scheduler_type": stype, "expected": "a mapping"})]
    for k, v in params.items():
        if k not in allowed:
            real = suggest(k, [a for a in allowed if a != "last_batch_iteration"])
            if real and real.endswith("_ratio") != k.endswith("_ratio"):
                real = None      # an absolute LR is not a ratio (WarmupCosineLR scales the optimizer's lr)
            if stype == "OneCycle" and k in _TO_ONECYCLE:
                real = _TO_ONECYCLE[k]
            patch = {prefix: {"params": {k: None, **({real: v} if real and real not in params else {})}}}
            out.append(Problem("scheduler_unknown_param", f"{prefix}.params.{k}",
                               {"param": k, "value": v, "scheduler_type": stype, "suggestion": real,
                                "allowed": [a for a in allowed if a != "last_batch_iteration"],
                                "patch": patch}))
    for k in required_params(stype):
        if k not in params:
            out.append(Problem("scheduler_missing_param", f"{prefix}.params.{k}",
                               {"param": k, "scheduler_type": stype}))
    out += _check_values(stype, params, prefix)
    return out


def _check_values(stype: str, params: dict[str, Any], prefix: str) -> list[Problem]:
    out: list[Problem] = []
    p = f"{prefix}.params"
    defaults = scheduler_params(stype) or {}
    get = lambda k: params.get(k, defaults.get(k))  # noqa: E731

    params = {k: v for k, v in params.items() if v != "auto"}    # filled by the HF integration
    for k in ("warmup_num_steps", "lr_range_test_step_size"):
        if k in params and (not isinstance(params[k], int) or isinstance(params[k], bool) or params[k] <= 0):
            fixed = int(params[k]) if _num(params[k]) and params[k] >= 1 else None
            out.append(Problem("scheduler_bad_value", f"{p}.{k}",
                               {"param": k, "value": params[k], "scheduler_type": stype,
                                "expected": "a positive integer",
                                "patch": {prefix: {"params": {k: fixed}}} if fixed else None}))
    if "warmup_type" in params and params["warmup_type"] not in WARMUP_TYPES and "warmup_type" in defaults:
        out.append(Problem("scheduler_bad_value", f"{p}.warmup_type",
                           {"param": "warmup_type", "value": params["warmup_type"], "scheduler_type": stype,
                            "expected": "'log' or 'linear' (anything else silently falls back to log)",
                            "patch": {prefix: {"params": {"warmup_type": "linear"}}}}))
    total, warm = _num(params.get("total_num_steps")), _num(get("warmup_num_steps"))
    if "total_num_steps" in defaults and total is not None and warm is not None and warm > total:
        out.append(Problem("scheduler_warmup_exceeds_total", f"{p}.warmup_num_steps",
                           {"scheduler_type": stype, "warmup_num_steps": int(warm),
                            "total_num_steps": int(total),
                            "patch": {prefix: {"params": {"warmup_num_steps": max(1, int(total) // 10)}}}}))
    for lo, hi in (("cycle_min_lr", "cycle_max_lr"), ("warmup_min_lr", "warmup_max_lr"),
                   ("cycle_min_mom", "cycle_max_mom")):
        if lo in defaults and hi in defaults:
            a, b = _num(get(lo)), _num(get(hi))
            if a is not None and b is not None and a > b:
                out.append(Problem("scheduler_bounds_inverted", f"{p}.{lo}",
                                   {"scheduler_type": stype, "low": lo, "high": hi, "low_value": get(lo),
                                    "high_value": get(hi),
                                    "patch": {prefix: {"params": {lo: get(hi), hi: get(lo)}}}}))
    return out
