"""Config lint: every key checked against what the installed DeepSpeed reads, the invented
keys blog posts spread mapped to the real feature, and the semantic checks DeepSpeed itself
does not make (silently ignored keys, batch equation for the real world size, ...).

Output: Problems (symptom name, dotted key, facts incl. a ready merge `patch`); the YAML rules
in rules/config_error.yaml turn them into findings.
"""
from __future__ import annotations

import difflib
import math
from typing import Any

from ..fixes import combine_patches
from .catalogue import Catalogue, Section, catalogue
from .problems import Problem
from .schedulers import check_scheduler_block

# Invented keys (from blog posts) -> symptom name. Matched by their last path segment.
INVENTED_KEYS = {
    "offload_params": "invented_offload_params",
    "gradient_compression": "invented_compression",
    "hierarchical_compress": "invented_compression",
    "topk": "invented_compression",
    "topk_ratio": "invented_compression",
    "communication": "invented_communication",
    "topology": "invented_communication",
    "slow_node_tolerance": "invented_communication",
    "fp16_override_modules": "invented_fp16_override",
    "zero_allowed_param_types": "invented_zero_param_types",
    "zero_force_param_types": "invented_zero_param_types",
    "partition_methods": "invented_partition_methods",
}
ZEROPP_KEYS = ("zero_quantized_weights", "zero_quantized_gradients", "zero_hpz_partition_size",
               "zero_quantized_nontrainable_weights")
