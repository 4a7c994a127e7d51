"""The pictures of the HTML report, drawn with matplotlib and embedded as inline SVG.

Why matplotlib to SVG (and not plotly): it is already dsdoctor's [plot] extra, the SVG needs no
JavaScript (nothing to fail in the browser, no console errors, opens offline and prints), and a
figure is tens of kB where plotly's embedded bundle alone is ~3.5 MB. The price is no zoom.
Figures are made with matplotlib.figure.Figure directly (no pyplot: no global state, no GUI
backend), series are thinned in report_series.py so a 100k-step run stays small.

Every function returns an SVG string or None when the run has nothing to draw for it.
"""
from __future__ import annotations

import io
import math
import re
from typing import Any

from .report_series import RunSeries

COLOURS = {"bad": "#d62728", "warn": "#ff7f0e", "ok": "#1f77b4", "grey": "#9a9a9a"}
_RC = {"svg.fonttype": "none",          # text stays text: smaller files, selectable labels
       "svg.hashsalt": "dsdoctor",      # stable ids: the same run gives the same file
       "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False}
MANY_RANKS = 8                          # above this, step times are a heatmap


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(w: float, h: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _svg(fig) -> str:
    import matplotlib
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "dsdoctor"})
    text = buf.getvalue()
    return text[text.index("<svg"):]          # drop the XML prolog and DOCTYPE: inline in HTML


def _lowest(keys: list) -> Any:
    return sorted(keys, key=lambda r: (r is None, r or 0))[0]


# --------------------------------------------------------------------- training curves
def training_curves(s: RunSeries) -> str | None:
    import matplotlib
    kinds = [k for k in ("loss", "grad_norm", "loss_scale", "lr")
             if any(kk == k and len(p.xs) > 1 for (kk, _), p in s.curves.items())]
    if s.nonfinite:                     # a single NaN point is worth a panel of its own
        kinds = [k for k in ("loss", "grad_norm", "loss_scale", "lr")
                 if k in kinds or any(kk == k for kk, _, _ in s.nonfinite)]
    if not kinds:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(9, 1.9 * len(kinds) + 0.4)
        axes = fig.subplots(len(kinds), 1, sharex=True, squeeze=False)[:, 0]
        first_bad = min(((st, k, r) for k, r, st in s.nonfinite if st is not None), default=None,
                        key=lambda t: t[0])
        ovf_steps = sorted({st for st, _, _, _ in s.overflows if st is not None})
        last_step = max((max(p.xs) for p in s.curves.values() if p.xs), default=0)
        for ax, kind in zip(axes, kinds):
            ranks = [r for k, r in s.curves if k == kind]
            shown = sorted(ranks, key=lambda r: (r is None, r or 0))[:4]
            for r in shown:
                pts = s.curves[(kind, r)]
                order = sorted(range(len(pts.xs)), key=lambda i: pts.xs[i])
                xs = [pts.xs[i] for i in order]
                ys = [pts.ys[i] for i in order]
                finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
                label = f"rank {r}" if r is not None else "all"
                if kind == "loss_scale":
                    if finite and xs:
                        fx, fy = zip(*finite)
                        fx, fy = list(fx) + [max(last_step, max(xs))], list(fy) + [fy[-1]]
                        ax.plot(fx, fy, drawstyle="steps-post", lw=1.4, label=label)
                elif finite:
                    fx, fy = zip(*finite)
                    ax.plot(fx, fy, lw=1.2, marker="." if len(fx) < 60 else None, ms=3, label=label)
                bad = [x for x, y in zip(xs, ys) if not math.isfinite(y)]
                if bad:
                    top = max((y for _, y in finite), default=1.0)
                    ax.plot(bad, [top] * len(bad), "x", color=COLOURS["bad"], ms=7, mew=2,
                            label="NaN/Inf" if r == shown[0] else None, clip_on=False)
            if kind == "loss_scale":
                ax.set_yscale("log", base=2)
                if ovf_steps:       # markers on top: an overflow at the first NaN stays visible
                    ax.plot(ovf_steps, [1.0] * len(ovf_steps), "v", color=COLOURS["warn"], ms=6, zorder=5,
                            transform=ax.get_xaxis_transform(), clip_on=False,
                            label=f"overflow ({len(ovf_steps)})")
            elif kind == "lr":
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            elif (kind == "grad_norm" and _wide(s, kind, 10)) or (kind == "loss" and _wide(s, kind, 100)):
                ax.set_yscale("log")
            name = s.loss_names.get(_lowest(ranks), "loss") if kind == "loss" else kind.replace("_", " ")
            ax.set_ylabel(name)
            if first_bad is not None:
                ax.axvline(first_bad[0], color=COLOURS["bad"], lw=1.2, ls="--")
            if len(shown) > 1 or ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=7, frameon=False, ncols=3)
        if first_bad is not None:
            st, k, r = first_bad
            axes[0].set_title(f"first non-finite value: {k.replace('_', ' ')} at step {st}"
                              + (f" (rank {r})" if r is not None else ""), color=COLOURS["bad"], loc="left")
        axes[-1].set_xlabel("step")
        return _svg(fig)


