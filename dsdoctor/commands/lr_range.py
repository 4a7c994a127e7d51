"""`dsdoctor lr-range RUN`: read an LR range test and print the OneCycle block to use."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..lr.analysis import analyze
from ..lr.curve import LRRangeError
from ..lr.plot import png_plot, text_plot
from ..lr.readers import read_run
from ..lr.recommend import DEFAULT_TOTAL_STEPS, recommendation
from .common import fail


def lr_range(
    run: str = typer.Argument(..., help="CSV step,lr,loss; dsdoctor events-rank*.jsonl or a run folder; or a DeepSpeed TensorBoard folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document: recommendation, alternatives, lr_steepest, lr_min_loss, lr_diverge."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also write the curve to this PNG (needs matplotlib)."),
    total_steps: int = typer.Option(DEFAULT_TOTAL_STEPS, "--total-steps", min=20, max=10**12, help="Optimizer steps of the run the schedule is for."),
    loss_tag: Optional[str] = typer.Option(None, "--loss-tag", help="TensorBoard scalar tag holding the training loss."),
    lr_tag: Optional[str] = typer.Option(None, "--lr-tag", help="TensorBoard scalar tag holding the LR (default Train/Samples/lr)."),
    force: bool = typer.Option(False, "--force", help="Let --plot replace an existing file."),
) -> None:
    """Find the LR range from an LR range test and recommend a OneCycle schedule."""
    from ..config_io import ConfigError, check_output
    try:
        if plot is not None:
            check_output(plot, [run], force)     # before reading: said at once
        curve = read_run(run, loss_tag=loss_tag, lr_tag=lr_tag)
        a = analyze(curve)
        doc = recommendation(a, total_steps)
        if plot is not None:
            plot = png_plot(a, plot, doc["recommendation"], force)
    except (LRRangeError, ConfigError) as e:
        fail(str(e))
        return
    if as_json:
        print(json.dumps(doc, indent=2))
        if plot is not None:         # stdout stays one JSON document
            print(f"dsdoctor: plot written to {plot}", file=sys.stderr)
        return
    _print_report(a, doc, total_steps, plot)


def _print_report(a, doc: dict, total_steps: int, plot: Optional[Path]) -> None:
    con = Console()
    con.print(f"[bold]dsdoctor lr-range[/] · {a.source} · {len(a.all_lrs)} points")
    con.print(text_plot(a), markup=False, highlight=False)
    con.print(f"learning starts at LR {a.lr_start:.3g}; steepest descent at [green]{a.lr_steepest:.3g}[/]; "
              f"minimum loss {a.loss_min:.4g} at [yellow]{a.lr_min_loss:.3g}[/]; diverges at [red]{a.lr_diverge:.3g}[/]"
              + (" (loss non-finite)" if a.diverged_by == "nonfinite" else ""))
    p = doc["recommendation"]["params"]
    con.print(f"\n[bold]Recommended[/] for a {total_steps}-step run (pass --total-steps to size it): OneCycle "
              f"{p['cycle_min_lr']} -> {p['cycle_max_lr']} -> {p['cycle_min_lr']} over {p['cycle_first_step_size'] + p['cycle_second_step_size']} steps, "
              "then decay. Paste into ds_config.json:")
    _print_block(con, {"scheduler": doc["recommendation"]}, indent=2)
    for alt in doc["alternatives"]:
        block = {"scheduler": {"type": alt["type"], "params": alt["params"]}}
        if "optimizer_lr" in alt:
            block = {"optimizer": {"params": {"lr": alt["optimizer_lr"]}}, **block}
        con.print(f"[bold]Alternative[/] {alt['type']}: {alt['note']}")
        _print_block(con, block)
    con.print("[dim]Heuristic: cycle_max_lr = min(LR of the minimum loss, 0.9 x divergence LR), "
              "cycle_min_lr = cycle_max_lr / 10 (Smith 2017 LR range test; Smith & Topin 1cycle; DeepSpeed "
              "LRRT tutorial: stay below divergence). DeepSpeed has no 'WarmupOneCycle': OneCycle's first "
              "half is the warm-up.[/]")
    for n in a.notes:
        con.print(f"[dim]note: {n}[/]")
    if plot is not None:
        con.print(f"plot written to {plot}")
    sys.stdout.flush()


def _print_block(con: Console, block: dict, indent: int | None = None) -> None:
    # soft_wrap: never crop or re-wrap JSON the user will paste
    con.print(json.dumps(block, indent=indent), markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("lr-range")(lr_range)
