"""What the lint finds, before rules turn it into findings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problem:
    """One thing wrong (or worth saying) about a config.

    `name` is the symptom name rules match on, `key` the dotted path of the offending key,
    `facts` what the rule's summary and fix need (including `patch`, a ready merge patch
    when the lint can compute the fix itself).
    """
    name: str
    key: str
    facts: dict[str, Any] = field(default_factory=dict)

    def fact(self, k: str, default: Any = None) -> Any:
        return self.facts.get(k, default)