def _wide(s: RunSeries, kind: str, ratio: float) -> bool:
    """Log scale: all values positive and spanning more than `ratio` (a spike of 1e4 flattens
    everything else on a linear axis)."""
    ys = [y for (k, _), p in s.curves.items() if k == kind for y in p.ys if math.isfinite(y)]
    return bool(ys) and min(ys) > 0 and max(ys) / min(ys) > ratio


# --------------------------------------------------------------------- step time per rank
def step_times(s: RunSeries, slow: set[int]) -> str | None:
    """Per rank: its own compute (forward, data, backward without the all-reduce) and the whole
    step. A straggler stands out in the first; in the second every rank looks equally slow,
    because the others wait for it inside the collectives."""
    import matplotlib
    ranks = sorted(r for r, p in s.step_ms.items() if p.xs)
    if not ranks or (len(ranks) == 1 and len(s.step_ms[ranks[0]].xs) < 3):
        return None
    own = sorted(r for r, p in s.compute_ms.items() if p.xs)
    with matplotlib.rc_context(_RC):
        if len(ranks) > MANY_RANKS:
            if len(own) == len(ranks):
                return _heatmap(s.compute_ms, own, slow, "own compute per step (ms), median per cell")
            return _heatmap(s.step_ms, ranks, slow, "step time (ms), median per cell")
        panels = ([("own compute (ms)", s.compute_ms, own)] if len(own) > 1 else []) + \
                 [("whole step (ms)", s.step_ms, ranks)]
        fig = _figure(9, 0.6 + 2.3 * len(panels))
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (label, data, rs) in zip(axes, panels):
            for r in rs:
                p = data[r]
                bad = r in slow
                ax.plot(p.xs, p.ys, lw=1.8 if bad else 1.0, color=COLOURS["bad"] if bad else None,
                        label=f"rank {r}" + (" (slow)" if bad else ""), zorder=3 if bad else 2)
            ax.set_ylabel(label)
            ax.legend(loc="best", fontsize=7, frameon=False, ncols=4)
            _clip_outliers(ax, [y for r in rs for y in data[r].ys])
        axes[-1].set_xlabel("step")
        return _svg(fig)


def _clip_outliers(ax, ys: list[float]) -> None:
    """A first step that compiles kernels for seconds should not flatten every other step."""
    ys = sorted(y for y in ys if math.isfinite(y))
    if len(ys) > 20:
        hi = ys[int(0.99 * (len(ys) - 1))]
        if ys[-1] > 3 * hi:
            ax.set_ylim(0, hi * 1.3)


