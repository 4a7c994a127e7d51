"""Detectors: small, stateful, streaming code that turns events into symptoms.

A detector sees every event of the kinds it lists, in order, and returns symptoms as soon
as it can (live mode reports them at once); `finish()` returns what needs the whole run
(trends, comparisons across ranks). Memory stays bounded whatever the input size: keep
counters and small windows, never the events themselves.
"""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Symptom


class Detector:
    kinds: tuple[str, ...] = ()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        return ()

    def finish(self) -> Iterable[Symptom]:
        return ()


def symptom_from(ev: Event, seq: int, name: str, /, key: tuple = (), **facts) -> Symptom:
    # positional-only: an event's data may hold a 'name' fact (loss name)
    s = Symptom(name=name, facts=facts, seq=seq, time=ev.time, key=key)
    if ev.rank is not None:
        s.ranks.add(ev.rank)
    if ev.step is not None:
        s.steps.append(ev.step)
    s.add_evidence(ev)
    return s


def default_detectors() -> list[Detector]:
    from . import comm, memory, nonfinite, passthrough, scaler, throughput
    from . import lr  # noqa: F401  (registers the LR-schedule detector)
    from . import stall, straggler  # noqa: F401  (live detectors: they register themselves)
    from . import localize  # noqa: F401  (live: module of the first NaN, --localize-nan)
    from . import failure  # noqa: F401  (how the run ended: the fallback for failed runs)
    from . import multinode  # noqa: F401  (roll call, Flight Recorder)
    dets: list[Detector] = [memory.MemoryDetector(), nonfinite.NonFiniteDetector(),
                            scaler.LossScaleDetector(), comm.CommDetector(),
                            throughput.ThroughputDetector(), passthrough.PassThroughDetector()]
    for extra in _EXTRA_DETECTORS:
        dets.append(extra())
    return dets


# Detectors added by other front doors (live stall/straggler, LR schedule) register here.
_EXTRA_DETECTORS: list[type[Detector]] = []


def register(cls: type[Detector]) -> type[Detector]:
    if cls not in _EXTRA_DETECTORS:
        _EXTRA_DETECTORS.append(cls)
    return cls
