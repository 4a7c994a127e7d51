"""Optimizer params: which `optimizer.params` the class DeepSpeed builds will accept.

engine.py _configure_basic_optimizer calls the class with **params (an unknown one is a
TypeError at deepspeed.initialize). Which class depends on the type and the config:
adam/adamw -> DeepSpeedCPUAdam with optimizer offload, torch.optim.Adam(W) with torch_adam,
else FusedAdam (adam_w_mode, torch_adam and fp32_optimizer_states are popped first);
lamb -> FusedLamb; lion -> FusedLion / DeepSpeedCPULion; adagrad -> torch.optim.Adagrad /
DeepSpeedCPUAdagrad; any other name -> torch.optim.<name>. Signatures are read from the
installed classes; without deepspeed only torch.optim names are checked.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any

from .deepspeed_import import deepspeed_module, torch_module
from .problems import Problem
from .schedulers import _signature_params

POPPED = {"adam": {"adam_w_mode", "torch_adam", "fp32_optimizer_states"},
          "adamw": {"adam_w_mode", "torch_adam", "fp32_optimizer_states"}}


def _cls(ref: str) -> type | None:
    mod, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except Exception:
        return None


def optimizer_class(type_name: str, offload: bool, params: dict[str, Any]) -> type | None:
    """The class DeepSpeed would build, or None when it cannot be told here."""
    t = type_name.lower()
    torch = torch_module()
    if t in ("adam", "adamw"):
        if deepspeed_module() is None:
            return None
        if offload:
            return _cls("deepspeed.ops.adam:DeepSpeedCPUAdam")
        if params.get("torch_adam"):
            return getattr(torch.optim, "AdamW" if t == "adamw" else "Adam", None) if torch else None
        return _cls("deepspeed.ops.adam:FusedAdam")
    if t == "lamb":
        return _cls("deepspeed.ops.lamb:FusedLamb") if deepspeed_module() else None
    if t == "lion":
        if deepspeed_module() is None:
            return None
        return _cls("deepspeed.ops.lion:DeepSpeedCPULion" if offload else "deepspeed.ops.lion:FusedLion")
    if t == "adagrad":
        if offload and deepspeed_module() is not None:
            return _cls("deepspeed.ops.adagrad:DeepSpeedCPUAdagrad")
        return getattr(torch.optim, "Adagrad", None) if torch else None
    if t in ("muadam", "muadamw", "musgd", "muon"):
        return None                   # mup / Muon: not introspected
    cls = getattr(torch.optim, type_name, None) if torch else None
    return cls if isinstance(cls, type) else None


def check_optimizer_params(block: Any, offload: bool) -> list[Problem]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return []
    params = block.get("params")
    if not isinstance(params, dict):
        return []
    out: list[Problem] = []
    if "max_grad_norm" in params:
        out.append(Problem("optimizer_max_grad_norm", "optimizer.params.max_grad_norm",
                           {"value": params["max_grad_norm"],
                            "patch": {"optimizer": {"params": {"max_grad_norm": None}},
                                      "gradient_clipping": params["max_grad_norm"]}}))
    cls = optimizer_class(block["type"], offload, params)
    if cls is None:
        return out
    try:
        allowed = set(_signature_params(cls))
    except (TypeError, ValueError):
        return out
    allowed |= POPPED.get(block["type"].lower(), set())
    if block["type"].lower() in ("adam", "adamw") and params.get("torch_adam"):
        allowed.add("foreach")
    for k, v in params.items():
        if k in allowed or k == "max_grad_norm":
            continue
        real = difflib.get_close_matches(k, sorted(allowed), n=1, cutoff=0.75)
        real = real[0] if real and real[0] not in params else None
        patch = {"optimizer": {"params": {k: None, **({real: v} if real else {})}}}
        out.append(Problem("optimizer_unknown_param", f"optimizer.params.{k}",
                           {"param": k, "value": v, "optimizer_type": block["type"], "cls": cls.__name__,
                            "suggestion": real, "allowed": sorted(allowed - {"params", "model_params"}),
                            "patch": patch}))
    return out
