"""Checkpoint saves that take longer each time (`checkpoint_save` events).

A save that grows from one to many minutes over a run stalls every rank for that long at each
save: the file system the checkpoints go to is filling up (quota, a nearly full Lustre/GPFS
target), or more and more old checkpoints share its directory. Saves of a steady size should
take a steady time.
"""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from

MIN_SAVES = 4              # saves seen before a trend counts
GROWTH = 3.0               # the last save this many times the first ...
MIN_LAST_S = 300.0         # ... and at least this long (a few seconds more on a fast disk is nothing)
RISING_SHARE = 0.75        # ... with this share of the saves longer than the one before
MAX_SAVES = 256


class CheckpointSaveDetector(Detector):
    kinds = ("checkpoint_save",)

    def __init__(self) -> None:
        self.saves: list[tuple[float, Event, int]] = []

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        ms = ev.data.get("ms")
        if isinstance(ms, (int, float)) and len(self.saves) < MAX_SAVES:
            self.saves.append((float(ms) / 1000.0, ev, seq))
        return ()

    def finish(self) -> Iterable[Symptom]:
        s = self.saves
        if len(s) < MIN_SAVES:
            return ()
        first, last = s[0][0], s[-1][0]
        rising = sum(b[0] > a[0] for a, b in zip(s, s[1:])) / (len(s) - 1)
        if last < GROWTH * first or last < MIN_LAST_S or rising < RISING_SHARE:
            return ()
        sym = symptom_from(s[0][1], s[0][2], "checkpoint_save_slowing", saves=len(s), first_s=round(first, 1),
                           last_s=round(last, 1), ratio=round(last / first, 1))
        sym.add_evidence(s[-1][1])
        return (sym,)
