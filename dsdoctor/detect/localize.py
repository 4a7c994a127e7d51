"""Live only: the module where a NaN/Inf first appeared (`nonfinite_module` events from
`dsdoctor run --localize-nan`, which hooks every module's output for one forward)."""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from


class NonFiniteModuleDetector(Detector):
    kinds = ("nonfinite_module",)

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        return (symptom_from(ev, seq, "nonfinite_module", key=(d.get("module"),), module=d.get("module"),
                             module_type=d.get("module_type"), inputs_finite=d.get("inputs_finite")),)
