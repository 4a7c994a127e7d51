"""What every detector is: `Detector` (kinds, feed, finish) and `symptom_from`.

Its own module so that the detectors import it and the list of detectors
(detect/__init__.py) imports them, without a cycle.
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
