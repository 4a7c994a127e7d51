"""The slowest rank named in the run's own straggler reports (`rank_spread` events).

Megatron-core's StragglerDetector prints, every log interval, the fastest and the slowest rank's
forward time (MnRtt/MxRtt) and get_batch time (MnDRtt/MxDRtt). One report is noise (some rank is
always slowest); the same rank slowest in most reports, by a clear factor, is a straggler.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from ..events import Event
from ..findings import Symptom
from ..stats import median
from .base import Detector, symptom_from

MIN_REPORTS = 3          # reports before a rank is judged
MIN_SHARE = 0.8          # the same rank slowest in at least this share of the reports (2 healthy ranks on
                         # a busy 2-core machine: one of them slowest in 4 of 6 reports, by 1.1-2.9x) ...
MIN_RATIO = 1.3          # ... at least this many times the fastest rank (median of its reports) ...
MIN_GAP_MS = 5.0         # ... and by at least this much
MAX_REPORTS = 4096       # per metric: memory stays bounded


class RankSpreadDetector(Detector):
    kinds = ("rank_spread",)

    def __init__(self) -> None:
        # metric -> [(max_rank, max_ms, min_ms, seq, event)]
        self.reports: dict[str, list[tuple[int, float, float, int, Event]]] = {}

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
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
        return list(best.values())
