"""Example runners for the doctor's rules: `ds_config` (a config to lint) and `env` (probed facts)."""
from __future__ import annotations

from typing import Any

from ..context import Context
from ..findings import Finding
from ..rules import RuleSet
from .diagnose import findings_for


def run_ds_config(ex: dict[str, Any], ctx: Context, rules: RuleSet) -> list[Finding]:
    from .lint import lint
    cfg = ex["ds_config"]
    problems = lint(cfg, world_size=ctx.facts.get("world_size"), env=ex.get("probe") or {},
                    uses_hf=bool(ex.get("hf")))
    return findings_for(problems, rules, Context.from_config(cfg, **(ex.get("context") or {})), cfg)


def run_env(ex: dict[str, Any], ctx: Context, rules: RuleSet) -> list[Finding]:
    from ..env import env_problems
    return findings_for(env_problems(ex["env"], ex.get("config")), rules, ctx)
