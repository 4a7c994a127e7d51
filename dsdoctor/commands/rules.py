"""`dsdoctor rules [ID]`: list the rules, or explain one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from .analyze import fail, load_rules


def rules(
    rule_id: Optional[str] = typer.Argument(None, help="A rule id to explain."),
    rules_dir: Optional[Path] = typer.Option(None, "--rules", hidden=True),
) -> None:
    """List the rules (one per line, id first), or explain one."""
    rs = load_rules(rules_dir)
    if rule_id is None:
        for r in rs.rules:
            print(f"{r.id}\t{r.category}\t{r.severity}\t{r.title}")
        return
    r = rs.by_id.get(rule_id)
    if r is None:
        close = [x for x in rs.by_id if rule_id in x or x in rule_id]
        fail(f"no rule {rule_id!r}" + (f"; did you mean {', '.join(close[:3])}?" if close else ""))
    con = Console()
    con.print(Text(r.id, style="bold") + Text(f"  [{r.category} · {r.severity}]", style="dim"))
    con.print(Text(r.title, style="bold"))
    if r.description:
        con.print(r.description.strip())
    con.print(Text("When: ", style="bold") + Text(f"symptom {' | '.join(r.symptoms)}" + (f" where {r.where}" if r.where else "")))
    con.print(Text("Source: ", style="bold") + Text(r.source))
    for ref in r.references:
        con.print(f"  {ref}")
    for fp in r.falsepositives:
        con.print(Text("Known harmless match: ", style="bold") + Text(fp))
    for fx in r.fixes:
        con.print(Text("Fix: ", style="bold green") + Text(fx.title) + (Text(f"  (when {fx.when})", style="dim") if fx.when else Text("")))
        if fx.config_patch:
            con.print("  " + json.dumps(fx.config_patch))
        if fx.env:
            con.print("  env: " + json.dumps(fx.env))
        if fx.advice:
            con.print(Text("  " + fx.advice.strip(), style="italic"))
    con.print(Text(f"Defined in {r.file}:{r.line}", style="dim"))


def register(app: typer.Typer) -> None:
    app.command("rules")(rules)
