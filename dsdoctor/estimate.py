"""The memory estimate's application layer: parse the sizes and counts users type (7B, 80GiB),
read a Hugging Face config.json, and size each ZeRO stage / offload choice against the GPU and
host memory. `dsdoctor estimate` prints it; `dsdoctor doctor --params` checks the fit with it."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from .expr import human_bytes


class EstimateError(ValueError):
    """A size, count, config or model file that cannot be used; str() is one line."""


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
          "g": 1 << 30, "gb": 10**9, "gib": 1 << 30, "t": 1 << 40, "tb": 10**12, "tib": 1 << 40}
_COUNT = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


MAX_PARAMS = 10**15              # a quadrillion parameters: beyond that it is a typo
MAX_BYTES = 1 << 60             # 1 EiB
MAX_HF_CONFIG_BYTES = 4 << 20
_NUMBER = r"([0-9]{1,30}(?:\.[0-9]{0,30})?(?:[eE][+]?[0-9]{1,3})?)"


def _number(text: str, what: str, example: str) -> tuple[float, str]:
    m = re.fullmatch(r"\s*" + _NUMBER + r"\s*([a-zA-Z]*)\s*", text or "")
    if not m:
        raise ValueError(f"not {what}: {str(text)[:40]!r} (e.g. {example})")
    v = float(m.group(1))
    if not math.isfinite(v):
        raise ValueError(f"{what} too large: {str(text)[:40]!r}")
    return v, m.group(2).lower()


def parse_bytes(text: str) -> int:
    v, unit = _number(text, "a size", "80GiB, 512GB, 1TiB")
    if unit not in _UNITS:
        raise ValueError(f"not a size: {str(text)[:40]!r} (e.g. 80GiB, 512GB, 1TiB)")
    n = v * _UNITS[unit]
    if not 1 <= n <= MAX_BYTES:
        raise ValueError(f"size out of range: {str(text)[:40]!r} (between 1 byte and 1 EiB)")
    return int(n)


def parse_count(text: str) -> int:
    v, unit = _number(text, "a parameter count", "7e9, 7B, 350M")
    if unit not in _COUNT:
        raise ValueError(f"not a parameter count: {str(text)[:40]!r} (e.g. 7e9, 7B, 350M)")
    n = v * _COUNT[unit]
    if n < 1:
        raise ValueError(f"parameter count must be positive: {str(text)[:40]!r}")
    if n > MAX_PARAMS:
        raise ValueError(f"parameter count out of range: {str(text)[:40]!r} (at most 1e15)")
    return int(n)


def params_from_hf_config(path: Path) -> dict[str, Any]:
    """Parameter count and shapes from a Hugging Face config.json, experts included
    (config/hf_model.py: transformers on the meta device when installed, else counted)."""
    from .safe_read import ReadError, read_regular_text
    try:
        c = json.loads(read_regular_text(path, MAX_HF_CONFIG_BYTES, "Hugging Face config.json"))
    except ReadError as e:
        raise ValueError(str(e)) from None
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: cannot read HF config: {str(e).splitlines()[0] if str(e) else 'nested too deeply'}") from None
    if not isinstance(c, dict):
        raise ValueError(f"{path}: a Hugging Face config.json is a JSON object, got {type(c).__name__}")
    from .config.hf_model import params_from_config_dict
    try:
        shape = params_from_config_dict(c)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if shape["params"] > MAX_PARAMS:
        raise ValueError(f"{path}: {shape['params']:.3g} parameters is out of range (at most 1e15)")
    return shape


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):        # name too long, NUL byte
        return False


def estimate_memory(params: str, largest: str | None = None, gpus_per_node: int = 1, nodes: int = 1,
                 gpu_memory: str | None = None, cpu_memory: str | None = None, config: Path | None = None,
                 seq_len: int | None = None, hidden: int | None = None, layers: int | None = None,
                 heads: int | None = None, micro_batch: int | None = None) -> dict[str, Any]:
    """What `dsdoctor estimate` prints and the doctor's memory fit check reads: model-state
    memory per GPU and node for ZeRO 0-3 and each offload choice (config/model_states.py,
    DeepSpeed's own estimators), the memory of this machine or the one given, and the cheapest
    choice that fits. EstimateError (one line) for a value that cannot be read."""
    from .config.model_states import activation_bytes, check_fit, estimates
    shape: dict[str, Any] = {}
    try:
        if params.endswith(".json") or _is_file(params):
            shape = params_from_hf_config(Path(params))
            total = shape["params"]
        else:
            total = parse_count(params)
        big = parse_count(largest) if largest else shape.get("largest")
        gmem = parse_bytes(gpu_memory) if gpu_memory else None
        cmem = parse_bytes(cpu_memory) if cpu_memory else None
    except ValueError as e:
        raise EstimateError(str(e)) from None
    cfg = None
    if config is not None:
        from .config.loader import read_config
        from .config_io import ConfigError
        try:
            cfg, _ = read_config(config)
        except ConfigError as e:
            raise EstimateError(str(e)) from None
    gsrc = "--gpu-memory" if gmem else None
    if gmem is None:
        from .env import probe_gpus
        g = probe_gpus()
        if g.get("gpus") and g["gpus"][0].get("memory_total"):
            gmem, gsrc = g["gpus"][0]["memory_total"], f"NVML ({g['gpus'][0].get('name')})"
    csrc = "--cpu-memory" if cmem else None
    if cmem is None:
        try:
            import psutil
            cmem, csrc = psutil.virtual_memory().total, "this host"
        except Exception:
            pass
    mb = micro_batch or (cfg or {}).get("train_micro_batch_size_per_gpu") if (micro_batch or cfg) else None
    mb = mb if isinstance(mb, int) else None
    s, h, l, a = seq_len or None, hidden or shape.get("hidden"), layers or shape.get("layers"), heads or shape.get("heads")
    if seq_len is None and shape and mb:
        s = shape.get("seq")
    act = activation_bytes(s, h, l, mb, a) if (s and h and l and mb) else None
    rows = estimates(total, big, gpus_per_node, nodes)
    best = check_fit(rows, gmem, cmem, act or 0)
    notes = [f"Parameters: {total / 1e9:.2f}B, {shape['params_source']}."] if shape.get("params_source") else []
    notes += ["Model states only (params, gradients, optimizer states); activations, CUDA context and "
             "fragmentation are not included" + ("." if act is None else f"; activations added: {human_bytes(act)} per GPU.")]
    if act is None:
        notes.append("Give --seq-len, --hidden, --layers and --micro-batch (and --heads) to add activations "
                     "(Korthikanti et al. 2022: s*b*h*(34 + 5*a*s/h) bytes per layer, no recomputation).")
    return {"params": total, "largest_layer_params": big or max(1, total // 10),
            "gpus_per_node": gpus_per_node, "nodes": nodes,
            "gpu_memory": gmem, "gpu_memory_source": gsrc, "cpu_memory": cmem, "cpu_memory_source": csrc,
            "activation_bytes": act,
            "estimates": [r.to_dict() for r in rows],
            "cheapest": best.to_dict() if best else None,
            "config_patch": best.patch() if best else None, "notes": notes, "_config": cfg,
            **({"params_source": shape["params_source"]} if shape.get("params_source") else {})}
