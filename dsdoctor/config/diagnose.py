"""Problems (config lint, environment probe) -> symptoms, which go through the same pipeline
(pipeline.Diagnoser.absorb), rules and findings as analyze."""
from __future__ import annotations

import json
from typing import Any

from ..context import Context
from ..findings import Evidence, Finding, Symptom
from ..pipeline import Diagnoser
from ..rules import RuleSet
from .loader import key_line
from .problems import Problem


def _lookup(cfg: dict[str, Any] | None, dotted: str) -> tuple[bool, Any]:
    cur: Any = cfg
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return False, None
    return True, cur


def to_symptoms(problems: list[Problem], cfg: dict[str, Any] | None = None, text: str | None = None,
                source: str = "ds_config.json") -> list[Symptom]:
    out = []
    for i, p in enumerate(problems):
        facts = dict(p.facts)
        facts["key"] = p.key
        sym = Symptom(name=p.name, facts=facts, seq=i, key=(p.key,))
        found, value = _lookup(cfg, p.key)
        if found:
            line = key_line(text, p.key)
            shown = json.dumps(value, default=str)
            sym.evidence.append(Evidence(source, line, f'"{p.key}": {shown[:200]}'))
        elif facts.get("evidence"):
            sym.evidence.append(Evidence(source, None, str(facts["evidence"])))
        out.append(sym)
    return out


def findings_for(problems: list[Problem], rules: RuleSet, ctx: Context, cfg: dict[str, Any] | None = None,
                 text: str | None = None, source: str = "ds_config.json") -> list[Finding]:
    """The findings for these problems alone, through the pipeline (pipeline.Diagnoser.absorb)."""
    diag = Diagnoser(ctx, rules, detectors=[])
    diag.absorb(to_symptoms(problems, cfg, text, source))
    return diag.finish()
