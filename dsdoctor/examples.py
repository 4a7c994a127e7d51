"""Run a rule's own examples (the way semgrep and ruff test each rule).

An example is a mapping with one input key and optional context:
  log:       log text, parsed by the same code as `dsdoctor analyze`
  events:    a list of events (mappings with kind, rank, step, data) as live hooks emit them
  symptom:   {name, facts, ranks, steps}: the rule alone, for rules fed by other front doors
  ds_config: a config for the doctor's lint (config/examples.py)
  env:       probed environment facts for the doctor's environment rules
plus optional `config` (the user's ds_config, so patches are computed against it),
`context` (facts such as world_size) and `expect_patch` (the merge patch the first fix of
this rule must produce: the semgrep `.fixed` idea).

Every runner ends in pipeline.Diagnoser (`feed` for events, `absorb` for ready symptoms), so an
example goes the same way from symptom to finding as the front door it stands for.
"""
from __future__ import annotations

from typing import Any, Callable

from .context import Context
from .events import Event
from .findings import Finding, Symptom
from .rules import Rule, RuleSet

Runner = Callable[[dict[str, Any], Context, RuleSet], list[Finding]]


def _run_log(ex: dict[str, Any], ctx: Context, rules: RuleSet) -> list[Finding]:
    from .pipeline import Diagnoser
    from .sources.logs import events_from_text
    d = Diagnoser(ctx, rules)
    d.feed_all(events_from_text(ex["log"]))
    return d.finish()


def _run_events(ex: dict[str, Any], ctx: Context, rules: RuleSet) -> list[Finding]:
    from .pipeline import Diagnoser
    d = Diagnoser(ctx, rules)
    for i, e in enumerate(ex["events"]):
        d.feed(Event(kind=e["kind"], rank=e.get("rank"), step=e.get("step"), time=e.get("time"),
                     data=dict(e.get("data") or {}), source="<example>", line=i + 1,
                     text=e.get("text", f"{e['kind']} {e.get('data')}")))
    return d.finish()


def _run_symptom(ex: dict[str, Any], ctx: Context, rules: RuleSet) -> list[Finding]:
    s = ex["symptom"]
    from .pipeline import Diagnoser
    d = Diagnoser(ctx, rules, detectors=[])
    d.absorb([Symptom(name=s["name"], facts=dict(s.get("facts") or {}), ranks=set(s.get("ranks") or []),
                      steps=list(s.get("steps") or []))])
    return d.finish()


def _run_ds_config(ex: dict[str, Any], ctx: Context, rules: RuleSet) -> list[Finding]:
    from .config.examples import run_ds_config
    return run_ds_config(ex, ctx, rules)


def _run_env(ex: dict[str, Any], ctx: Context, rules: RuleSet) -> list[Finding]:
    from .config.examples import run_env
    return run_env(ex, ctx, rules)


# The example kinds, one per front door (the doctor's two are in config/examples.py).
RUNNERS: dict[str, Runner] = {"log": _run_log, "events": _run_events, "symptom": _run_symptom,
                              "ds_config": _run_ds_config, "env": _run_env}


def run_example(rule: Rule, ex: dict[str, Any], rules: RuleSet) -> list[Finding]:
    keys = [k for k in RUNNERS if k in ex]
    if len(keys) != 1:
        raise ValueError(f"rule {rule.id}: an example needs exactly one of {sorted(RUNNERS)}; got {sorted(ex)}")
    ctx = Context.from_config(ex.get("config"), **(ex.get("context") or {}))
    return RUNNERS[keys[0]](ex, ctx, rules)


def check_rule_examples(rule: Rule, rules: RuleSet) -> list[str]:
    """Problems with a rule's examples ([] when all pass)."""
    problems = []
    for i, ex in enumerate(rule.examples.get("match", [])):
        found = [f for f in run_example(rule, ex, rules) if f.rule == rule.id]
        if not found:
            problems.append(f"{rule.id}: match example {i + 1} did not fire")
            continue
        want = ex.get("expect_patch")
        if want is not None:
            got = next((fx.config_patch for fx in found[0].fixes if fx.config_patch), None)
            if got != want:
                problems.append(f"{rule.id}: match example {i + 1}: patch {got} != expected {want}")
    for i, ex in enumerate(rule.examples.get("nomatch", [])):
        if any(f.rule == rule.id for f in run_example(rule, ex, rules)):
            problems.append(f"{rule.id}: nomatch example {i + 1} fired")
    return problems
