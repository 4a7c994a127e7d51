"""Optimizer params: which `optimizer.params` the optimizer DeepSpeed builds will accept.

engine.py _configure_basic_optimizer calls the class with **params (an unknown one is a
TypeError at deepspeed.initialize). Which class depends on the type and the config:
adam/adamw -> DeepSpeedCPUAdam with optimizer offload, torch.optim.Adam(W) with torch_adam,
else FusedAdam (adam_w_mode, torch_adam and fp32_optimizer_states are popped first);
lamb -> FusedLamb; lion -> FusedLion / DeepSpeedCPULion; adagrad -> torch.optim.Adagrad /
DeepSpeedCPUAdagrad; muadam / muadamw / musgd -> mup's wrappers, which pass every param on to
torch.optim.Adam / AdamW / SGD; muon -> MuonWithAuxAdam, built from only the keys the engine
picks out (an unknown one is silently ignored, not an error); any other name -> torch.optim.<name>.
Signatures are read from the installed classes; without deepspeed, DeepSpeed's own optimizers
are checked against the snapshot taken from 0.19.8 (catalogue_snapshot.json "optimizers").
"""
from __future__ import annotations

import difflib
import importlib
import json
from functools import lru_cache
from typing import Any

from .deepspeed_import import deepspeed_module, torch_module
from .problems import Problem
from .schedulers import signature_params
from .snapshot import SNAPSHOT

POPPED = {"adam": {"adam_w_mode", "torch_adam", "fp32_optimizer_states"},
          "adamw": {"adam_w_mode", "torch_adam", "fp32_optimizer_states"},
          "muon": {"adam_w_mode", "torch_adam", "fp32_optimizer_states"}}
# DeepSpeed's own classes, by "<type>" or "<type>+offload" (engine.py _configure_basic_optimizer)
DS_CLASSES = {
    "adam": "deepspeed.ops.adam:FusedAdam", "adam+offload": "deepspeed.ops.adam:DeepSpeedCPUAdam",
    "adamw": "deepspeed.ops.adam:FusedAdam", "adamw+offload": "deepspeed.ops.adam:DeepSpeedCPUAdam",
    "lamb": "deepspeed.ops.lamb:FusedLamb", "lamb+offload": "deepspeed.ops.lamb:FusedLamb",
    "lion": "deepspeed.ops.lion:FusedLion", "lion+offload": "deepspeed.ops.lion:DeepSpeedCPULion",
    "adagrad+offload": "deepspeed.ops.adagrad:DeepSpeedCPUAdagrad",
}
# kwargs the engine passes itself: the same key in optimizer.params is "got multiple values"
ENGINE_KWARGS = {"adam+offload": {"adamw_mode"}, "adamw+offload": {"adamw_mode"}}
# mup 1.0.0 mup/optim.py: MuAdam(params, impl=Adam, **kwargs) -> impl(groups, **kwargs);
# MuAdamW = MuAdam(impl=AdamW); MuSGD(params, impl=SGD, **kwargs). mup is an optional extra.
MU_IMPL = {"muadam": "Adam", "muadamw": "AdamW", "musgd": "SGD"}
# engine.py _muon_param_groups: config lr may be overridden per half by these two keys
MUON_LR_OVERRIDES = ("muon_lr", "adam_lr")


def _cls(ref: str) -> type | None:
    mod, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except Exception:
        return None


def _muon_entry() -> dict[str, Any] | None:
    try:
        from deepspeed.runtime.engine import DeepSpeedEngine
        keys = set(DeepSpeedEngine._MUON_HALF_KEYS) | set(DeepSpeedEngine._ADAM_HALF_KEYS)
    except Exception:
        return None
    return {"cls": "MuonWithAuxAdam", "params": sorted(keys | set(MUON_LR_OVERRIDES) | POPPED["muon"]),
            "ignored": True}


def introspect_table() -> dict[str, dict[str, Any]]:
    """Allowed params of DeepSpeed's own optimizers, from the installed classes (for the snapshot)."""
    table: dict[str, dict[str, Any]] = {}
    for key, ref in DS_CLASSES.items():
        cls = _cls(ref)
        if cls is None:
            continue
        try:
            params = set(signature_params(cls)) - {"params", "model_params"}
        except (TypeError, ValueError):
            continue
        params = (params - ENGINE_KWARGS.get(key, set())) | POPPED.get(key.split("+")[0], set())
        table[key] = {"cls": cls.__name__, "params": sorted(params),
                      "ignored": False}
    muon = _muon_entry()
    if muon is not None:
        table["muon"] = table["muon+offload"] = muon
    return table


@lru_cache(maxsize=None)
def _table() -> tuple[dict[str, dict[str, Any]], bool]:
    """(table, introspected). Without deepspeed: the snapshot."""
    if deepspeed_module() is not None:
        return introspect_table(), True
    try:
        return json.loads(SNAPSHOT.read_text(encoding="utf-8")).get("optimizers", {}), False
    except (OSError, ValueError):
        return {}, False


def _torch_entry(name: str, extra: set[str] = frozenset()) -> dict[str, Any] | None:
    torch = torch_module()
    cls = getattr(torch.optim, name, None) if torch else None
    if not isinstance(cls, type):
        return None
    try:
        params = set(signature_params(cls)) - {"params"}
    except (TypeError, ValueError):
        return None
    return {"cls": cls.__name__, "params": sorted(params | extra), "ignored": False}


def allowed_params(type_name: str, offload: bool, params: dict[str, Any]) -> dict[str, Any] | None:
    """{"cls", "params" (allowed), "ignored" (unknown ones silently dropped)} or None when unknown."""
    t = type_name.lower()
    if t in ("adam", "adamw") and params.get("torch_adam"):
        return _torch_entry("AdamW" if t == "adamw" else "Adam", POPPED[t] | {"foreach"})
    if t in MU_IMPL:
        return _torch_entry(MU_IMPL[t])
    if t == "adagrad" and not offload:
        return _torch_entry("Adagrad")
    key = f"{t}+offload" if offload else t
    if t in ("adam", "adamw", "lamb", "lion", "adagrad", "muon"):
        return _table()[0].get(key)
    return _torch_entry(type_name)


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
    entry = allowed_params(block["type"], offload, params)
    if entry is None:
        return out
    allowed = set(entry["params"])
    for k, v in params.items():
        if k in allowed or k == "max_grad_norm":
            continue
        real = difflib.get_close_matches(k, sorted(allowed), n=1, cutoff=0.75)
        real = real[0] if real and real[0] not in params else None
        patch = {"optimizer": {"params": {k: None, **({real: v} if real else {})}}}
        out.append(Problem("optimizer_unknown_param", f"optimizer.params.{k}",
                           {"param": k, "value": v, "optimizer_type": block["type"], "cls": entry["cls"],
                            "suggestion": real, "allowed": sorted(allowed), "ignored": entry["ignored"],
                            "patch": patch}))
    return out
