"""Find the interesting LRs of an LR range test on a smoothed curve.

An LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", §3.3;
DeepSpeed's `LRRangeTest` scheduler, docs/_tutorials/lrrt.md) raises the LR every step and
records the loss. Read left to right the curve has: a flat start (LR too small to learn),
a descent, a minimum, and a blow-up. We report
- `lr_start`:    where learning starts (the smoothed loss has made 10% of its total drop);
- `lr_steepest`: where the smoothed loss falls fastest per unit of log(LR) (Smith's "loss
                 decreasing fastest"; fastai's "steepest" suggestion), between start and minimum;
- `lr_min_loss`: where the smoothed loss is lowest;
- `lr_diverge`:  the first LR past the minimum where the smoothed loss has given back half of
                 what it learned (loss >= min + 0.5 * (start - min)), or the loss is nan/inf.

Smoothing: a centred rolling median (robust to the single huge losses of a blowing-up run)
followed by a centred rolling mean; centred windows add no lag, unlike the exponential
average used by fastai, which shifts the minimum to higher LRs. The window is about 1/15 of
the points (at least 5). A staircase sweep (`lr_range_test_staircase: true`) is first reduced
to one point per LR level (the median loss of the level).
Pure Python: a range test has hundreds to a few thousand points.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from .curve import Curve, LRRangeError

MIN_POINTS = 20          # fewer steps cannot show a descent, a minimum and a blow-up
MIN_LEVELS = 8           # a staircase sweep: distinct LR levels
START_FRACTION = 0.10    # learning has started once this share of the total drop is made
DIVERGE_FRACTION = 0.5   # diverged once the loss gave back this share of the drop
SWEEP_FACTOR = 10        # a sweep that did not diverge should go this much higher


@dataclass
class Analysis:
    lrs: list[float]              # the usable part of the curve (up to the first non-finite loss)
    losses: list[float]
    smooth: list[float]
    lr_start: float
    lr_steepest: float
    lr_min_loss: float
    lr_diverge: float
    loss_start: float
    loss_min: float
    diverged_by: str              # "rise" or "nonfinite"
    source: str = ""
    notes: list[str] = field(default_factory=list)
    all_lrs: list[float] = field(default_factory=list)       # the whole run, for the plot
    all_losses: list[float] = field(default_factory=list)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


MAX_WINDOW = 101         # reached at ~1500 points: beyond, a wider window smooths nothing more
                         # and made the work quadratic (100k rows took 25 s)


def _rolling(values: list[float], half: int, fn) -> list[float]:
    n = len(values)
    return [fn(values[max(0, i - half): min(n, i + half + 1)]) for i in range(n)]


def _rolling_mean(values: list[float], half: int) -> list[float]:
    """Centred rolling mean from prefix sums: linear whatever the window."""
    n = len(values)
    acc = [0.0]
    for v in values:
        acc.append(acc[-1] + v)
    return [(acc[min(n, i + half + 1)] - acc[max(0, i - half)]) / (min(n, i + half + 1) - max(0, i - half))
            for i in range(n)]


def window_for(n: int) -> int:
    return min(MAX_WINDOW, max(5, n // 15))


def smooth_losses(losses: list[float], window: int | None = None) -> list[float]:
    w = min(MAX_WINDOW, window or window_for(len(losses)))
    half = max(1, w // 2)
    med = _rolling(losses, half, statistics.median)     # n x (window log window): linear in n
    return _rolling_mean(med, half)


def _collapse_stairs(lrs: list[float], losses: list[float]) -> tuple[list[float], list[float], bool]:
    levels: list[tuple[float, list[float]]] = []
    for lr, loss in zip(lrs, losses):
        if levels and lr == levels[-1][0]:
            levels[-1][1].append(loss)
        else:
            levels.append((lr, [loss]))
    if len(levels) > 0.5 * len(lrs):
        return lrs, losses, False
    out_loss = []
    for _, ls in levels:
        fin = [x for x in ls if math.isfinite(x)]
        # a level with any non-finite loss diverged; otherwise its median
        out_loss.append(statistics.median(fin) if len(fin) == len(ls) else math.inf)
    return [lr for lr, _ in levels], out_loss, True


def _check_lrs(curve: Curve) -> tuple[list[float], list[float], list[str]]:
    notes: list[str] = []
    pts = [(lr, loss) for lr, loss in zip(curve.lrs, curve.losses) if math.isfinite(lr) and lr > 0]
    if len(pts) < len(curve):
        notes.append(f"{len(curve) - len(pts)} point(s) with LR <= 0 or not finite were left out")
    if len(pts) < MIN_POINTS:
        raise LRRangeError(f"{curve.source}: too few points ({len(pts)} steps with an LR and a loss); an LR "
                           f"range test needs at least {MIN_POINTS}, typically a few hundred: run more steps")
    lrs = [p[0] for p in pts]
    lo, hi = min(lrs), max(lrs)
    if hi <= lo * 1.05:
        raise LRRangeError(f"{curve.source}: the LR is constant ({_fmt(lo)}) over {len(lrs)} steps, so this is not an "
                           "LR range test; run one with the scheduler {\"type\": \"LRRangeTest\", \"params\": "
                           "{\"lr_range_test_min_lr\": ..., \"lr_range_test_step_size\": ..., \"lr_range_test_step_rate\": ...}}")
    drops = sum(1 for a, b in zip(lrs, lrs[1:]) if b < a * (1 - 1e-9))
    if drops > max(1, 0.02 * len(lrs)):
        raise LRRangeError(f"{curve.source}: the LR goes down at {drops} of {len(lrs)} steps; an LR range test only "
                           "raises it (is this a OneCycle or warmup/decay run?)")
    return lrs, [p[1] for p in pts], notes


def _no_divergence(src: str, lrs: list[float], smooth: list[float], i_min: int) -> LRRangeError:
    lr0, lr1 = lrs[0], lrs[-1]
    k = (SWEEP_FACTOR * lr1 - lr0) / (lr1 - lr0)
    state = "was still falling" if i_min >= len(lrs) - 3 else f"was lowest at LR {_fmt(lrs[i_min])} but did not blow up"
    return LRRangeError(
        f"{src}: no divergence reached: the loss {state} at the last LR {_fmt(lr1)}, so the upper bound is unknown. "
        f"Sweep higher, to about {_fmt(SWEEP_FACTOR * lr1)}: multiply lr_range_test_step_rate by {k:.3g} "
        f"(same steps), or run {k:.3g}x as many steps")


def analyze(curve: Curve) -> Analysis:
    src = curve.source or "input"
    all_lrs, all_losses, notes = _check_lrs(curve)
    lrs, losses, stairs = _collapse_stairs(all_lrs, all_losses)
    if stairs:
        notes.append(f"staircase sweep: {len(lrs)} LR levels, one point (median loss) per level")
        if len(lrs) < MIN_LEVELS:
            raise LRRangeError(f"{src}: too few LR levels ({len(lrs)}) in this staircase sweep; use at least "
                               f"{MIN_LEVELS} (more steps, or a smaller lr_range_test_step_size)")
    first_bad = next((i for i, x in enumerate(losses) if not math.isfinite(x)), None)
    if first_bad == 0:
        raise LRRangeError(f"{src}: the loss is {losses[0]} from the first step (LR {_fmt(lrs[0])}): the run was broken "
                           "before the LR mattered (see `dsdoctor analyze` on its logs)")
    usable = first_bad if first_bad is not None else len(lrs)
    min_usable = MIN_LEVELS if stairs else MIN_POINTS
    if usable < min_usable:
        raise LRRangeError(f"{src}: the loss became {losses[usable]} after only {usable} points (LR {_fmt(lrs[usable])}): "
                           f"too few to see learning start; start the sweep lower (lr_range_test_min_lr / 10) "
                           "or raise the LR more slowly")
    if first_bad is not None:
        later = sum(1 for x in losses[first_bad:] if math.isfinite(x))
        notes.append(f"the loss is non-finite from LR {_fmt(lrs[first_bad])} on"
                     + (f" ({later} finite value(s) after it ignored)" if later else ""))
    ul, uloss = lrs[:usable], losses[:usable]
    sm = smooth_losses(uloss, max(3, usable // 15) if stairs else None)
    i_min = min(range(usable), key=sm.__getitem__)
    start, lo = sm[0], sm[i_min]
    drop = start - lo
    if i_min == 0 or drop <= 0.05 * abs(start):
        raise LRRangeError(f"{src}: the loss never really decreased (from {_fmt(start)} to at best {_fmt(lo)}): "
                           f"either the sweep starts too high (try lr_range_test_min_lr {_fmt(ul[0] / 100)}) "
                           "or the model does not learn at any LR")
    i_start = next(i for i in range(i_min + 1) if sm[i] <= start - START_FRACTION * drop)
    threshold = lo + DIVERGE_FRACTION * drop
    i_div = next((i for i in range(i_min + 1, usable) if sm[i] >= threshold), None)
    if i_div is not None:
        lr_div, how = ul[i_div], "rise"
    elif first_bad is not None:
        lr_div, how = lrs[first_bad], "nonfinite"
    else:
        raise _no_divergence(src, ul, sm, i_min)
    # steepest descent per log(LR), over a span of the smoothing window, before the minimum
    h = max(1, window_for(usable) // 2)
    best, i_steep = 0.0, i_start
    for i in range(0, i_min + 1):
        a, b = max(0, i - h), min(usable - 1, i + h)
        dx = math.log(ul[b]) - math.log(ul[a])
        if dx <= 0:
            continue
        slope = (sm[b] - sm[a]) / dx
        if slope < best:
            best, i_steep = slope, i
    return Analysis(lrs=ul, losses=uloss, smooth=sm, lr_start=ul[i_start], lr_steepest=ul[i_steep],
                    lr_min_loss=ul[i_min], lr_diverge=lr_div, loss_start=start, loss_min=lo,
                    diverged_by=how, source=src, notes=curve.notes + notes,
                    all_lrs=lrs, all_losses=losses)
