"""The run's own straggler reports: Megatron's (`rank_spread`, `timer_spread`) and DeepSpeed's comms logger (`comm_straggler`).

Megatron-core's StragglerDetector prints, every log interval, the fastest and the slowest rank's
forward time (MnRtt/MxRtt) and get_batch time (MnDRtt/MxDRtt). One report is noise (some rank is
always slowest); the same rank slowest in most reports, by a clear factor, is a straggler.

Megatron's default timer report, '(min, max) time across ranks (ms):', names no rank but tells a late rank
by two spreads together: the slow rank's own timer (batch-generator, forward-compute, backward-compute) far
above the fastest rank's, and the gradient sync where the others wait for it (all-grads-sync) spread by about
as much (provoked for real with megatron-core 0.16.1's Timers on 2 gloo ranks: rank 1's data +120 ms gave
batch-generator (0.04, 120.2) and all-grads-sync (5.5, 126.6); a healthy run's largest own-timer gap 0.5 ms).
A spread alone is not enough: with pipeline stages (formats/megatron.py drops those reports) or uneven
batches it is by design.

DeepSpeed's comms logger breakdown gives, per op, the collective's own time (each call's minimum
across ranks) and rank 0's time above it: rank 0 waiting longer in an op than the op itself takes
means a later rank keeps it waiting (provoked for real: rank 1's DataLoader 500 ms slower, 20x; a
healthy run 5 %).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from ..events import Event
from ..findings import Symptom
from ..stats import median
from .arrival_wait import other_rank
from .base import Detector, symptom_from

MIN_REPORTS = 3          # reports before a rank is judged
MIN_SHARE = 0.8          # the same rank slowest in at least this share of the reports (2 healthy ranks on
                         # a busy 2-core machine: one of them slowest in 4 of 6 reports, by 1.1-2.9x) ...
MIN_RATIO = 1.3          # ... at least this many times the fastest rank (median of its reports) ...
MIN_GAP_MS = 5.0         # ... and by at least this much
MAX_REPORTS = 4096       # per metric: memory stays bounded
OWN_TIMERS = ("batch-generator", "forward-compute", "backward-compute")   # a rank's own work (megatron training.py)
SYNC_TIMERS = ("all-grads-sync", "grads-all-reduce")                     # the data-parallel gradient sync
SPREAD_MIN_MS = 20.0     # the slow rank's own timer at least this much above the fastest rank's ...
SPREAD_MIN_RATIO = 1.5   # ... and this many times it ...
SYNC_SHARE = 0.5         # ... and the sync timer spread by at least this share of that gap (the others wait)
LONE_GAP_MS = 1000.0     # fewer than MIN_REPORTS reports (an issue pastes one): a rank a second or more late on
LONE_RATIO = 10.0        # average per iteration, ten times the fastest, in every report seen, is no noise
COMM_MIN_CALLS = 5       # comms logger rows: calls of the op, enough to be the training loop's
COMM_MIN_WAIT_MS = 100.0  # rank 0's summed wait beyond the fastest rank, at least this ...
COMM_MIN_RATIO = 1.0     # ... and at least the op's own summed time


class RankSpreadDetector(Detector):
    kinds = ("rank_spread", "comm_straggler", "timer_spread")

    def __init__(self) -> None:
        # report (header line) -> {timer: (min_ms, max_ms, seq, event)}: the last MAX_REPORTS reports
        self.spreads: dict[tuple[str | None, int], dict[str, tuple[float, float, int, Event]]] = {}
        # metric -> [(max_rank, max_ms, min_ms, seq, event)]
        self.reports: dict[str, list[tuple[int, float, float, int, Event]]] = {}
        self.waits: list[tuple[int, Event]] = []     # comms logger rows of the training loop's ops

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        if ev.kind == "timer_spread":
            rep = self.spreads.get((ev.source, d["report"]))
            if rep is None:
                if len(self.spreads) >= MAX_REPORTS:
                    return ()
                rep = self.spreads[(ev.source, d["report"])] = {}
            rep[str(d["timer"])] = (float(d["min_ms"]), float(d["max_ms"]), seq, ev)
            return ()
        if ev.kind == "comm_straggler":
            if d["count"] >= COMM_MIN_CALLS and len(self.waits) < MAX_REPORTS:
                self.waits.append((seq, ev))
            return ()
        lst = self.reports.setdefault(str(d.get("metric")), [])
        if len(lst) < MAX_REPORTS:
            lst.append((int(d["max_rank"]), float(d["max_ms"]), float(d["min_ms"]), seq, ev))
        return ()

    def finish(self) -> Iterable[Symptom]:
        best: dict[int, Symptom] = {}           # one finding per rank: its clearest metric
        for metric, lst in self.reports.items():
            if len(lst) < MIN_REPORTS:
                continue
            rank, n = Counter(r for r, *_ in lst).most_common(1)[0]
            if n < MIN_SHARE * len(lst):
                continue
            mine = [x for x in lst if x[0] == rank]
            hi, lo = median(x[1] for x in mine), median(x[2] for x in mine)
            if lo <= 0 or hi < MIN_RATIO * lo or hi - lo < MIN_GAP_MS:
                continue
            if rank in best and best[rank].facts["ratio"] >= hi / lo:
                continue
            _, _, _, seq, ev = mine[len(mine) // 2]
            s = symptom_from(ev, seq, "slow_rank", key=(rank,), rank=rank, phase=metric, ratio=round(hi / lo, 2),
                             value_ms=round(hi, 2), median_ms=round(lo, 2), reports=n, of_reports=len(lst),
                             via="straggler_report")
            s.ranks = {rank}
            best[rank] = s
        out = list(best.values())
        late = self._late_in_timers()
        if late is not None:
            out.append(late)
        wait = self._comm_wait()
        if wait is not None:
            out.append(wait)
        return out

    def _late_in_timers(self) -> Symptom | None:
        """One rank late in most (min, max) reports: the same own timer spread, and the sync spread with it."""
        seen = [rep for rep in self.spreads.values() if any(t in rep for t in SYNC_TIMERS)]
        if not seen or (len(seen) < MIN_REPORTS and not all(self._far_late(rep) for rep in seen)):
            return None
        votes: Counter[str] = Counter()
        for rep in seen:
            late = self._late_timer(rep)
            if late is not None:
                votes[late] += 1
        if not votes:
            return None
        timer, n = votes.most_common(1)[0]
        if n < MIN_SHARE * len(seen):
            return None
        mine = [rep for rep in seen if self._late_timer(rep) == timer]
        lo, hi = median(r[timer][0] for r in mine), median(r[timer][1] for r in mine)
        sync = next(t for t in SYNC_TIMERS if t in mine[0])
        rep = mine[len(mine) // 2]
        _, _, seq, ev = rep[timer]
        s = symptom_from(ev, seq, "slow_rank_timer_spread", key=(timer,), timer=timer, min_ms=round(lo, 2),
                         max_ms=round(hi, 2), gap_ms=round(hi - lo, 1), sync=sync,
                         sync_min_ms=round(rep[sync][0], 2), sync_max_ms=round(rep[sync][1], 2),
                         reports=n, of_reports=len(seen))
        s.add_evidence(rep[sync][3])
        return s

    @classmethod
    def _far_late(cls, rep: dict[str, tuple[float, float, int, Event]]) -> bool:
        """A report whose late rank is so late that one report says it: Megatron's timers average each
        timer over the log interval, so a one-off hiccup of one iteration is diluted, a second per
        iteration is not."""
        t = cls._late_timer(rep)
        return t is not None and rep[t][1] - rep[t][0] >= LONE_GAP_MS and rep[t][1] >= LONE_RATIO * max(rep[t][0], 1.0)

    @staticmethod
    def _late_timer(rep: dict[str, tuple[float, float, int, Event]]) -> str | None:
        sync = next((rep[t] for t in SYNC_TIMERS if t in rep), None)
        if sync is None or any(t.endswith(("-recv", "-send")) for t in rep):
            return None         # p2p timers: pipeline stages, whose times differ by design
        # the late rank's delay is inside its forward-backward; pipeline stages wait for each other inside it
        # (p2p recv), so theirs end together while their own timers differ
        fb = rep.get("forward-backward")
        best = None
        for t in OWN_TIMERS:
            if t not in rep:
                continue
            lo, hi = rep[t][0], rep[t][1]
            gap = hi - lo
            if gap < SPREAD_MIN_MS or hi < SPREAD_MIN_RATIO * max(lo, 0.0) or sync[1] - sync[0] < SYNC_SHARE * gap:
                continue
            if fb is None or fb[1] - fb[0] >= SYNC_SHARE * gap:
                if best is None or gap > best[1]:
                    best = (t, gap)
        return best[0] if best else None

    def _comm_wait(self) -> Symptom | None:
        if not self.waits:
            return None
        seq, ev = max(self.waits, key=lambda x: x[1].data["straggler_ms"])
        d = ev.data
        if d["straggler_ms"] < max(COMM_MIN_WAIT_MS, COMM_MIN_RATIO * d["comm_ms"]):
            return None
        calm = next((e for _, e in self.waits if e.data["straggler_ms"] <= 0.1 * e.data["comm_ms"]
                     and e.data["comm_ms"] > 0), None)
        s = symptom_from(ev, seq, "comm_straggler", key=(d["op"],), rank=ev.rank, op=d["op"], size=d["size"],
                         calls=d["count"], comm_ms=d["comm_ms"], straggler_ms=d["straggler_ms"],
                         ratio=round(d["straggler_ms"] / max(d["comm_ms"], 0.01), 1),
                         calm_op=calm.data["op"] if calm else None, calm_size=calm.data["size"] if calm else None,
                         slow_rank=other_rank(ev.rank, self.known_world_size()))
        s.ranks = {s.facts["slow_rank"]} if s.facts["slow_rank"] is not None else set()
        if calm is not None:
            s.add_evidence(calm)
        return s
