"""Stragglers of a watched run read back from its folder: every rank's own `step` events.

The live exchange (live/exchange.py) compares the ranks every K steps, at most once a second,
and names a rank after CONSECUTIVE rounds: a run of a few dozen slow steps ends before it has
three rounds. The run folder still holds every rank's phase times per step
(events-rank<N>.jsonl), so `dsdoctor run`'s post-mortem and `dsdoctor analyze DIR` cut them
into windows of WINDOW steps and judge each window as one exchange round (straggler.round_stats,
StragglerDetector): the same thresholds, the same symptom, `via='steps'`. Stricter than live
in one way: a window counts only when another rank spent the difference waiting in its
backward/step (the synchronous echo of a slow rank), so a rank's noise alone never names it.

A rank the exchange named as well is one symptom (same name and key: they merge). Silent inside
one rank's live Watch (one rank, nothing to compare). Memory: the last MAX_WINDOWS window
summaries of at most MAX_RANKS ranks.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Sequence

from ..events import Event
from ..findings import Symptom
from ..stats import median
from .base import Detector
from .straggler import StragglerDetector, round_stats

WINDOW = 5            # steps per window: three windows fit in a 20-step run
MAX_WINDOWS = 256     # per rank: the run's last 1,280 steps
MAX_RANKS = 1024
PHASES = ("fwd", "bwd", "step", "data")
# a run folder's events files read back (pipeline.Diagnoser feeds them event by event, never by feed_step)
EVENT_FILES = (".jsonl", ".jsonl.gz")


class _Rank:
    __slots__ = ("index", "rows", "windows", "last_step", "where")

    def __init__(self) -> None:
        self.index: int | None = None           # the window being filled
        self.rows: list[tuple[float, ...]] = []
        self.windows: deque[tuple[int, dict[str, float]]] = deque(maxlen=MAX_WINDOWS)
        self.last_step: int | None = None
        self.where: tuple[str, int | None] = ("", None)   # its latest step event: the evidence's place

    def close(self) -> None:
        if self.index is not None and len(self.rows) >= 3:
            cols = list(zip(*self.rows))
            summary = {ph: median(col) for ph, col in zip(PHASES, cols)}
            summary["at"] = self.last_step
            self.windows.append((self.index, summary))
        self.rows = []


class StepWindowDetector(Detector):
    """Live `step` events of several ranks (a run folder) -> `slow_rank` (via 'steps')."""
    kinds = ("step",)

    def __init__(self) -> None:
        self.ranks: dict[int, _Rank] = {}

    def feed_step(self, evs: list[Event], seq: int) -> Sequence[tuple[int, Symptom]]:
        return ()        # the live path's own steps, which feed() passes over too (not from an events file)

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d, rank, step = ev.data, ev.rank, ev.step
        if not ev.source.endswith(EVENT_FILES):
            return ()            # a live Watch's own steps (as feed_step): one rank, nothing to compare
        if rank is None or step is None or "fwd_ms" not in d or "data_ms" not in d:
            return ()            # only the live hooks' step events carry the phase times
        r = self.ranks.get(rank)
        if r is None:
            if len(self.ranks) >= MAX_RANKS:
                return ()
            r = self.ranks[rank] = _Rank()
        index = step // WINDOW
        if index != r.index:
            r.close()
            r.index = index
        try:
            r.rows.append(tuple(float(d.get(k + "_ms") or 0.0) for k in PHASES))
        except (TypeError, ValueError):
            return ()
        r.last_step, r.where = step, (ev.source, ev.line)
        return ()

    def finish(self) -> Iterable[Symptom]:
        if len(self.ranks) < 2:
            return []
        for r in self.ranks.values():
            r.close()
        by_index: dict[int, dict[int, dict[str, float]]] = {}
        for rank, r in self.ranks.items():
            for index, summary in r.windows:
                if index > 0:                    # the first steps warm up (allocations, first collectives)
                    by_index.setdefault(index, {})[rank] = summary
        judge, out = StragglerDetector(), []
        for index in sorted(by_index):
            ranks = by_index[index]
            if len(ranks) < len(self.ranks):
                continue                         # a window not every rank reached
            data: dict[str, Any] = round_stats(ranks)
            if not data.get("waiting_ranks"):
                data["outliers"] = {}             # no rank waited for it: noise, not a straggler
            ev = Event("rank_times", rank=None, step=max(s.get("at") or 0 for s in ranks.values()), data=data)
            for s in judge.feed(ev, 0):
                s.facts["via"] = "steps"
                s.facts["window_steps"] = WINDOW
                rank = s.facts["rank"]
                where = self.ranks[rank].where
                for e in s.evidence:
                    e.source, e.line = where[0], where[1]
                    e.text += f" (windows of {WINDOW} steps, from its own step events)"
                out.append(s)
        return out