def _heatmap(data: dict, ranks: list[int], slow: set[int], label: str) -> str:
    import numpy as np
    lo = min(min(data[r].xs) for r in ranks)
    hi = max(max(data[r].xs) for r in ranks)
    nbins = int(min(200, max(1, hi - lo + 1)))
    width = (hi - lo + 1) / nbins
    grid = np.full((len(ranks), nbins), np.nan)
    for i, r in enumerate(ranks):
        p = data[r]
        cols: dict[int, list[float]] = {}
        for x, y in zip(p.xs, p.ys):
            cols.setdefault(min(nbins - 1, int((x - lo) / width)), []).append(y)
        for c, v in cols.items():
            grid[i, c] = float(np.median(v))
    fig = _figure(9, min(8.0, 1.2 + 0.12 * len(ranks)))
    ax = fig.subplots()
    vmax = np.nanpercentile(grid, 99) if np.isfinite(grid).any() else None
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", vmax=vmax,
                   extent=(lo, hi + 1, len(ranks) - 0.5, -0.5))
    fig.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("rank")
    ticks = list(range(0, len(ranks), max(1, len(ranks) // 16)))
    ax.set_yticks(ticks, [str(ranks[i]) for i in ticks])
    for i, r in enumerate(ranks):
        if r in slow:
            ax.annotate(f"rank {r} (slow)", xy=(hi + 1, i), xytext=(4, 0), textcoords="offset points",
                        color=COLOURS["bad"], va="center", fontsize=8, annotation_clip=False)
            ax.axhline(i, color=COLOURS["bad"], lw=0.6, alpha=0.7)
    return _svg(fig)


# --------------------------------------------------------------------- memory before an OOM
_MEM_LABEL = {"rss": "host RSS", "available": "host RAM available", "gpu_allocated": "GPU allocated",
              "gpu_reserved": "GPU reserved", "gpu_peak": "GPU peak"}


def memory(s: RunSeries) -> str | None:
    import matplotlib
    if not s.memory and not s.ooms:
        return None
    with matplotlib.rc_context(_RC):
        if s.memory:
            fig = _figure(9, 2.8)
            ax = fig.subplots()
            t0 = s.t0 or 0.0
            for (key, r), p in sorted(s.memory.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
                if len(p.xs) < 1:
                    continue
                xs = [x - t0 for x in p.xs]
                ax.plot(xs, [y / 2 ** 30 for y in p.ys], lw=1.2, marker="." if len(xs) < 40 else None,
                        label=f"{_MEM_LABEL.get(key, key)}" + (f" r{r}" if r is not None else ""))
            for o in s.ooms[:8]:
                if o.time is not None:
                    ax.axvline(o.time - t0, color=COLOURS["bad"], lw=1.4, ls="--")
                    req, avail = o.data.get("requested"), o.data.get("available")
                    label = "OOM" + (f" rank {o.rank}" if o.rank is not None else "")
                    if isinstance(req, (int, float)):
                        label += f": asked {req / 2 ** 30:.2f} GiB"
                    if isinstance(avail, (int, float)):
                        label += f", {avail / 2 ** 30:.2f} GiB available"
                    ax.annotate(label, xy=(o.time - t0, 0.5), xycoords=("data", "axes fraction"), xytext=(-6, 0),
                                textcoords="offset points", ha="right", va="center", color=COLOURS["bad"], fontsize=8,
                                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
            ax.set_xlabel("seconds since the first event")
            ax.set_ylabel("GiB")
            ax.legend(loc="center left", fontsize=7, frameon=False)
            return _svg(fig)
        return _oom_breakdown(s.ooms[0])


def _oom_breakdown(o) -> str | None:
    """The OOM message's own numbers (torch's CUDACachingAllocator wording): where the memory was."""
    d = o.data
    gib = {k: d[k] / 2 ** 30 for k in ("total", "free", "reserved", "allocated", "requested")
           if isinstance(d.get(k), (int, float))}
    if "requested" not in gib or len(gib) < 2:
        return None
    fig = _figure(9, 1.9)
    ax = fig.subplots()
    parts = []
    if "allocated" in gib:
        parts.append(("allocated by PyTorch", gib["allocated"], COLOURS["ok"]))
    if "reserved" in gib and "allocated" in gib:
        parts.append(("reserved, unallocated", max(0.0, gib["reserved"] - gib["allocated"]), "#9ecae1"))
    if "total" in gib and "free" in gib:
        used = gib["total"] - gib["free"]
        parts.append(("other (non-PyTorch)", max(0.0, used - gib.get("reserved", gib.get("allocated", 0.0))), COLOURS["grey"]))
        parts.append(("free", gib["free"], "#e5e5e5"))
    left = 0.0
    for name, v, c in parts:
        ax.barh(["device"], [v], left=left, color=c, label=f"{name}: {v:.2f} GiB")
        left += v
    ax.barh(["request"], [gib["requested"]], color=COLOURS["bad"], label=f"requested: {gib['requested']:.2f} GiB")
    ax.set_xlabel("GiB")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    ax.set_title(f"memory at the OOM" + (f" (rank {o.rank}" + (f", step {o.step})" if o.step is not None else ")")
                                         if o.rank is not None else ""), loc="left")
    return _svg(fig)


# --------------------------------------------------------------------- stall timeline
def stall_timeline(s: RunSeries, stalled: set[int]) -> str | None:
    """Per rank: a bar while it made progress, then where it was when the watchdog judged (the
    stall verdict names the ranks behind and where the others wait)."""
    import matplotlib
    verdicts: dict[Any, Any] = {}
    resolved: dict[Any, Any] = {}
    for ev in s.stalls:            # every rank writes the same verdict: one per id
        key = ev.data.get("id", 1)
        (verdicts if ev.kind == "stall" else resolved).setdefault(key, ev)
    if not verdicts and not stalled:
        return None
    ranks = sorted(set(s.progress) | stalled)
    first_v = min(verdicts.values(), key=lambda e: e.time or 0) if verdicts else None
    where: dict[int, str] = {}
    behind = set(stalled)
    if first_v is not None:
        for b in first_v.data.get("behind") or []:
            if isinstance(b, dict) and isinstance(b.get("rank"), int):
                behind.add(b["rank"])
                where[b["rank"]] = f"stuck at step {b.get('step')} ({b.get('phase')}), no progress for {b.get('age_s')} s"
        for r, at in (first_v.data.get("others") or {}).items():
            if str(r).isdecimal() and isinstance(at, (list, tuple)) and len(at) == 2:
                where.setdefault(int(r), f"waiting at step {at[0]} in {at[1]}")
        behind |= {r for r in first_v.data.get("ranks") or [] if isinstance(r, int)}
        ranks = sorted(set(ranks) | behind | {int(r) for r in where})
    if not ranks:
        return None
    times = [p.first for p in s.progress.values()] + [e.time for e in s.stalls if e.time is not None]
    t0 = s.t0 if s.t0 is not None else min(times, default=0.0)
    end = max([p.last for p in s.progress.values()] + [e.time for e in s.stalls if e.time is not None], default=t0)
    with matplotlib.rc_context(_RC):
        fig = _figure(9, min(8.0, 1.4 + 0.35 * len(ranks)))
        ax = fig.subplots()
        for i, r in enumerate(ranks):
            p = s.progress.get(r)
            bad = r in behind
            colour = COLOURS["bad"] if bad else COLOURS["ok"]
            last = p.last if p else t0
            if p:
                ax.barh(i, max(p.last - p.first, (end - t0) * 0.004), left=p.first - t0, height=0.5, color=colour)
            if end > last:
                ax.plot([last - t0, end - t0], [i, i], ls=":" if bad else "-", color=colour if bad else COLOURS["grey"],
                        lw=1.5 if bad else 1.0)
            text = (f"last step {p.last_step}" if p and p.last_step is not None else "no step seen")
            if r in where:
                text += f"; at the verdict: {where[r]}"
            ax.annotate(text, xy=(last - t0, i), xytext=(4, 7), textcoords="offset points", va="bottom",
                        fontsize=8, color=colour if bad else "black")
        for key, ev in sorted(verdicts.items(), key=lambda kv: kv[1].time or 0):
            if ev.time is not None:
                ax.axvline(ev.time - t0, color=COLOURS["bad"], lw=1.2, ls="--")
                ax.annotate(f"stall verdict {key}: waited {ev.data.get('waited_s', '?')} s", xy=(ev.time - t0, 0),
                            xycoords=("data", "axes fraction"), xytext=(-4, 4), textcoords="offset points",
                            ha="right", va="bottom", fontsize=8, color=COLOURS["bad"])
        for key, ev in resolved.items():
            if ev.time is not None:
                ax.axvline(ev.time - t0, color=COLOURS["ok"], lw=1.2, ls="--")
                ax.annotate(f"stall {key} resolved", xy=(ev.time - t0, 0), xycoords=("data", "axes fraction"),
                            xytext=(4, 4), textcoords="offset points", va="bottom", fontsize=8, color=COLOURS["ok"])
        ax.set_yticks(range(len(ranks)), [f"rank {r}" for r in ranks])
        ax.set_ylim(len(ranks) - 0.4, -0.9)
        ax.set_xlabel("seconds since the first event (bar: steps seen; dotted red: no progress; grey: waiting)")
        ax.set_xlim(0, (end - t0) * 1.02 + 1e-3)
        return _svg(fig)


def clean_svg(svg: str) -> str:
    """Inline SVG without a fixed pixel size: it scales with the page."""
    return re.sub(r'(<svg[^>]*?) width="[^"]+" height="[^"]+"', r"\1", svg, count=1)
