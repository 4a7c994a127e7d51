"""`dsdoctor analyze PATH...`: post-mortem diagnosis of logs and dsdoctor event files."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console

from ..config_io import ConfigError, check_output, load_config, write_config
from ..context import Context
from ..fixes import apply_patch, resolve_fixes
from ..pipeline import Diagnoser
from ..report import exit_code, print_json, print_report
from ..rules import RuleError, RuleSet
from ..sources.inputs import Input, InputError, check_readable, expand
from ..sources.logs import read_log
from . import ci_options as ci


def fail(msg: str, code: int = 2) -> None:
    print(f"dsdoctor: error: {msg}", file=sys.stderr)
    raise typer.Exit(code)


def load_rules(rules_dir: Optional[Path]) -> RuleSet:
    try:
        return RuleSet.load(rules_dir)
    except RuleError as e:
        fail(f"bad rule file: {e}")
    raise AssertionError  # unreachable


def _events_with_progress(inputs: list[Input], warnings: list[str], sample: bool = True) -> Iterator:
    total = sum(i.path.stat().st_size for i in inputs if i.path is not None)
    if not sys.stderr.isatty() or total < (256 << 20):
        for inp in inputs:
            yield from read_log(inp, warnings, sample)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("analysing", total=total)
        for inp in inputs:
            prog.update(task, description=Path(inp.name).name[:40])
            size = inp.path.stat().st_size if inp.path else 0
            yield from read_log(inp, warnings, sample)
            prog.advance(task, size)


def analyze(
    paths: List[str] = typer.Argument(..., help="Log files, folders (one log per rank), .gz, '-' for stdin, or dsdoctor run folders."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="The run's ds_config.json: fixes are computed against its values."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document (schema dsdoctor.report/1)."),
    write_config_to: Optional[Path] = typer.Option(None, "--write-config", help="Write the config with the top finding's fix applied to this new file."),
    world_size: Optional[int] = typer.Option(None, "--world-size", min=1, max=1 << 20, help="Number of ranks, if the log does not say."),
    all_lines: bool = typer.Option(False, "--all-lines", help="Parse every metric line (default: steady per-step metric lines are sampled once a baseline exists; anything unusual is always parsed)."),
    rules_dir: Optional[Path] = typer.Option(None, "--rules", help="Replace the built-in rules with the rules of this folder."),
    fmt: Optional[str] = ci.format_option(), fail_on: Optional[str] = ci.fail_on_option(),
    select: Optional[List[str]] = ci.select_option(), ignore: Optional[List[str]] = ci.ignore_option(),
    rules_dirs: Optional[List[Path]] = ci.rules_dir_option(),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML report (findings and plots) to this file."),
    force: bool = typer.Option(False, "--force", help="Let --write-config replace an existing file (never the input itself)."),
) -> None:
    """Diagnose a finished (or crashed) run from what it left behind."""
    fmt = ci.output_format(fmt, as_json)
    as_json = fmt == "json"
    cfg = None
    if config is not None:
        try:
            cfg = load_config(config)
        except ConfigError as e:
            fail(str(e))
    if write_config_to is not None and cfg is None:
        fail("--write-config needs --config (the config to patch)")
    if write_config_to is not None:
        try:                 # before the analysis: an output we would refuse is said at once
            check_output(write_config_to, [config, *paths], force)
        except ConfigError as e:
            fail(str(e))
    try:
        inputs = expand(paths)
    except InputError as e:
        fail(str(e))
    # An empty or binary file among 64 rank logs is skipped with a warning; only when
    # nothing usable is left is the input as a whole unusable.
    warnings: list[str] = []
    usable: list[Input] = []
    for inp in inputs:
        try:
            check_readable(inp)
            usable.append(inp)
        except InputError as e:
            warnings.append(f"{e}; skipped")
    if not usable:
        fail(warnings[0].removesuffix("; skipped") if len(inputs) == 1
             else f"none of the {len(inputs)} inputs is a readable text log ({warnings[0]})")
    inputs = usable
    rules, fail_on = ci.setup(rules_dir, rules_dirs, select, ignore, fail_on)
    ctx = Context.from_config(cfg, world_size=world_size)
    diag = Diagnoser(ctx, rules)
    series = None
    if html_out is not None:
        from ..report_series import RunSeries
        series = RunSeries()            # the report draws the very events the findings came from
    try:
        for ev in _events_with_progress(inputs, warnings, not all_lines):
            diag.feed(ev)
            if series is not None:
                series.feed(ev)
        findings = diag.finish()
    except InputError as e:
        fail(str(e))
    except RuleError as e:          # a --rules expression the evaluator refuses when it runs
        fail(f"bad rule file: {e}")
    if diag.bad_events:
        warnings.append(f"{diag.bad_events} event(s) in events files had fields of the wrong type and were skipped")
    resolve_fixes(findings, cfg, ctx.facts.get("world_size"))
    notes = list(warnings)
    if cfg is None and any(fx.config_patch for f in findings for fx in f.fixes):
        notes.append("Fixes are shown as patches; pass --config ds_config.json to get them computed "
                     "against your values, shown as a diff and checked by DeepSpeed's config parser.")
    elif cfg is not None and any(fx.validated is None and fx.config_patch for f in findings for fx in f.fixes):
        notes.append("deepspeed is not importable here: the patched configs were not validated.")
    written = None
    if write_config_to is not None and cfg is not None:
        patch = next((fx.config_patch for f in findings for fx in f.fixes if fx.config_patch), None)
        if patch is None:
            notes.append(f"No config change to write; {write_config_to} not written.")
        else:
            try:
                written = write_config(apply_patch(cfg, patch), write_config_to, config, force)
                notes.append(f"Patched config written to {written} (the input was not modified).")
            except ConfigError as e:
                fail(str(e))
            except OSError as e:
                fail(f"{write_config_to}: cannot write: {e.strerror or e}")
    if html_out is not None and series is not None:
        from ..report_html import write as write_html
        try:
            write_html(html_out, findings, series, title="dsdoctor analyze", inputs=[i.name for i in inputs],
                       notes=[n for n in notes], events_seen=diag.events_seen, facts=diag.context.facts)
        except OSError as e:
            fail(f"{html_out}: cannot write: {e.strerror or e}")
        notes.append(f"HTML report written to {html_out}")
    for w in warnings:          # stderr in both modes: stdout stays one JSON document
        print(f"dsdoctor: warning: {w}", file=sys.stderr)
    if fmt in ("sarif", "github"):
        ci.emit(fmt, findings, rules)
    elif as_json:
        print_json(findings, inputs=[i.name for i in inputs], warnings=warnings,
                   written_config=str(written) if written else None,
                   **({"html_report": str(html_out)} if html_out is not None else {}))
    else:
        print_report(findings, title=f"dsdoctor analyze · {diag.events_seen} events from {len(inputs)} input(s)",
                     notes=[n for n in notes if n not in warnings])
    raise typer.Exit(exit_code(findings, fail_on))


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
