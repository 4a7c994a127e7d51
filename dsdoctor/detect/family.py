"""What an exception's family is (detect/families.py classifies; detect/ds_misuse.py adds
DeepSpeed's own raise sites): its own module, so both can build one without importing each other."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str               # environment | storage | config | hardware | gpu_memory | host_memory | launcher | comm | wrapper | interrupt | other
    category: str           # the dsdoctor category of a failure of this family
    weight: int             # 3 cause, 2 weak cause (interrupt), 1 consequence (comm), 0 wrapper
    why: str                # one line: what in the exception said so
