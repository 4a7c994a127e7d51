"""One event, one symptom: errors that need no arithmetic (config errors, op build failures,
hardware errors, a communication watchdog's abort). The symptom's name is the event's `error` id, prefixed by its kind."""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from


class PassThroughDetector(Detector):
    kinds = ("config_error", "env_error", "hardware", "comm_abort", "collective_mismatch")

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = dict(ev.data)
        err = str(d.pop("error", "unknown"))
        name = f"{ev.kind}.{err}"          # e.g. config_error.batch_mismatch, hardware.xid
        key = (d.get("key"), d.get("xid"), d.get("op"))
        s = symptom_from(ev, seq, name, key=key)
        s.facts.update(d)              # not as **d: config errors carry a 'key' fact
        return (s,)
