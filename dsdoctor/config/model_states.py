"""Model-state memory per GPU / per node for each ZeRO stage and offload choice.

Numbers come from DeepSpeed's own estimators (deepspeed/runtime/zero/stage_1_and_2.py: estimate_zero2_model_states_mem_needs, stage3.py: estimate_zero3_model_states_mem_needs):
  deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs  (stage 2; stage 0 = one GPU)
  deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs          (stage 3, zero_init=True)
When deepspeed does not import, the same formulas (checked against 0.19.8) are used.
Stage 1 has no DeepSpeed estimator: fp16 params and gradients stay whole (2P + 2P), the
16P of fp32 master weights + Adam states is sharded over all N GPUs; with CPU offload stage 1
runs DeepSpeed's stage-1/2 optimizer and the stage-2 offload estimate is used.

Activations are NOT included unless sequence length, hidden size, layers and micro-batch are
given; then per layer s*b*h*(34 + 5*a*s/h) bytes (16-bit activations, no recomputation, no
tensor/sequence parallelism; Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models", Eq. 1), or 34*s*b*h when the number of heads a is not given
(attention scores not stored, as with flash attention).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .deepspeed_import import deepspeed_module

BUFFER_FACTOR = 1.5      # DeepSpeed's additional_buffer_factor default


def zero2(total: int, gpus: int, nodes: int, cpu_offload: bool, f: float = BUFFER_FACTOR) -> tuple[int, int]:
    """(cpu bytes per node, gpu bytes per GPU), as DeepSpeed computes them."""
    if deepspeed_module() is not None:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
        cpu, gpu = estimate_zero2_model_states_mem_needs(total, gpus, nodes, cpu_offload, f)
        return int(cpu), int(gpu)
    n = gpus * nodes                                     # stage_1_and_2.py:4017-4034
    if cpu_offload:
        return int(total * max(4 * n, 16) * f), 2 * total
    return int(total * 4 * gpus * f), int(2 * total + int(18 * total / n))


def zero3(total: int, largest: int, gpus: int, nodes: int, offload_opt: bool, offload_param: bool,
          f: float = BUFFER_FACTOR) -> tuple[int, int]:
    """(cpu bytes per node, gpu bytes per GPU), zero_init=True, as DeepSpeed computes them."""
    if deepspeed_module() is not None:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(total, largest, gpus, nodes, offload_opt,
                                                            offload_param, True, f)
        return int(cpu), int(gpu)
    n, h = gpus * nodes, 1 / nodes                       # stage3.py:4016-4052
    if offload_opt:
        if offload_param:
            return int(total * 18 * h * f), 4 * largest
        return int(total * 16 * h * f), int(4 * largest + int(2 * total / n))
    return int(4 * largest * gpus * f), int(4 * largest + int(18 * total / n))


@dataclass
class Estimate:
    stage: int
    offload_optimizer: str
    offload_param: str
    gpu_bytes: int
    cpu_bytes: int | None
    source: str
    fits: bool | None = None

    def patch(self) -> dict[str, Any]:
        z: dict[str, Any] = {"stage": self.stage}
        z["offload_optimizer"] = {"device": self.offload_optimizer} if self.offload_optimizer != "none" else None
        if self.stage == 3:
            z["offload_param"] = {"device": self.offload_param} if self.offload_param != "none" else None
        if self.offload_optimizer == "nvme" or self.offload_param == "nvme":
            for k in ("offload_optimizer", "offload_param"):
                if z.get(k):
                    z[k]["nvme_path"] = "/local_nvme"
        return {"zero_optimization": z}

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "offload_optimizer": self.offload_optimizer,
                "offload_param": self.offload_param, "gpu_bytes": self.gpu_bytes,
                "cpu_bytes": self.cpu_bytes, "fits": self.fits, "source": self.source}


def estimates(total: int, largest: int | None = None, gpus: int = 1, nodes: int = 1) -> list[Estimate]:
    """Every stage/offload row, cheapest (least communication and host traffic) first."""
    largest = largest or max(1, total // 10)
    n = gpus * nodes
    e2 = "deepspeed estimate_zero2_model_states_mem_needs"
    e3 = "deepspeed estimate_zero3_model_states_mem_needs"
    cpu0, gpu0 = zero2(total, 1, 1, False)
    cpu_load = zero2(total, gpus, 1, False)[0]
    rows = [
        Estimate(0, "none", "none", gpu0, cpu_load, e2 + " (1 GPU: nothing sharded)"),
        Estimate(1, "none", "none", 4 * total + int(16 * total / n), cpu_load,
                 "derived: 2P params + 2P grads + 16P/N optimizer states (no DeepSpeed stage-1 estimator)"),
    ]
    c, g = zero2(total, gpus, nodes, False)
    rows.append(Estimate(2, "none", "none", g, c, e2))
    c, g = zero3(total, largest, gpus, nodes, False, False)
    rows.append(Estimate(3, "none", "none", g, c, e3))
    c, g = zero2(total, gpus, nodes, True)
    rows.append(Estimate(1, "cpu", "none", g, c, e2 + " (cpu_offload; stage 1 offload uses the same optimizer)"))
    rows.append(Estimate(2, "cpu", "none", g, c, e2 + " (cpu_offload)"))
    c, g = zero3(total, largest, gpus, nodes, True, False)
    rows.append(Estimate(3, "cpu", "none", g, c, e3 + " (offload optimizer)"))
    c, g = zero3(total, largest, gpus, nodes, True, True)
    rows.append(Estimate(3, "cpu", "cpu", g, c, e3 + " (offload optimizer and params)"))
    rows.append(Estimate(3, "nvme", "nvme", g, None,
                         e3 + " GPU figure; host memory depends on the NVMe buffers (not estimated)"))
    return rows


def activation_bytes(seq: int, hidden: int, layers: int, micro_batch: int, heads: int | None = None) -> int:
    """Korthikanti et al. 2022 Eq. 1: s*b*h*(34 + 5*a*s/h) bytes per layer (no recomputation)."""
    per = seq * micro_batch * hidden * (34 + (5 * heads * seq / hidden if heads else 0))
    return int(per * layers)


def check_fit(rows: list[Estimate], gpu_memory: int | None, cpu_memory: int | None,
              extra_gpu: int = 0) -> Estimate | None:
    """Mark rows that fit; return the first (cheapest) that does."""
    best = None
    for r in rows:
        if gpu_memory is None:
            r.fits = None
            continue
        ok = r.gpu_bytes + extra_gpu <= gpu_memory
        if ok and cpu_memory is not None and r.cpu_bytes is not None:
            ok = r.cpu_bytes <= cpu_memory
        r.fits = ok
        if ok and best is None:
            best = r
    return best
