"""The run context: what rules may know about the run besides the symptom.

Filled from the user's ds_config (--config), from `context` events (facts a log or a live
hook revealed: the world size in a batch assertion, the versions in a banner, the live
engine's settings), and from the environment probe. Values never seen stay None, and
rules must cope with None (`zero_stage is None or zero_stage < 3`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .expr import get_path

# name -> meaning. Every name is always present in `names()`, None when unknown.
FACTS = {
    "world_size": "number of ranks",
    "zero_stage": "ZeRO stage 0-3",
    "fp16": "fp16.enabled",
    "bf16": "bf16.enabled",
    "dtype": "'fp16' | 'bf16' | 'fp32'",
    "micro_batch": "train_micro_batch_size_per_gpu",
    "gas": "gradient_accumulation_steps",
    "train_batch": "train_batch_size",
    "offload_optimizer": "zero_optimization.offload_optimizer.device ('none'|'cpu'|'nvme')",
    "offload_param": "zero_optimization.offload_param.device ('none'|'cpu'|'nvme')",
    "pin_memory": "pin_memory of an enabled offload block",
    "overlap_comm": "zero_optimization.overlap_comm (default: stage == 3)",
    "gradient_clipping": "gradient_clipping (DeepSpeed default 1.0)",
    "initial_scale_power": "fp16.initial_scale_power (default 16)",
    "min_loss_scale": "fp16.min_loss_scale (default 1)",
    "loss_scale_window": "fp16.loss_scale_window (default 1000)",
    "hysteresis": "fp16.hysteresis (default 2)",
    "scheduler": "scheduler.type",
    "total_num_steps": "scheduler.params.total_num_steps (WarmupDecayLR, WarmupCosineLR)",
    "gpu_name": "GPU model",
    "gpu_count": "GPUs on this node",
    "bf16_supported": "the GPU supports bf16 (compute capability >= 8.0)",
    "ds_version": "DeepSpeed version",
    "torch_version": "torch version",
    "cuda_version": "CUDA version torch was built with (stated in an issue body: ds_report, collect_env)",
    "python_version": "Python version (stated in an issue body)",
    "transformers_version": "transformers version (stated in an issue body)",
    "accelerate_version": "accelerate version (stated in an issue body)",
    "nccl_version": "NCCL version of the nvidia-nccl wheel (stated in an issue body: pip list)",
    "driver_version": "NVIDIA driver version (stated in an issue body: nvidia-smi)",
    "has_config": "the user's ds_config is known",
}


@dataclass
class Context:
    config: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    _dtype_given: bool = False       # a live hook said the dtype; do not re-derive it
    pasted: bool = False             # the config and facts came from an issue body's text: the log wins

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, pasted: bool = False, **facts: Any) -> "Context":
        ctx = cls(config=config, pasted=pasted)
        if config:
            ctx.facts.update({k: v for k, v in facts_from_config(config).items() if v is not None})
        ctx.facts.update({k: v for k, v in facts.items() if v is not None})
        ctx._derive()
        return ctx

    def learn(self, facts: dict[str, Any]) -> None:
        """Add facts seen in the run. The user's config wins over what logs suggest."""
        if facts.get("dtype") is not None:
            self._dtype_given = True
        for k, v in facts.items():
            if v is not None and (self.facts.get(k) is None or not self.config or self.pasted):
                self.facts[k] = v
        self._derive()

    def _derive(self) -> None:
        f = self.facts
        if not self._dtype_given and (f.get("fp16") is not None or f.get("bf16") is not None):
            f["dtype"] = "fp16" if f.get("fp16") else "bf16" if f.get("bf16") else "fp32"
        mb, gas, tb, ws = f.get("micro_batch"), f.get("gas"), f.get("train_batch"), f.get("world_size")
        if ws is None and mb and gas and tb:
            ws = tb // (mb * gas) if tb % (mb * gas) == 0 else None
            if ws:
                f["world_size"] = ws
        if gas is None and mb and tb and ws and tb % (mb * ws) == 0:
            f["gas"] = tb // (mb * ws)

    def names(self) -> dict[str, Any]:
        d = {k: None for k in FACTS}
        d.update(self.facts)
        d["config"] = self.config or {}
        d["has_config"] = bool(self.config)
        return d


def facts_from_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Read the facts rules use from a ds_config, with DeepSpeed's defaults where they matter."""
    g = lambda path, default=None: get_path(cfg, path, default)  # noqa: E731
    zero = cfg.get("zero_optimization")
    stage = None
    if isinstance(zero, dict):
        stage = zero.get("stage", 0)
    elif zero is True:
        stage = 1
    elif zero is None or zero is False:
        stage = 0
    try:
        stage = int(stage) if stage is not None else None
    except (TypeError, ValueError):
        stage = None
    fp16 = g("fp16.enabled", False) if isinstance(cfg.get("fp16"), dict) else False
    bf16_block = cfg.get("bf16", cfg.get("bfloat16"))
    bf16 = bf16_block.get("enabled", False) if isinstance(bf16_block, dict) else False
    # HF's "auto": the Trainer's --fp16/--bf16 decide, so the dtype is not known from the config
    fp16, bf16 = (None, None) if "auto" in (fp16, bf16) else (bool(fp16), bool(bf16))

    def num(v):
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    off_opt = g("zero_optimization.offload_optimizer.device", "none") or "none"
    off_par = g("zero_optimization.offload_param.device", "none") or "none"
    if g("zero_optimization.cpu_offload") is True:
        off_opt = "cpu"
    pin = None
    for blk in ("offload_optimizer", "offload_param"):
        if g(f"zero_optimization.{blk}.device", "none") not in (None, "none"):
            pin = bool(g(f"zero_optimization.{blk}.pin_memory", True)) or bool(pin)
    overlap = g("zero_optimization.overlap_comm")
    if overlap is None and stage is not None:
        overlap = stage == 3
    sched = g("scheduler.type")
    gas = num(cfg.get("gradient_accumulation_steps"))
    if gas is None and cfg.get("train_batch_size") is None and num(cfg.get("train_micro_batch_size_per_gpu")):
        gas = 1            # DeepSpeed's default when only the micro-batch is given
    return {
        "zero_stage": stage, "fp16": fp16, "bf16": bf16,
        "micro_batch": num(cfg.get("train_micro_batch_size_per_gpu")),
        "gas": gas,
        "train_batch": num(cfg.get("train_batch_size")),
        "offload_optimizer": str(off_opt), "offload_param": str(off_par), "pin_memory": pin,
        "overlap_comm": overlap,
        "gradient_clipping": num(cfg.get("gradient_clipping", 1.0)),
        "initial_scale_power": num(g("fp16.initial_scale_power", 16)) if fp16 else None,
        "min_loss_scale": num(g("fp16.min_loss_scale", 1)) if fp16 else None,
        "loss_scale_window": num(g("fp16.loss_scale_window", 1000)) if fp16 else None,
        "hysteresis": num(g("fp16.hysteresis", 2)) if fp16 else None,
        "scheduler": sched if isinstance(sched, str) else None,
        "total_num_steps": num(g("scheduler.params.total_num_steps")),
    }
