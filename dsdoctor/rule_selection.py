"""Which rules run: built-in rules plus extra folders, then --select / --ignore.

A selector names rules the way ruff's do: a rule id prefix (`nccl-error` matches
`nccl-error-ib`), a glob (`comm-timeout-*`, `*-shm`), or a category (`oom`, `environment`).
When a rule is both selected and ignored, the more specific selector wins (an exact id over
a prefix, a longer prefix over a shorter one; a tie is ignored), so `select = ["nccl-error-ib"]`
with `ignore = ["nccl-error"]` keeps that one rule.

Rules are dropped before matching: a symptom whose specific rule is ignored can still be
explained by a more general rule that is selected (ignoring `nan-loss-zero2-overlap-comm`
leaves the generic NaN rule).
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable

from .rules import Rule, RuleError, RuleSet


def _specificity(selector: str, rule: Rule) -> int:
    """How closely `selector` names `rule`; 0 when it does not match it."""
    if selector == rule.id:
        return 10_000
    if any(c in selector for c in "*?["):
        return len(selector.replace("*", "")) if fnmatchcase(rule.id, selector) else 0
    if rule.id.startswith(selector):
        return len(selector)
    if selector == rule.category:
        return 1
    return 0


def _best(selectors: Iterable[str], rule: Rule) -> int:
    return max((_specificity(s, rule) for s in selectors), default=0)


def select(rules: RuleSet, select: list[str] | None = None, ignore: list[str] | None = None) -> RuleSet:
    """The rules kept by the selectors. RuleError when a selector matches no rule (a typo)."""
    select, ignore = list(select or []), list(ignore or [])
    for opt, sels in (("select", select), ("ignore", ignore)):
        for s in sels:
            if not any(_specificity(s, r) for r in rules.rules):
                raise RuleError(f"--{opt} {s}: matches no rule (see `dsdoctor rules`)")
    if not select and not ignore:
        return rules
    kept = []
    for r in rules.rules:
        chosen = _best(select, r) if select else 1
        dropped = _best(ignore, r)
        if chosen and chosen > dropped:
            kept.append(r)
    return RuleSet(kept)


def load(replace: Path | None = None, extra: Iterable[Path] = (),
         select_: list[str] | None = None, ignore: list[str] | None = None) -> RuleSet:
    """Built-in rules (or the `replace` folder instead), plus every `extra` folder, selected.
    A rule id defined twice is a RuleError naming both places."""
    base = RuleSet.load(replace)
    extra = list(extra)
    if extra:
        rules = list(base.rules)
        for d in extra:
            if not Path(d).is_dir():
                raise RuleError(f"--rules-dir {d}: not a folder (expected a folder of *.yaml rule files)")
            rules.extend(RuleSet.load(Path(d)).rules)
        base = RuleSet(rules)
    return select(base, select_, ignore)
