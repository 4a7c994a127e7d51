"""The config lint of `dsdoctor doctor` (config/lint.py) run on a ds_config pasted in an issue
body: its problems become findings placed after the log's (the log shows what failed; the
config's other mistakes come next), one per rule the log's findings do not already have. The
environment is the user's, not this machine's: lint gets no probe of its own."""
from __future__ import annotations

from typing import Any

from ..findings import Finding


def pasted_config_findings(issue: Any, log_findings: list[Finding], facts: dict[str, Any], rules: Any,
                           validate: bool) -> list[Finding]:
    from ..config.diagnose import findings_for
    from ..config.lint import lint
    from ..context import Context
    from ..fixes import resolve_fixes

    pasted = issue.config
    cfg = pasted.config
    ws = facts.get("world_size")
    uses_hf = _has_auto(cfg)      # HF's "auto" values: the Trainer fills them (lint's uses_hf)
    problems = lint(cfg, world_size=ws, world_size_source="the log" if ws else None, env={}, uses_hf=uses_hf)
    if not problems:
        return []
    ctx = Context.from_config(cfg, world_size=ws)
    found = findings_for(problems, rules, ctx, cfg, pasted.text, issue.source)
    told = {f.rule for f in log_findings} | {f.key for f in log_findings if getattr(f, "key", None)}
    out = [f for f in found if f.rule not in told and not (getattr(f, "key", None) and f.key in told)]
    for f in out:                 # the config's own lines -> the lines of the issue body
        for ev in f.evidence:
            if ev.line is not None and pasted.text is not None:
                ev.line += pasted.first_line - 1
    resolve_fixes(out, cfg, ws, validate=validate)
    return out


def _has_auto(obj: Any) -> bool:
    if isinstance(obj, dict):
        return any(_has_auto(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_auto(v) for v in obj)
    return obj == "auto"
