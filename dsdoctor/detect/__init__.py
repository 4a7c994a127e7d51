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
    """Every detector, in one table (a new detector is added here)."""
    from . import comm, failure, localize, lr, memory, multinode, nonfinite, passthrough, scaler, stall, straggler, throughput
    return [memory.MemoryDetector(), nonfinite.NonFiniteDetector(), scaler.LossScaleDetector(),
            comm.CommDetector(), throughput.ThroughputDetector(), passthrough.PassThroughDetector(),
            lr.LRScheduleDetector(),                  # LR schedule, live or post-mortem
            stall.StallDetector(), straggler.StragglerDetector(),   # live: watchdog, cross-rank exchange
            localize.NonFiniteModuleDetector(),       # live: module of the first NaN (--localize-nan)
            failure.FailureDetector(),                # how the run ended: the fallback for failed runs
            multinode.MultiNodeDetector()]            # roll call, Flight Recorder
