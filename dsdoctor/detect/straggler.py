"""Stragglers: a rank whose phase times stay above the others' over several windows.

Live runs feed this from the cross-rank exchange (live/exchange.py): every K steps
rank 0 reads each rank's median phase times from the store, `round_stats` condenses them
into one `rank_times` event (medians, spreads and the outlier ranks only, so the event stays
small at 4,096 ranks), and `StragglerDetector` names a rank once it was an outlier with the
same cause in CONSECUTIVE rounds in a row. One noisy window never fires.

Why forward and data, not backward: in synchronous data parallel training the fast ranks
wait for the slow one inside the collectives of backward/step, so everybody's backward time
grows together. Forward (no collectives below ZeRO-3) and the data wait are the rank's own
time, so an outlier there is the straggler, and the ranks whose backward/step grew at the
same time are waiting for it. A rank that is an outlier only in backward/step, with no rank
slow in forward or data, is waiting on communication (its link, NIC or PCIe).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..stats import median
from ..events import Event
from ..findings import Evidence, Symptom
from .base import Detector, symptom_from

OWN_PHASES = {"fwd": ("compute", "forward"), "data": ("data", "data")}
WAIT_PHASES = {"bwd": "backward", "step": "step"}
MIN_RATIO = 1.3            # an outlier is at least 30 % above the others' median ...
MIN_EXCESS_MS = 5.0        # ... and at least 5 ms above it ...
MAD_SIGMAS = 4.0           # ... and 4 robust sigmas (1.4826 x MAD) above it
CONSECUTIVE = 3            # rounds in a row before a rank is named
MIN_RANKS_WAITING = 3      # ranks needed before "waiting in collectives" can single one out


def _spread(values: list[float]) -> float:
    """Robust sigma: 1.4826 x median absolute deviation (0 with fewer than 3 values)."""
    if len(values) < 3:
        return 0.0
    m = median(values)
    return 1.4826 * median(abs(v - m) for v in values)


def _outliers(values: Mapping[int, float]) -> dict[int, tuple[float, float]]:
    """rank -> (value, baseline) for the ranks well above the median of the OTHER ranks.

    Leave-one-out keeps two ranks comparable (the median of two values is their mean, and
    their MAD can never flag either). With many ranks the baseline is the plain median:
    removing one value from thousands changes nothing, and it keeps the work O(n log n)."""
    if len(values) < 2:
        return {}
    vals = list(values.values())
    many = len(vals) > 8
    med_all, spread_all = (median(vals), _spread(vals)) if many else (0.0, 0.0)
    out = {}
    for r, v in values.items():
        if many:
            base, spread = med_all, spread_all
        else:
            others = [x for q, x in values.items() if q != r]
            base, spread = median(others), _spread(others)
        if v >= MIN_RATIO * base and v - base >= max(MIN_EXCESS_MS, MAD_SIGMAS * spread):
            out[r] = (v, base)
    return out


def round_stats(summaries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """One aggregation round: rank -> its published summary (fwd/bwd/step/data medians in ms,
    optional sm_clock/throttle). Returns the `rank_times` event data: the rank count, the
    median of each phase, and the outliers with their cause. Bounded output: only outliers
    are listed per rank."""
    med: dict[str, float] = {}
    per_phase: dict[str, dict[int, float]] = {}
    for ph in ("fwd", "bwd", "step", "data"):
        vals = {r: float(s[ph]) for r, s in summaries.items() if s.get(ph) is not None}
        per_phase[ph] = vals
        if vals:
            med[ph] = round(median(vals.values()), 3)
    stragglers: dict[int, dict[str, Any]] = {}
    for ph, (which, phase) in OWN_PHASES.items():
        for r, (v, base) in _outliers(per_phase.get(ph, {})).items():
            cur = stragglers.get(r)
            if cur is None or v - base > cur["value_ms"] - cur["median_ms"]:
                stragglers[r] = {"which": which, "phase": phase, "value_ms": round(v, 3),
                                 "median_ms": round(base, 3), "ratio": round(v / base, 2) if base else None}
    waiting: dict[int, dict[str, Any]] = {}
    for ph, phase in WAIT_PHASES.items():
        for r, (v, base) in _outliers(per_phase.get(ph, {})).items():
            if r not in stragglers and r not in waiting:
                waiting[r] = {"which": "waiting", "phase": phase, "value_ms": round(v, 3),
                              "median_ms": round(base, 3), "ratio": round(v / base, 2) if base else None}
    outliers = dict(stragglers)
    # Ranks slow only in collectives: waiting on communication. Not with two ranks: one of them
    # always waits for the other inside the collectives, whatever made the other a little later
    # (its optimizer step, the script's own work between the engine calls); a rank waiting
    # longer than the rest only means something from MIN_RANKS_WAITING ranks on.
    if not stragglers and len(summaries) >= MIN_RANKS_WAITING:
        outliers.update(waiting)
    clocks = [s["sm_clock"] for s in summaries.values() if s.get("sm_clock")]
    med_clock = median(clocks) if clocks else None
    for r, o in outliers.items():
        s = summaries[r]
        if s.get("sm_clock"):
            o["sm_clock"], o["median_sm_clock"] = s["sm_clock"], med_clock
        if s.get("throttle"):
            o["throttle"] = s["throttle"]
        if s.get("at") is not None:                 # the rank's global step ("step" is a phase time)
            o["step"] = s["at"]
    return {"nranks": len(summaries), "median": med, "waiting_ranks": len(waiting) if stragglers else 0,
            "outliers": {str(r): o for r, o in outliers.items()}}


class StragglerDetector(Detector):
    """`rank_times` rounds -> `slow_rank` once a rank was an outlier with the same cause
    CONSECUTIVE rounds in a row. Memory: one small counter per currently-suspect rank."""
    kinds = ("rank_times",)

    def __init__(self, consecutive: int = CONSECUTIVE):
        self.consecutive = consecutive
        # rank -> (cause, windows in a row, the step of its last window)
        self.streak: dict[int, tuple[str, int, Any]] = {}
        self.named: set[int] = set()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        outliers = ev.data.get("outliers") or {}
        seen: dict[int, tuple[str, int, Any]] = {}
        out: list[Symptom] = []
        for key, o in outliers.items():
            try:
                r = int(key)
            except (TypeError, ValueError):
                continue
            cause = f"{o.get('which')}/{o.get('phase')}"
            prev = self.streak.get(r)
            at = o.get("step")
            if prev and prev[0] == cause:
                # a rank that has not published since (its thread starved on a busy host) is
                # read again with the same window: no new evidence, the streak holds
                n = prev[1] if at is not None and at == prev[2] else prev[1] + 1
            else:
                n = 1
            seen[r] = (cause, n, at)
            if n >= self.consecutive and r not in self.named:
                self.named.add(r)
                out.append(self._symptom(ev, seq, r, o, n))
        self.streak = seen          # a rank missing from this round starts over
        return out

    def _symptom(self, ev: Event, seq: int, rank: int, o: Mapping[str, Any], n: int) -> Symptom:
        throttle = o.get("throttle")
        s = symptom_from(ev, seq, "slow_rank", key=(rank,), rank=rank, ratio=o.get("ratio"),
                         which=o.get("which"), phase=o.get("phase"), value_ms=o.get("value_ms"),
                         median_ms=o.get("median_ms"), windows=n, nranks=ev.data.get("nranks"),
                         waiting_ranks=ev.data.get("waiting_ranks"), sm_clock=o.get("sm_clock"),
                         median_sm_clock=o.get("median_sm_clock"),
                         throttle=", ".join(throttle) if isinstance(throttle, list) else throttle,
                         via="exchange")
        # The symptom is about the slow rank, not about rank 0 that aggregated it.
        s.ranks = {rank}
        if o.get("step") is not None:
            s.steps = [int(o["step"])]
        s.evidence.append(Evidence(ev.source, ev.line,
                                   f"rank {rank}: {o.get('phase')} {o.get('value_ms')} ms vs median "
                                   f"{o.get('median_ms')} ms of the other ranks ({n} windows in a row)"))
        return s
