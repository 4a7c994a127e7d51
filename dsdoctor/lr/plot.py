"""Draw an LR range test: a small text plot for the terminal, a PNG with matplotlib.

The text plot is hand-made (a character grid, log-scale LR axis) so that it needs nothing
beyond the core and looks the same in a log file as in a terminal.
"""
from __future__ import annotations

import math
from pathlib import Path

from .analysis import Analysis
from .curve import LRRangeError

MARKS = (("S", "lr_steepest"), ("M", "lr_min_loss"), ("D", "lr_diverge"))


def _y_range(a: Analysis) -> tuple[float, float]:
    """From just below the minimum to a bit above the start: the blow-up is clipped."""
    lo, hi = a.loss_min, a.loss_start + 0.3 * (a.loss_start - a.loss_min)
    y0 = lo - 0.05 * (hi - lo)
    return (max(0.0, y0) if lo >= 0 else y0), hi


def text_plot(a: Analysis, width: int = 64, height: int = 14) -> str:
    x0, x1 = math.log10(min(a.all_lrs)), math.log10(max(max(a.all_lrs), a.lr_diverge))
    y0, y1 = _y_range(a)
    span_x = (x1 - x0) or 1.0

    def col(lr: float) -> int:
        return min(width - 1, max(0, int((math.log10(lr) - x0) / span_x * (width - 1) + 0.5)))

    def row(v: float) -> int:
        v = min(max(v, y0), y1)
        return min(height - 1, max(0, int((y1 - v) / (y1 - y0) * (height - 1) + 0.5)))

    grid = [[" "] * width for _ in range(height)]
    for lr, loss in zip(a.all_lrs, a.all_losses):      # raw points, the diverged tail at the top
        r = row(loss) if math.isfinite(loss) else 0
        if grid[r][col(lr)] == " ":
            grid[r][col(lr)] = "·"
    for lr, s in zip(a.lrs, a.smooth):
        grid[row(s)][col(lr)] = "•"
    for ch, name in MARKS:
        c = col(getattr(a, name))
        for r in range(height):
            if grid[r][c] in (" ", "·"):
                grid[r][c] = "│"
        grid[0][c] = ch
    label_w = 9
    lines = []
    for r, cells in enumerate(grid):
        v = y1 - r * (y1 - y0) / (height - 1)
        label = f"{v:>{label_w}.3g}" if r in (0, height // 2, height - 1) else " " * label_w
        lines.append(f"{label} ┤{''.join(cells)}")
    lines.append(" " * label_w + " └" + "─" * width)
    left, right = f"{10 ** x0:.2g}", f"{10 ** x1:.2g}"
    lines.append(" " * (label_w + 2) + left + " " * max(1, width - len(left) - len(right) - 9)
                 + right + "  LR (log)")
    lines.append(" " * (label_w + 2) + "· loss  • smoothed  S steepest  M min loss  D diverges")
    return "\n".join(lines)


def png_plot(a: Analysis, out: Path, recommendation: dict | None = None, force: bool = False) -> Path:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LRRangeError("--plot needs matplotlib (pip install 'dsdoctor[plot]')") from None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    fin = [(lr, x) for lr, x in zip(a.all_lrs, a.all_losses) if math.isfinite(x)]
    ax.plot([p[0] for p in fin], [p[1] for p in fin], ".", ms=3, alpha=0.35, color="tab:gray", label="loss")
    ax.plot(a.lrs, a.smooth, "-", lw=2, color="tab:blue", label="smoothed")
    colors = {"lr_steepest": "tab:green", "lr_min_loss": "tab:orange", "lr_diverge": "tab:red"}
    for _, name in MARKS:
        v = getattr(a, name)
        ax.axvline(v, ls="--", lw=1, color=colors[name], label=f"{name} = {v:.3g}")
    if recommendation:
        p = recommendation["params"]
        ax.axvspan(p["cycle_min_lr"], p["cycle_max_lr"], color="tab:blue", alpha=0.08,
                   label=f"OneCycle {p['cycle_min_lr']:.2g} – {p['cycle_max_lr']:.2g}")
    ax.set_xscale("log")
    y0, y1 = _y_range(a)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(f"LR range test · {Path(a.source).name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    from ..config_io import ConfigError, create_output
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")      # PNG whatever the name: "/dir" must not become "/dir.png"
    finally:
        plt.close(fig)
    try:
        return create_output(out, buf.getvalue(), [a.source] if a.source else (), force)
    except ConfigError as e:
        raise LRRangeError(str(e)) from None
    except OSError as e:
        raise LRRangeError(f"{out}: cannot write the plot: {e.strerror or e}") from None
