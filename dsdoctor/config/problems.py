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


def deepspeed_rejects(err: str | None) -> Problem:
    """DeepSpeed's config parser refused the config: a Problem on the field it names."""
    return Problem("deepspeed_rejects", _field_of(err), {"message": err})


def _field_of(err: str | None) -> str:
    """DeepSpeed's pydantic message names the model, then the field: make a dotted key of it
    (the models of deepspeed/runtime/zero/config.py: DeepSpeedZeroConfig,
    deepspeed/runtime/precision_config.py: DeepSpeedFP16Config, DeepSpeedBF16Config)."""
    if not err:
        return "?"
    models = {"DeepSpeedZeroConfig": "zero_optimization", "DeepSpeedFP16Config": "fp16",
              "DeepSpeedBF16Config": "bf16", "CommsLoggerConfig": "comms_logger"}
    for model, section in models.items():
        if model in err:
            rest = err.split(model, 1)[1].split()
            return f"{section}.{rest[0]}" if rest else section
    return "ds_config"
