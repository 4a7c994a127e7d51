"""`dsdoctor run [OPTIONS] -- COMMAND...`: run an unchanged training command and diagnose it.

This module parses the options and prints; supervise.py starts the command (the environment
that attaches every rank, the process group, DIR/console.log, the run folder's lock) and
api.post_mortem diagnoses what the run left in DIR. At the end (normal exit, exception or
kill) the findings are printed; the exit code is the command's.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer


def run(
    ctx: typer.Context,
    command: List[str] = typer.Argument(None, help="The training command, after --: deepspeed/torchrun/python ..."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", envvar="DSDOCTOR_OUT", help="Run folder (default ./dsdoctor-<timestamp>)."),
    stall_timeout: Optional[float] = typer.Option(None, "--stall-timeout", envvar="DSDOCTOR_STALL_TIMEOUT", help="Seconds without progress before a stall is reported (default max(60, 10 x median step))."),
    on_stall: str = typer.Option("report", "--on-stall", envvar="DSDOCTOR_ON_STALL", help="report | abort (end the run with the diagnosis)."),
    stall_abort_after: Optional[float] = typer.Option(None, "--stall-abort-after", envvar="DSDOCTOR_STALL_ABORT_AFTER", help="With --on-stall abort: end the run only after this many seconds without progress (default: the stall timeout); a shorter pause is reported and ridden out."),
    localize_nan: bool = typer.Option(False, "--localize-nan", envvar="DSDOCTOR_LOCALIZE_NAN", help="On the first NaN/Inf loss, name the first module whose output is non-finite."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", envvar="DSDOCTOR_TENSORBOARD", help="Write scalars and findings under DIR/tb."),
    force: bool = typer.Option(False, "--force", help="Reuse a run folder that holds an earlier run: its files are first moved to DIR.previous-<time>/."),
) -> None:
    """Run a training command unchanged, watch every rank, and diagnose the run when it ends."""
    from ..supervise import RunFolderError, Stops, child_env, claim_run_folder, missing_node_folders, run_command
    from ..live.oom_counter import oom_kill_facts, read_oom_counts
    from .common import fail
    command = list(command or []) + list(ctx.args)
    if not command:
        fail("no command given: dsdoctor run [OPTIONS] -- COMMAND ...")
    stall_timeout, on_stall, stall_abort_after = _checked_options(stall_timeout, on_stall, stall_abort_after)
    try:
        out, _lock = claim_run_folder(out, force)     # held (open) until this process exits
    except RunFolderError as e:
        fail(str(e))
    env = child_env(out, stall_timeout, on_stall, localize_nan, tensorboard, stall_abort_after=stall_abort_after)
    stops = Stops()
    counts_before = read_oom_counts()       # the kernel's OOM kills so far: did it kill a rank?
    try:
        rc = run_command(command, out, env, stops)
    except FileNotFoundError:
        fail(f"command not found: {command[0]}")
        return
    except PermissionError:
        fail(f"cannot execute: {command[0]}")
        return
    kernel = oom_kill_facts(counts_before, read_oom_counts(), several_nodes=any(out.glob("node*-*")))
    try:
        _print_post_mortem(out, rc, command, stops.facts(), kernel)
    except Exception as e:          # the diagnosis must never hide the command's exit code
        print(f"dsdoctor: error: diagnosis failed ({type(e).__name__}: {e}); "
              f"try: dsdoctor analyze {out}", file=sys.stderr)
    for note in missing_node_folders(out):
        print(f"dsdoctor: {note}", file=sys.stderr)
    raise typer.Exit(rc)


def _checked_options(stall_timeout: Optional[float], on_stall: str,
                     stall_abort_after: Optional[float]) -> tuple[Optional[float], str, Optional[float]]:
    """Every option and DSDOCTOR_* value in range, or a one-line error before anything starts."""
    from ..live.options import OptionError, check_environment, parse_option
    from .common import fail
    try:
        if stall_timeout is not None:
            stall_timeout = parse_option("stall_timeout", stall_timeout)
        if stall_abort_after is not None:
            stall_abort_after = parse_option("stall_abort_after", stall_abort_after)
        on_stall = parse_option("on_stall", on_stall)
    except OptionError as e:
        fail(str(e))
    bad = check_environment()
    if bad:
        fail(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    return stall_timeout, on_stall, stall_abort_after


def _print_post_mortem(out: Path, rc: int, command: List[str], stopped: dict, kernel: dict) -> int:
    from ..api import post_mortem
    from ..report import exit_code, print_report
    report, warnings = post_mortem(out, rc, command, stopped, kernel)
    for w in warnings:
        print(f"dsdoctor: warning: {w}", file=sys.stderr)
    print_report(report.findings, title=f"dsdoctor run · exit code {rc} · {report.events_seen} events · {out}",
                 notes=[f"Evidence kept in {out}/ (events-rank*.jsonl, console.log, tb/, report.html). "
                        f"Re-read it any time with: dsdoctor analyze {out}"])
    return exit_code(report.findings)


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run)
