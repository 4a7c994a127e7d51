"""Reporters: rich text for people, one JSON document for machines, an exit code for CI."""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from .findings import Finding, clip, worst_severity

if TYPE_CHECKING:         # rich (and pygments under it) only when text is printed: ~50 ms
    from rich.console import Console

SCHEMA = "dsdoctor.report/1"
_STYLE = {"critical": "bold white on red", "error": "bold red", "warning": "bold yellow", "info": "cyan"}


# --fail-on LEVEL: the severities that make the exit code 1.
FAIL_ON = {"info": ("critical", "error", "warning", "info"), "warning": ("critical", "error", "warning"),
           "error": ("critical", "error"), "never": ()}


def exit_code(findings: list[Finding], fail_on: str = "warning") -> int:
    """0: no finding at or above `fail_on`; 1: at least one (default: any warning, error or
    critical finding; an info note never fails). Unusable input exits 2 elsewhere."""
    levels = FAIL_ON[fail_on]
    return 1 if any(f.severity in levels for f in findings) else 0


def to_json(findings: list[Finding], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema": SCHEMA, "findings": [f.to_dict() for f in findings]}
    doc.update(extra)
    return doc


def print_json(findings: list[Finding], out: TextIO | None = None, **extra: Any) -> None:
    out = out or sys.stdout
    json.dump(to_json(findings, **extra), out, indent=2, default=str)
    out.write("\n")


def render_live_finding(con: Console, f: Finding, rank: int, step: int) -> None:
    """A finding made while the run goes on (live/session.py, rank 0): a rule, then the brief form."""
    con.rule(f"dsdoctor live · rank {rank} · step {step}")
    render_finding(con, f, brief=True)


def render_finding(con: Console, f: Finding, index: int | None = None, *, brief: bool = False) -> None:
    from rich.syntax import Syntax
    from rich.text import Text
    head = Text()
    if index is not None:
        head.append(f"{index}. ", style="bold")
    head.append(f"[{f.severity.upper()}] ", style=_STYLE.get(f.severity, ""))
    head.append(f.title, style="bold")
    head.append(f"  ({f.rule}, {f.category})", style="dim")
    con.print(head)
    where = []
    if f.ranks:
        ranks = f"rank{'s' if len(f.ranks) > 1 else ''} {f.ranks_text}"
        hosts = set(f.hosts.values()) if f.hosts else set()
        if len(hosts) == 1 and len(f.hosts) == len(f.ranks):
            ranks += f" on {hosts.pop()}"
        elif hosts:
            ranks += f" ({f.hosts_text})"
        where.append(ranks)
    elif f.node:
        where.append(f"on {f.node}")
    if f.steps:
        where.append(f.steps_text)
    if f.consequence_of:
        where.append(f"likely a consequence of {f.consequence_of}")
    if where:
        con.print("   " + " · ".join(where), style="dim")
    con.print(Text("   " + f.summary))
    if f.evidence and not brief:
        con.print("   Evidence:", style="bold")
        for e in f.evidence[:5]:
            loc = f"{e.source}:{e.line}" if e.line else e.source
            con.print(Text(f"     {loc}: ", style="dim") + Text(clip(e.text, 240)))
        if len(f.evidence) > 5:
            con.print(f"     … {len(f.evidence) - 5} more", style="dim")
    for i, fx in enumerate(f.fixes):
        if brief and i > 0:
            break
        label = "Fix" if len(f.fixes) == 1 else f"Fix {i + 1}"
        con.print(Text(f"   {label}: ", style="bold green") + Text(fx.title))
        if fx.diff:
            con.print(Syntax(fx.diff, "diff", theme="ansi_dark", background_color="default"))
        elif fx.config_patch:
            con.print(Syntax(json.dumps(fx.config_patch, indent=2), "json", theme="ansi_dark",
                             background_color="default", padding=(0, 5)))
        if fx.env:
            for k, v in fx.env.items():
                con.print(f"     export {k}={v}")
        if fx.advice:
            con.print(Text("     " + fx.advice, style="italic"))
        if fx.config_patch and fx.validated is True:
            con.print("     ✓ DeepSpeed's config parser accepts the patched config", style="green")
        elif fx.config_patch and fx.validated is False:
            con.print(f"     ✗ DeepSpeed rejects the patched config: {fx.validation_error}", style="red")
    con.print()


def print_report(findings: list[Finding], con: Console | None = None, *, title: str = "dsdoctor",
                 notes: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text
    con = con or Console()
    if not findings:
        con.print(Panel("No problems found.", title=title, border_style="green"))
    else:
        worst = worst_severity(findings)
        problems = sum(1 for f in findings if f.severity != "info")
        con.print(Panel(f"{problems} problem(s), {len(findings) - problems} note(s). "
                        f"Most likely root cause first.", title=title,
                        border_style="red" if worst in ("critical", "error") else "yellow"))
        for i, f in enumerate(findings, 1):
            render_finding(con, f, i)
    for n in notes or []:
        con.print(Text(n, style="dim"))
