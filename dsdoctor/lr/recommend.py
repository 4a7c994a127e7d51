"""From the LRs of a range test to DeepSpeed scheduler blocks.

The heuristic, and why (sources):
- Smith 2017 ("Cyclical Learning Rates for Training Neural Networks", §3.3): the LR range
  test; the upper bound of a cycle is where the loss stops falling (here `lr_min_loss`), the
  lower bound where it starts falling, or a third to a quarter of the upper bound.
- Smith & Topin 2017 ("Super-Convergence") and Smith 2018 ("A disciplined approach to neural
  network hyper-parameters: Part 1"): one cycle up and down over most of the run, min LR
  about a tenth of the max, momentum cycled inversely 0.95 -> 0.85, and the last few percent
  of steps annihilate the LR well below the minimum.
- DeepSpeed's LRRT tutorial (docs/_tutorials/lrrt.md): cycle_max_lr somewhat *below* where
  the loss starts to diverge, because at the point of divergence the run may not recover.
- The "cycle_min_lr = 50% of the best-loss LR, cycle_max_lr = 90% of the divergence LR" rule
  of the article we were given is that article's own heuristic, not DeepSpeed guidance.

What we choose:
- cycle_max_lr = min(lr_min_loss, 0.9 * lr_diverge): Smith's "where the loss stops falling",
  kept at least 10% below divergence (the tutorial's margin; the 90% of the article becomes
  only a cap). On a linear DeepSpeed sweep the loss minimum can sit right before the blow-up,
  so the cap matters.
- cycle_min_lr = cycle_max_lr / 10 (Smith & Topin). The article's 50% gives a 2x range,
  too narrow for the warm-up half of the cycle to do its job.
- cycle: 90% of the planned steps, split evenly; the last 10% decay the LR from
  cycle_min_lr to a tenth of it (decay_lr_rate 0.9 over 10 decay_step_size intervals).
- momentum (Adam's beta1, or any optimizer with `betas`): 0.95 at the LR minimum, 0.85 at its
  peak. DeepSpeed's OneCycle sets betas to (mom, 0.99), so Adam's beta2 becomes 0.99.
- Alternatives hold their peak for long (WarmupLR: constant after warm-up) or decay from it
  right after a short warm-up (WarmupCosineLR), so they peak lower than OneCycle: at
  lr_steepest (where the loss falls fastest; fastai's suggestion for a fixed LR), kept
  between cycle_min_lr and half of cycle_max_lr; warm-up over 5% of the steps.
LR values are rounded to two significant digits.
"""
from __future__ import annotations

from typing import Any

from .analysis import Analysis

DEFAULT_TOTAL_STEPS = 10000
MAX_LR_DIVERGE_MARGIN = 0.9
MIN_MAX_RATIO = 10.0
CYCLE_SHARE = 0.9
WARMUP_SHARE = 0.05


def sig2(x: float) -> float:
    return float(f"{x:.2g}")


def sig4(x: float) -> float:
    """Reported LRs: 4 significant digits (TensorBoard stores float32: 0.15399999916 -> 0.154)."""
    return float(f"{x:.4g}")


def one_cycle(a: Analysis, total_steps: int) -> dict[str, Any]:
    max_lr = sig2(min(a.lr_min_loss, MAX_LR_DIVERGE_MARGIN * a.lr_diverge))
    min_lr = sig2(max_lr / MIN_MAX_RATIO)
    cycle = max(2, int(round(CYCLE_SHARE * total_steps)))
    first = cycle // 2
    decay = max(0, total_steps - cycle)
    return {"type": "OneCycle", "params": {
        "cycle_min_lr": min_lr,
        "cycle_max_lr": max_lr,
        "decay_lr_rate": 0.9 if decay >= 10 else 0.0,
        "cycle_first_step_size": first,
        "cycle_second_step_size": cycle - first,
        "cycle_first_stair_count": 0,
        "cycle_second_stair_count": 0,
        "decay_step_size": max(1, decay // 10) if decay >= 10 else 0,
        "cycle_momentum": True,
        "cycle_min_mom": 0.85,
        "cycle_max_mom": 0.95,
        "decay_mom_rate": 0.0,
    }}


def sustained_lr(a: Analysis, cycle: dict[str, Any]) -> float:
    p = cycle["params"]
    return sig2(min(max(a.lr_steepest, p["cycle_min_lr"]), p["cycle_max_lr"] / 2))


def alternatives(a: Analysis, cycle: dict[str, Any], total_steps: int) -> list[dict[str, Any]]:
    peak = sustained_lr(a, cycle)
    warm = max(2, int(round(WARMUP_SHARE * total_steps)))
    return [
        {"type": "WarmupLR", "params": {"warmup_min_lr": 0.0, "warmup_max_lr": peak,
                                        "warmup_num_steps": warm, "warmup_type": "linear"},
         "note": f"linear warm-up to {peak} over {warm} steps, then constant"},
        {"type": "WarmupCosineLR", "params": {"total_num_steps": total_steps, "warmup_min_ratio": 0.0,
                                              "warmup_num_steps": warm, "cos_min_ratio": 0.0001,
                                              "warmup_type": "linear"},
         "optimizer_lr": peak,
         "note": (f"scales the optimizer's lr: set optimizer.params.lr to {peak}; warm-up over {warm} "
                  f"steps, cosine decay to {peak * 0.0001:.2g} at step {total_steps}")},
    ]


def recommendation(a: Analysis, total_steps: int = DEFAULT_TOTAL_STEPS) -> dict[str, Any]:
    """The `--json` document: {recommendation, alternatives, lr_steepest, lr_min_loss, lr_diverge}."""
    cycle = one_cycle(a, total_steps)
    return {"recommendation": cycle, "alternatives": alternatives(a, cycle, total_steps),
            "lr_steepest": sig4(a.lr_steepest), "lr_min_loss": sig4(a.lr_min_loss), "lr_diverge": sig4(a.lr_diverge)}
