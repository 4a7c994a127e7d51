"""`dsdoctor rules [ID]`: list the rules, or explain one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.text import Text

from ..rules import Rule, RuleSet
from . import ci_options as ci
from .common import fail
from .params import for_typer


RULES_SCHEMA = "dsdoctor.rules/1"


def rule_to_dict(r: Rule) -> dict[str, Any]:
    return {"id": r.id, "category": r.category, "severity": r.severity, "title": r.title,
            "summary": r.summary, "description": r.description.strip(), "symptoms": list(r.symptoms),
            "where": r.where, "source": r.source, "references": r.references,
            "falsepositives": r.falsepositives, "explains": list(r.explains), "priority": r.priority,
            "fixes": [{"title": f.title, "when": f.when, "config_patch": f.config_patch, "env": f.env,
                       "advice": f.advice} for f in r.fixes],
            "file": r.file, "line": r.line}


def rules(
    rule_id: Optional[str] = typer.Argument(None, help="A rule id to explain."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document: {schema: dsdoctor.rules/1, rules: [...]}."),
    rules_dir: Optional[Path] = ci.replace_option(),
    select: Optional[List[str]] = ci.select_option(), ignore: Optional[List[str]] = ci.ignore_option(),
    rules_dirs: Optional[List[Path]] = ci.rules_dir_option(),
) -> None:
    """List the rules (one per line, id first), or explain one."""
    rs, _ = ci.setup(rules_dir, rules_dirs, select, ignore, None)
    if as_json:
        chosen = rs.rules if rule_id is None else [_find(rs, rule_id)]
        print(json.dumps({"schema": RULES_SCHEMA, "rules": [rule_to_dict(r) for r in chosen]}, indent=2, default=str))
        return
    if rule_id is None:
        for r in rs.rules:
            print(f"{r.id}\t{r.category}\t{r.severity}\t{r.title}")
        return
    r = _find(rs, rule_id)
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


def _find(rs: RuleSet, rule_id: str) -> Rule:
    r = rs.by_id.get(rule_id)
    if r is None:
        close = [x for x in rs.by_id if rule_id in x or x in rule_id]
        fail(f"no rule {rule_id!r}" + (f"; did you mean {', '.join(close[:3])}?" if close else ""))
    return r


def register(app: typer.Typer) -> None:
    app.command("rules")(for_typer(rules))     # its CI options are commands/params.py's
