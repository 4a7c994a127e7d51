"""The memory fit check of `dsdoctor doctor --params`: the config's own ZeRO stage/offload row
of the estimate (config/model_states.py) against the GPU."""
from __future__ import annotations

from typing import Any

from ..context import facts_from_config
from .problems import Problem


def fit_problems(est: dict[str, Any], cfg: dict[str, Any] | None) -> list[Problem]:
    """The config's row (`config_row`), and before it `model_states_exceed_gpu` when that row
    does not fit the GPU."""
    if cfg is None:
        return []
    f = facts_from_config(cfg)
    stage = f.get("zero_stage") or 0
    opt = f.get("offload_optimizer") or "none"
    par = f.get("offload_param") if stage == 3 else "none"
    if stage < 3 and opt == "nvme":
        # stage 1/2 offload the optimizer to the CPU whatever the device says
        # (deepspeed/runtime/zero/stage_1_and_2.py: DeepSpeedZeroOptimizer.__init__, cpu_offload)
        opt = "cpu"
    row = next((r for r in est["estimates"] if (r["stage"], r["offload_optimizer"], r["offload_param"])
                == (stage, opt, par or "none")), None)
    if row is None:
        return []
    out = [Problem("config_row", "zero_optimization", {"row": row})]
    if est.get("gpu_memory") and row["gpu_bytes"] > est["gpu_memory"]:
        best = est.get("cheapest")
        out.insert(0, Problem("model_states_exceed_gpu", "zero_optimization.stage", {
            "row": row, "needed": row["gpu_bytes"], "gpu_memory": est["gpu_memory"], "params": est["params"],
            "zero_stage": stage, "offload_optimizer": opt, "offload_param": par or "none",
            "best_stage": best and best["stage"], "best_offload_optimizer": best and best["offload_optimizer"],
            "best_offload_param": best and best["offload_param"],
            "patch": est.get("config_patch")}))
    return out
