"""`dsdoctor analyze PATH...`: post-mortem diagnosis of logs and dsdoctor event files."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional

from ..api import AnalyzeError, diagnose_inputs, plain_events, usable_inputs
from ..config_io import ConfigError, check_output, load_config, write_config
from ..fixes import fixed_config
from ..report import exit_code, print_json, print_report
from ..sources.inputs import Input
from ..sources.logs import read_log
from . import ci_options as ci
from .common import fail
from .params import Argument, Option, for_typer

if TYPE_CHECKING:
    import typer


def _events_with_progress(inputs: list[Input], warnings: list[str], sample: bool = True) -> Iterator:
    total = sum(i.path.stat().st_size for i in inputs if i.path is not None)
    if not sys.stderr.isatty() or total < (256 << 20):
        return plain_events(inputs, warnings, sample)     # (returned: no generator hop per event)
    return _with_progress_bar(inputs, warnings, sample, total)


def _with_progress_bar(inputs: list[Input], warnings: list[str], sample: bool, total: int) -> Iterator:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("analysing", total=total)
        for inp in inputs:
            prog.update(task, description=Path(inp.name).name[:40])
            size = inp.path.stat().st_size if inp.path else 0
            yield from read_log(inp, warnings, sample)
            prog.advance(task, size)


_CAUSE_ELSEWHERE = ("its cause is not in these logs (read every rank's log, the launcher's or scheduler's output, "
                    "and the kernel log: dmesg).")


def log_end_note(end: dict | None) -> str | None:
    """What a report that found no problem says about the end of the logs: a log without an
    error is not a healthy run unless the run said it finished."""
    if end is None:
        return "The logs hold no training progress (no step, loss or progress bar): nothing says how far the run got."
    if end.get("last_step") is None and end.get("phase"):
        return (f"The logs end during start-up ({end['phase'].replace('_', ' ')}, {end['at']}) before any training "
                f"step, with no error: if the run hung or stopped there, {_CAUSE_ELSEWHERE}")
    step = f"step {end['last_step']}" if end.get("last_step") is not None else "its last progress line"
    if end.get("normal_end"):
        return f"The run printed its own normal end ({end['at']}) after {step}."
    return (f"The logs end at {step} ({end['at']}) with no error and no normal end: if the run stopped or hung "
            f"there, {_CAUSE_ELSEWHERE}")


def analyze(
    paths: List[str] = Argument(..., help="Log files, folders (one log per rank), .gz, '-' for stdin, or dsdoctor run folders."),
    config: Optional[Path] = Option(None, "--config", "-c", help="The run's ds_config.json: fixes are computed against its values."),
    as_json: bool = Option(False, "--json", help="Print exactly one JSON document (schema dsdoctor.report/1)."),
    write_config_to: Optional[Path] = Option(None, "--write-config", help="Write the config with the findings' fixes applied (the first fix of each root cause) to this new file."),
    world_size: Optional[int] = Option(None, "--world-size", min=1, max=1 << 20, help="Number of ranks, if the log does not say."),
    all_lines: bool = Option(False, "--all-lines", help="Parse every metric line (default: steady per-step metric lines are sampled once a baseline exists; anything unusual is always parsed)."),
    rules_dir: Optional[Path] = Option(None, "--rules", help="Replace the built-in rules with the rules of this folder."),
    fmt: Optional[str] = ci.format_option(), fail_on: Optional[str] = ci.fail_on_option(),
    select: Optional[List[str]] = ci.select_option(), ignore: Optional[List[str]] = ci.ignore_option(),
    rules_dirs: Optional[List[Path]] = ci.rules_dir_option(),
    html_out: Optional[Path] = Option(None, "--html", help="Also write a self-contained HTML report (findings and plots) to this file."),
    force: bool = Option(False, "--force", help="Let --write-config replace an existing file (never the input itself)."),
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
    if write_config_to is not None:
        try:                 # before the analysis: an output we would refuse is said at once
            check_output(write_config_to, [config, *paths], force)
        except ConfigError as e:
            fail(str(e))
    rules, fail_on = ci.setup(rules_dir, rules_dirs, select, ignore, fail_on)
    series = None
    if html_out is not None:
        from ..report_series import RunSeries
        series = RunSeries()            # the report draws the very events the findings came from
    try:
        inputs, warnings = usable_inputs(paths)
        report = diagnose_inputs(inputs, warnings, cfg, world_size=world_size, rule_set=rules,
                                 sample=not all_lines, events=_events_with_progress,
                                 on_event=series.feed if series is not None else None)
    except AnalyzeError as e:
        fail(str(e))
    findings = report.findings
    notes = list(warnings)
    if report.issue is not None:
        notes += report.issue.notes()
    if cfg is None and report.config is not None:
        cfg = report.config              # read from the pasted text (dsdoctor/issue)
    if write_config_to is not None and cfg is None:
        fail("--write-config needs --config (the config to patch; none was found pasted in the input either)")
    if not any(f.severity != "info" for f in findings) and (end := log_end_note(report.log_end)):
        notes.append(end)
    if cfg is None and any(fx.config_patch for f in findings for fx in f.fixes):
        # (said also when a config was pasted but not used: the note above says why)
        notes.append("Fixes are shown as patches; pass --config ds_config.json to get them computed "
                     "against your values, shown as a diff and checked by DeepSpeed's config parser.")
    elif cfg is not None and any(fx.validated is None and fx.config_patch for f in findings for fx in f.fixes):
        notes.append("deepspeed is not importable here: the patched configs were not validated.")
    written = None
    if write_config_to is not None and cfg is not None:
        fixed = fixed_config(cfg, findings)
        if fixed == cfg:
            notes.append(f"No config change to write; {write_config_to} not written.")
        else:
            try:
                written = write_config(fixed, write_config_to, config, force)
                notes.append(f"Patched config written to {written} (the input was not modified).")
            except ConfigError as e:
                fail(str(e))
            except OSError as e:
                fail(f"{write_config_to}: cannot write: {e.strerror or e}")
    if html_out is not None and series is not None:
        from ..report_html import write as write_html
        try:
            write_html(html_out, findings, series, title="dsdoctor analyze", inputs=[i.name for i in inputs],
                       notes=[n for n in notes], events_seen=report.events_seen, facts=report.facts)
        except OSError as e:
            fail(f"{html_out}: cannot write: {e.strerror or e}")
        notes.append(f"HTML report written to {html_out}")
    for w in warnings:          # stderr in both modes: stdout stays one JSON document
        print(f"dsdoctor: warning: {w}", file=sys.stderr)
    if fmt in ("sarif", "github"):
        ci.emit(fmt, findings, rules)
    elif as_json:
        print_json(findings, inputs=[i.name for i in inputs], warnings=warnings, log_end=report.log_end,
                   written_config=str(written) if written else None,
                   **({"issue_text": report.issue.to_dict()} if report.issue is not None else {}),
                   **({"html_report": str(html_out)} if html_out is not None else {}))
    else:
        print_report(findings, title=f"dsdoctor analyze · {report.events_seen} events from {len(inputs)} input(s)",
                     notes=[n for n in notes if n not in warnings])
    raise SystemExit(exit_code(findings, fail_on))


def register(app: typer.Typer) -> None:
    app.command("analyze")(for_typer(analyze))