DS_OPTIMIZERS_FALLBACK = ("adagrad", "adam", "adamw", "lamb", "muadam", "muadamw", "musgd", "lion", "muon")
REMOVED_OPTIMIZERS = ("onebitadam", "zerooneadam", "onebitlamb")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _delete_patch(path: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A merge patch deleting the key at `path` (null deletes in RFC 7386), merged with extra."""
    patch: dict[str, Any] = {}
    cur = patch
    for p in path[:-1]:
        cur = cur.setdefault(p, {})
    cur[path[-1]] = None
    return combine_patches(patch, extra or {})


def _stage(cfg: dict[str, Any]) -> int:
    z = cfg.get("zero_optimization")
    if isinstance(z, dict):
        try:
            return int(z.get("stage", 0))
        except (TypeError, ValueError):
            return 0
    return 1 if z is True else 0


def _enabled(cfg: dict[str, Any], section: str) -> bool:
    b = cfg.get(section)
    return isinstance(b, dict) and b.get("enabled") in (True, "true", 1)


def lint(cfg: dict[str, Any], *, world_size: int | None = None, world_size_source: str | None = None,
         env: dict[str, Any] | None = None, uses_hf: bool = False) -> list[Problem]:
    """All problems in `cfg`. `env` holds probed facts (memlock_bytes, ...) when known."""
    cat = catalogue()
    out: list[Problem] = []
    _walk(cfg, cat.root, [], cat, cfg, out)
    out += _semantic(cfg, world_size, world_size_source, env or {}, uses_hf)
    if isinstance(cfg.get("scheduler"), dict) or "scheduler" in cfg:
        out += check_scheduler_block(cfg.get("scheduler"))
    out += _check_optimizer(cfg.get("optimizer"))
    if not any(p.name.startswith("optimizer_") for p in out):
        from .optimizers import check_optimizer_params
        z = cfg.get("zero_optimization") if isinstance(cfg.get("zero_optimization"), dict) else {}
        off = z.get("offload_optimizer") if isinstance(z.get("offload_optimizer"), dict) else {}
        offload = off.get("device") in ("cpu", "nvme") or z.get("cpu_offload") is True
        out += check_optimizer_params(cfg.get("optimizer"), offload and _stage(cfg) > 0)
    return out


# --- keys -----------------------------------------------------------------------------------

def _walk(obj: dict[str, Any], sec: Section, path: list[str], cat: Catalogue, cfg: dict[str, Any],
          out: list[Problem]) -> None:
    for k, v in obj.items():
        p = path + [k]
        dotted = ".".join(p)
        if not path and k in cat.removed:
            out.append(Problem("removed_key", dotted, {"message": cat.removed[k], "patch": {k: None}}))
            continue
        if path == ["zero_optimization"] and k in cat.removed_zero:
            out.append(Problem("removed_key", dotted, {"message": cat.removed_zero[k],
                                                       "patch": _delete_patch(p)}))
            continue
        if k in INVENTED_KEYS and k not in sec.keys:
            out.append(_invented(INVENTED_KEYS[k], p, v, cfg, sec.strict))
            continue
        if k == "nvme_path" and k not in sec.keys:
            out.append(_misplaced_nvme(p, v, cfg, sec.strict))
            continue
        if k not in sec.keys and "*" not in sec.keys:       # "*": names the user chooses
            if path in (["optimizer", "params"], ["scheduler", "params"]):
                continue
            real = _did_you_mean(k, sec.keys)
            extra = {real: v} if real and real not in obj else {}
            patch = _delete_patch(p, _nest(path, extra) if extra else None)
            out.append(Problem("unknown_key", dotted,
                               {"name": k, "section": ".".join(path) or None, "suggestion": real,
                                "strict": sec.strict, "top_level": not path, "patch": patch}))
            continue
        if v == "auto":
            continue       # reported once for the whole config (auto_outside_hf)
        t = sec.types.get(k)
        if t and not _type_ok(t, v, lax=sec.strict):
            out.append(_wrong_type(p, v, t))
            continue
        child = sec.children.get(k, sec.children.get("*"))
        if child is not None and isinstance(v, dict) and child.keys:
            _walk(v, child, p, cat, cfg, out)
        elif child is not None and child.keys and v is not None and not isinstance(v, dict) and not (
                k == "zero_optimization" and isinstance(v, bool)):     # legacy "zero_optimization": true
            out.append(Problem("wrong_type", dotted, {"name": k, "value": v, "expected": "a mapping"}))
    if path == ["fp16"] and "min_loss_scale" in obj:
        v = obj["min_loss_scale"]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 1:
            for pr in out:
                if pr.key == "fp16.min_loss_scale":
                    out.remove(pr)
            out.append(Problem("fp16_min_loss_scale_fraction", "fp16.min_loss_scale",
                               {"value": v, "patch": {"fp16": {"min_loss_scale": 1}}}))


def _nest(path: list[str], leaf: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = leaf
    for p in reversed(path):
        d = {p: d}
    return d


def _did_you_mean(k: str, keys: set[str]) -> str | None:
    m = difflib.get_close_matches(k, sorted(keys), n=1, cutoff=0.75)
    return m[0] if m else None


def _type_ok(t: str, v: Any, lax: bool = True) -> bool:
    """Pydantic lax mode (lax=True): '2' is an int, 2.0 is an int, 1e-5 is not. Keys DeepSpeed
    reads by hand (lax=False) are used as given: the string "8" breaks the batch arithmetic."""
    if v is None:
        return True
    if not lax and isinstance(v, str) and t in ("int", "float"):
        return False
    if t == "bool":
        return isinstance(v, bool) or v in (0, 1) or (isinstance(v, str) and v.lower() in
                                                      ("true", "false", "yes", "no", "on", "off", "1", "0"))
    if t == "int":
        if isinstance(v, bool):
            return True
        if isinstance(v, int):
            return True
        if isinstance(v, float):
            return v.is_integer()
        if isinstance(v, str):
            try:
                int(v.replace("_", ""))
                return True
            except ValueError:
                return False
        return False
    if t.startswith("enum:"):
        return str(v).lower() in t[5:].lower().split("|") or v in ("auto",)
    if t == "float":
        if isinstance(v, (int, float)):
            return True
        if isinstance(v, str):
            try:
                float(v)
                return True
            except ValueError:
                return False
        return False
    return True


def _wrong_type(p: list[str], v: Any, t: str) -> Problem:
    fixed: Any = None
    if t == "int" and isinstance(v, float) and v > 0:
        fixed = max(1, round(v))
    elif t in ("int", "float") and isinstance(v, str):
        try:
            fixed = int(float(v)) if t == "int" else float(v)
        except (ValueError, OverflowError):    # "inf" as an int: no fix to offer
            fixed = None
        if isinstance(fixed, float) and not math.isfinite(fixed):
            fixed = None
    elif t == "bool" and isinstance(v, str):
        fixed = v.strip().lower() in ("true", "yes", "on", "1", "enabled")
    if t.startswith("enum:"):
        choices = t[5:].split("|")
        near = difflib.get_close_matches(str(v).lower(), choices, n=1, cutoff=0.5)
        fixed = (int(near[0]) if near[0].isdigit() else near[0]) if near else None
        if p[-1] == "device" and str(v).lower() in ("gpu", "cuda", "gpu0", "cuda:0"):
            fixed = "none"        # "keep it on the GPU" is device none (no offload)
        if isinstance(v, int) and all(c.isdigit() for c in choices):
            fixed = max(int(c) for c in choices) if v > max(int(c) for c in choices) else fixed
    facts = {"name": p[-1], "value": v, "expected": {"int": "an integer", "float": "a number",
                                                      "bool": "true or false"}.get(t, t)}
    if t.startswith("enum:"):
        facts["expected"] = "one of " + ", ".join(t[5:].split("|"))
    if fixed is not None:
        facts["patch"] = _nest(p[:-1], {p[-1]: fixed})
    return Problem("wrong_type", ".".join(p), facts)


def _invented(name: str, p: list[str], v: Any, cfg: dict[str, Any], strict: bool) -> Problem:
    stage = _stage(cfg)
    facts: dict[str, Any] = {"name": p[-1], "value": v, "strict": strict, "zero_stage": stage,
                             "top_level": len(p) == 1}
    if name == "invented_offload_params":
        dev = v if isinstance(v, dict) else {"device": "cpu", "pin_memory": True}
        real = {k: x for k, x in dev.items()} if isinstance(dev, dict) else {"device": "cpu"}
        facts["patch"] = _delete_patch(p, {"zero_optimization": {"stage": 3, "offload_param": real}})
        facts["alt_patch"] = _delete_patch(p, {"zero_optimization": {"offload_optimizer": real}})
    elif name == "invented_compression":
        fp = "bf16" if _enabled(cfg, "bf16") or _enabled(cfg, "bfloat16") else "fp16"
        facts["patch"] = _delete_patch(p, {"zero_optimization": {"zero_quantized_gradients": True}}
                                       if stage == 3 else {"communication_data_type": fp})
        facts["comm_dtype"] = fp
        facts["alt_patch"] = _delete_patch(p, {"zero_optimization": {"stage": 3, "zero_quantized_gradients": True}})
    elif name == "invented_communication":
        facts["patch"] = _delete_patch(p if len(p) == 1 or p[0] != "communication" else p[:1])
        facts["key_root"] = p[0]
    elif name == "invented_fp16_override":
        patch = _delete_patch(p, {"fp16": {"enabled": False}, "bf16": {"enabled": True}})
        if p == ["fp16", "fp16_override_modules"]:
            patch["fp16"]["fp16_override_modules"] = None
        facts["patch"] = patch
        facts["autocast_patch"] = _delete_patch(p, {"torch_autocast": {"enabled": True, "dtype": "bfloat16"}})
    else:
        facts["patch"] = _delete_patch(p)
    return Problem(name, ".".join(p), facts)


def _misplaced_nvme(p: list[str], v: Any, cfg: dict[str, Any], strict: bool) -> Problem:
    z = cfg.get("zero_optimization") if isinstance(cfg.get("zero_optimization"), dict) else {}
    extra: dict[str, Any] = {}
    for blk in ("offload_optimizer", "offload_param"):
        b = z.get(blk)
        if isinstance(b, dict) and b.get("device") == "nvme" and not b.get("nvme_path"):
            extra.setdefault("zero_optimization", {})[blk] = {"nvme_path": v}
    if not extra:
        extra = {"zero_optimization": {"offload_optimizer": {"device": "nvme", "nvme_path": v}}}
    return Problem("misplaced_nvme_path", ".".join(p),
                   {"value": v, "strict": strict, "patch": _delete_patch(p, extra)})


# --- optimizer ------------------------------------------------------------------------------

def _check_optimizer(block: Any) -> list[Problem]:
    if not isinstance(block, dict):
        return []
    t = block.get("type")
    if "params" in block and not isinstance(block["params"], dict):
        return [Problem("wrong_type", "optimizer.params", {"name": "params", "value": block["params"],
                                                           "expected": "a mapping"})]
    if not isinstance(t, str):
        return []
    if t.lower() in REMOVED_OPTIMIZERS:
        return [Problem("optimizer_removed", "optimizer.type",
                        {"value": t, "patch": {"optimizer": {"type": "AdamW"}}})]
    from .deepspeed_import import deepspeed_module, torch_module
    ds = deepspeed_module()
    names = tuple(ds.runtime.config.DEEPSPEED_OPTIMIZERS) if ds is not None else DS_OPTIMIZERS_FALLBACK
    if t.lower() in names:
        return []
    torch = torch_module()
    if torch is None:
        return []
    if isinstance(getattr(torch.optim, t, None), type):
        return []
    real = difflib.get_close_matches(t.lower(), list(names), n=1, cutoff=0.6)
    return [Problem("optimizer_unknown_type", "optimizer.type",
                    {"value": t, "suggestion": real[0] if real else None,
                     "patch": {"optimizer": {"type": real[0]}} if real else None})]


# --- semantics -------------------------------------------------------------------------------

def _semantic(cfg: dict[str, Any], ws: int | None, ws_source: str | None, env: dict[str, Any],
              uses_hf: bool) -> list[Problem]:
    out: list[Problem] = []
    stage = _stage(cfg)
    z = cfg.get("zero_optimization") if isinstance(cfg.get("zero_optimization"), dict) else {}

    # batch equation, for the world size the run will have
    tb, mb, gas = (cfg.get("train_batch_size"), cfg.get("train_micro_batch_size_per_gpu"),
                   cfg.get("gradient_accumulation_steps"))
    ints = lambda *xs: all(isinstance(x, int) and not isinstance(x, bool) for x in xs)  # noqa: E731
    if ws and ints(tb, mb, gas) and tb != mb * gas * ws:
        fix_gas = tb // (mb * ws) if tb % (mb * ws) == 0 and tb // (mb * ws) >= 1 else None
        patch = ({"gradient_accumulation_steps": fix_gas} if fix_gas
                 else {"train_batch_size": mb * gas * ws})
        out.append(Problem("config_error.batch_mismatch", "train_batch_size",   # the name the log's assertion gets too
                           {"train_batch_size": tb, "micro_batch": mb, "gas": gas, "world_size": ws,
                            "world_size_source": ws_source, "patch": patch}))
    elif ws and ints(tb, mb) and gas is None and tb % (mb * ws) != 0:
        out.append(Problem("config_error.batch_mismatch", "train_batch_size",
                           {"train_batch_size": tb, "micro_batch": mb, "gas": None, "world_size": ws,
                            "world_size_source": ws_source,
                            "patch": {"train_batch_size": max(1, tb // (mb * ws)) * mb * ws}}))

    if not uses_hf and "train_batch_size" not in cfg and "train_micro_batch_size_per_gpu" not in cfg:
        out.append(Problem("batch_size_missing", "train_micro_batch_size_per_gpu",
                           {"patch": {"train_micro_batch_size_per_gpu": 1}}))

    if _enabled(cfg, "fp16") and (_enabled(cfg, "bf16") or _enabled(cfg, "bfloat16")):
        out.append(Problem("config_error.bf16_and_fp16", "fp16.enabled"))   # the log's assertion's name too

    if stage < 3:
        op = z.get("offload_param")
        if isinstance(op, dict) and op.get("device") not in (None, "none"):
            out.append(Problem("offload_param_below_stage3", "zero_optimization.offload_param",
                               {"zero_stage": stage, "device": op.get("device"),
                                "patch": {"zero_optimization": {"stage": 3}},
                                "alt_patch": {"zero_optimization": {"offload_param": None,
                                                                    "offload_optimizer": op}}}))
        for k in ZEROPP_KEYS:
            if z.get(k) not in (None, False, 0, 1) or (k != "zero_hpz_partition_size" and z.get(k) is True):
                out.append(Problem("zeropp_below_stage3", f"zero_optimization.{k}",
                                   {"zero_stage": stage, "name": k,
                                    "patch": {"zero_optimization": {"stage": 3}}}))
        ratio = (z.get("offload_optimizer") or {}).get("ratio") if isinstance(z.get("offload_optimizer"), dict) else None
        if isinstance(ratio, (int, float)) and ratio < 1:
            out.append(Problem("offload_ratio_below_stage3", "zero_optimization.offload_optimizer.ratio",
                               {"zero_stage": stage, "value": ratio,
                                "patch": {"zero_optimization": {"offload_optimizer": {"ratio": None}}}}))

    for blk in ("offload_optimizer", "offload_param"):
        b = z.get(blk)
        if not isinstance(b, dict) or b.get("device") in (None, "none"):
            continue
        if b.get("device") == "nvme" and not b.get("nvme_path") and not (
                blk == "offload_optimizer" and stage < 3):
            out.append(Problem("nvme_without_path", f"zero_optimization.{blk}.nvme_path",
                               {"block": blk, "patch": {"zero_optimization": {blk: {"nvme_path": "/local_nvme"}}}}))
        pin = b.get("pin_memory", True)
        memlock = env.get("memlock_bytes")
        if pin and memlock is not None and 0 <= memlock < (64 << 30):
            out.append(Problem("pin_memory_low_memlock", f"zero_optimization.{blk}.pin_memory",
                               {"block": blk, "memlock_bytes": memlock,
                                "patch": {"zero_optimization": {blk: {"pin_memory": False}}}}))

    if "activation_checkpointing" in cfg:
        out.append(Problem("activation_checkpointing_config_only", "activation_checkpointing", {}))
    if cfg.get("steps_per_print") is None:
        out.append(Problem("steps_per_print_unset", "steps_per_print",
                           {"patch": {"steps_per_print": 100}}))
    lvl = cfg.get("log_level")
    if lvl is not None and (not isinstance(lvl, str) or lvl.lower() not in LOG_LEVELS):
        out.append(Problem("bad_log_level", "log_level", {"value": lvl, "patch": {"log_level": "info"}}))
    if not uses_hf:
        autos = [p for p in _auto_paths(cfg)]
        if autos:
            out.append(Problem("auto_outside_hf", autos[0], {"paths": autos, "n_auto": len(autos)}))
    return out


def _auto_paths(obj: Any, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _auto_paths(v, f"{path}.{k}" if path else k)
    elif obj == "auto":
        out.append(path)
    return out
