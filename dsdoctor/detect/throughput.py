"""Throughput: a lasting drop over time, and one rank slower than the others.

(a) `throughput` events (iteration time, samples/s, TFLOPs from any format): the series is
split where the change is largest; a drop counts when the recent part (lasting to the end of
the input) is >= 4 % worse than the earlier baseline by median, stands out of the baseline's
noise (median absolute deviation), and nearly every recent point is worse than the baseline.
BLOOM-176B's slow GPU (105 s -> 111 s per iteration, 149 -> 141 TFLOPs, 5 log lines) is the
size of drop this must catch.

(b) per-rank timers (`timers` from wall_clock_breakdown lines, `step` phase times from live
hooks): each rank's median per phase, compared across ranks with median/MAD. DeepSpeed 0.19
prints rank 0's timer lines only, so from logs this needs lines of several ranks (a custom
timers.log(ranks=...)); live runs always have them. In
synchronous data parallelism the fast ranks wait for the slow one inside the allreduce, so
the slow rank is the one whose compute (forward/backward/step) is long, not its allreduce.

Memory: each series keeps at most MAX_POINTS values (older ones are thinned by half when full).
"""
from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from ..stats import fmean, median
from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .arrival_wait import late_rank_wait
from .base import Detector, symptom_from, tagged

MAX_POINTS = 2048
MIN_DROP = 0.04
NOISE_Z = 3.0
# a series that covers less than this (by the lines' own times, or the iteration times themselves) holds no drop
# that "stayed": its slowdowns are hiccups of the host (another process, a save, a loaded CI machine); a healthy
# 16-step run of a few seconds on a busy 2-core machine showed one in its last steps
MIN_SERIES_SECONDS = 60.0
RANK_WINDOW = 32
SLOW_RATIO = 1.25        # a rank >= 25 % slower than the median rank ...
SLOW_Z = 4.0             # ... and far outside the spread of the others
SLOW_MIN_MS = 5.0        # ... and by a gap that costs something (the live detector's floor too):
                         # 1.5 ms against 0.9 ms of data wait is noise on a busy machine
SLOW_MIN_READINGS = 3    # timer readings of a phase a rank needs before it is compared

# metric -> True when larger is better
_METRICS = {"iter_ms": False, "samples_per_sec": True, "tflops": True}

# timer names of all DeepSpeed versions (and live `step` fields) -> phase
_PHASES = {
    "fwd_microstep": "forward", "forward_microstep": "forward", "fwd": "forward", "forward": "forward",
    "fwd_ms": "forward",
    "bwd_microstep": "backward", "backward_microstep": "backward", "bwd": "backward", "backward": "backward",
    "bwd_ms": "backward",
    "bwd_inner_microstep": "backward_compute", "backward_inner_microstep": "backward_compute",
    "bwd_inner": "backward_compute", "backward_inner": "backward_compute",
    "bwd_allreduce_microstep": "allreduce", "backward_allreduce_microstep": "allreduce",
    "bwd_allreduce": "allreduce", "backward_allreduce": "allreduce",
    "step_microstep": "step", "step": "step", "step_ms": "step", "data_ms": "data",
    # Megatron(-DeepSpeed) timers.log: 'time (ms) | forward: .. | backward: .. | optimizer: .. |
    # batch generator: ..' (older) and 'forward-compute', 'backward-compute', 'optimizer' (newer)
    "optimizer": "step", "forward-compute": "forward", "backward-compute": "backward",
    "batch generator": "data", "batch-generator": "data",
    # ZeRO stage 1/2's parameter all-gather after the step: the yardstick of the links (arrival_wait.py)
    "optimizer_allgather": "allgather",
}
DOMINATE_RATIO = 1.0     # a step/allreduce phase longer than forward + backward together ...
DOMINATE_MIN_MS = 1000.0  # ... and by at least a second: the job is bound by that phase
_COMPUTE = ("forward", "backward_compute", "backward", "step", "data")
# Live `step` events time backward and step from the hooks, so these include the wait inside
# the gradient all-reduce / ZeRO all-gather: on a healthy but busy machine the rank that was
# a little faster elsewhere waits there and looks "slow". They count as collective time.
_LIVE_WAITS = ("bwd_ms", "step_ms")
_LIVE_PHASES = {**_PHASES, **{name: "allreduce" for name in _LIVE_WAITS}}    # a live step event's


def _mad(xs: list[float]) -> float:
    m = median(xs)
    return median(abs(x - m) for x in xs)


def _slower_than_others(v: float, others: list[float]) -> float | None:
    """The others' median when `v` stands out as slow against them (a ratio, an absolute gap,
    a robust z-score; with two ranks a clear gap), else None."""
    med = median(others)
    if med <= 0 or v < SLOW_RATIO * med or v - med < SLOW_MIN_MS:
        return None
    spread = 1.4826 * _mad(others) if len(others) >= 3 else 0.0
    if spread and (v - med) / spread < SLOW_Z:
        return None
    if len(others) < 2 and v < 1.5 * med:      # two ranks: need a clear gap
        return None
    return med


class _Series:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.steps: list[int | None] = []
        self.events: list[Event] = []        # evidence: the event behind each kept value
        self.stride = 1
        self._skip = 0

    def add(self, v: float, ev: Event) -> None:
        if self.events and ev.step is not None and self.events[-1].step == ev.step and self.values[-1] == v:
            return              # the same reading printed again by another rank into the same stream
        self._skip += 1
        if self._skip < self.stride:
            return
        self._skip = 0
        self.values.append(v)
        self.steps.append(ev.step)
        self.events.append(ev)
        if len(self.values) >= MAX_POINTS:
            self.values, self.steps, self.events = self.values[::2], self.steps[::2], self.events[::2]
            self.stride *= 2


BIG_DROP = 0.5      # a rate halved (an iteration twice as long): its noise is judged on a log scale


def _beyond_log_noise(before: list[float], b: float, a: float) -> bool:
    """A rate that scattered by a factor (CPU-bound steps: 500 to 2,500 samples/s) and then fell
    by far more than that factor: the spread of the logarithms, not of the values, is the noise."""
    if a <= 0 or b <= 0 or any(x <= 0 for x in before):
        return False
    logs = [math.log(x) for x in before]
    return abs(math.log(b) - math.log(a)) > NOISE_Z * 1.4826 * _mad(logs)


def find_drop(values: list[float], higher_is_better: bool, min_after: int | None = None) -> dict | None:
    """The split with the largest lasting worsening, or None. Pure, for tests."""
    n = len(values)
    if n < 4:
        return None
    sign = 1.0 if higher_is_better else -1.0      # 'worse' = lower samples/s, longer iterations
    min_after = max(2, min(5, n // 5)) if min_after is None else min(max(2, min_after), n - 2)
    best = None
    # the noise of the 'before' readings gates a drop: two or three readings say little about it, so
    # they only count in a short series (BLOOM's 5 Megatron lines: 3 before, 2 after the slow-down)
    min_before = 2 if n < 10 else min(5, n // 3)
    cands = range(min_before, n - min_after + 1)
    if n > 200:                                  # bounded work on long series
        step = max(1, n // 100)
        cands = sorted(set(range(min_before, n - min_after + 1, step)) | set(range(max(min_before, n - 20), n - min_after + 1)))
    # the medians of both sides from two sorted lists kept as the split moves right (a candidate
    # split used to sort both sides: most of a report's time on a long series); the same values
    # (a NaN, which no caller passes, has no place in a sorted list: then each side is sorted)
    ordered = all(x == x for x in values)
    ahead = sorted(values)
    behind: list[float] = []
    moved = 0
    for k in cands:
        if ordered:
            for x in values[moved:k]:
                insort(behind, x)
                del ahead[bisect_left(ahead, x)]
            moved = k
            b, a = _sorted_median(behind), _sorted_median(ahead)
        else:
            b, a = median(values[:k]), median(values[k:])
        if b == 0:
            continue
        change = sign * (b - a) / abs(b)          # > 0: worse
        if change < MIN_DROP:
            continue
        before, after = values[:k], values[k:]
        noise = 1.4826 * _mad(before)
        if abs(a - b) <= NOISE_Z * noise and not (change >= BIG_DROP and _beyond_log_noise(before, b, a)):
            continue
        # nearly every later point is worse than the typical earlier one
        worse = sum(1 for x in after if sign * (b - x) > 0.5 * abs(b - a))
        if worse < 0.8 * len(after) or sign * (b - after[-1]) <= 0.5 * abs(b - a):
            continue              # ... and still is at the last reading ("stayed down")
        # with enough readings, the later level lies beyond nearly all earlier readings: a few
        # unlucky readings of steady noise (a tqdm rate, sampled) pass the median tests above
        if len(before) >= 10 and sign * (_quantile(before, 0.1 if sign > 0 else 0.9) - a) <= 0:
            continue
        # with fewer, no earlier reading may already be at the later level: three readings' MAD is
        # fooled by one low reading among them (a CPU run's rate swinging 800-2,400 samples/s, the last
        # 15 lines pasted: 2,432, 782, 2,282 then 799, 1,072 is its noise, not a drop)
        if len(before) < 10 and sign * ((min(before) if sign > 0 else max(before)) - a) <= 0:
            continue
        # and in a short series every later reading is worse than the earlier level: one back above it
        # (187, 48, 229, 129, 59, 72 after 205, 195) is the noise going both ways
        if n < 10 and any(sign * (b - x) <= 0 for x in after):
            continue
        # medians tie over a range of splits around a clean step (the 'after' median is already the
        # new level before the step): the means, which count the readings still at the old level,
        # put the split where the step is
        mean_change = sign * (fmean(before) - fmean(after)) / abs(b)
        if best is None or (change, mean_change) > (best["change"], best["mean_change"]):
            best = {"split": k, "before": b, "after": a, "change": change, "points_after": len(after),
                    "points_before": len(before), "mean_change": mean_change}
    if best is not None:
        best = _start_of_new_level(values, best, sign, min_after)
    return best


def _start_of_new_level(values: list[float], best: dict, sign: float, min_after: int) -> dict:
    """Move a split right past readings still at the old level: with a noisy 'before', the largest
    relative change can come from a split that starts among the old readings (its 'before' median
    the highest), which would date the slowdown too early."""
    k, b, a = best["split"], best["before"], best["after"]
    mid = math.sqrt(b * a) if a > 0 and b > 0 else (b + a) / 2     # rates: halfway on a log scale
    j = k
    while j < len(values) - min_after and sign * (values[j] - mid) > 0:
        j += 1
    if j == k:
        return best
    before, after = values[:j], values[j:]
    nb, na = median(before), median(after)
    if nb == 0 or sign * (nb - na) / abs(nb) < MIN_DROP:
        return best
    return {**best, "split": j, "before": nb, "after": na, "change": sign * (nb - na) / abs(nb),
            "points_after": len(after), "points_before": len(before),
            "mean_change": sign * (fmean(before) - fmean(after)) / abs(nb)}


def _span(s: "_Series", metric: str) -> float:
    """Seconds the series covers: by the lines' times, else by the iteration times themselves;
    infinite when neither is known (a tqdm rate with no clock: judged as before)."""
    first, last = s.events[0], s.events[-1]
    # one time on every line (a log export that stamps the copy, not the print: docker's json-file with one
    # "time") says nothing about the run's length: the iteration times then do
    if first is not None and last is not None and first.time is not None and last.time is not None and \
            last.time > first.time:
        return last.time - first.time + (last.time - first.time) / max(1, len(s.values) - 1)
    if metric == "iter_ms":
        # sampled lines (sources/sampler.py) keep one reading in several: count the iterations by their numbers
        a, b = s.steps[0], s.steps[-1]
        if a is not None and b is not None and b >= a:
            return (b - a + 1) * median(s.values) / 1000.0
        return sum(s.values) / 1000.0
    return float("inf")


def _sorted_median(xs: list[float]) -> float:
    """statistics.median of a list already sorted (the same arithmetic)."""
    n = len(xs)
    i = n // 2
    return xs[i] if n % 2 else (xs[i - 1] + xs[i]) / 2


def _quantile(values: list[float], q: float) -> float:
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


GRADUAL_MIN_POINTS = 10
GRADUAL_MIN_CHANGE = 0.10   # the last fifth >= 10 % worse than the first fifth ...
GRADUAL_MIN_RHO = 0.8       # ... and the readings worsen steadily (Spearman rank correlation with time)


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=xs.__getitem__)
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def worsening(values: list[float], higher_is_better: bool) -> float:
    """Spearman rank correlation of 'how bad' with time: 1 = every reading worse than the last."""
    n = len(values)
    if n < 3:
        return 0.0
    sign = 1.0 if higher_is_better else -1.0
    worse = _ranks([-sign * v for v in values])           # larger rank = worse
    mean = (n - 1) / 2.0
    cov = sum((i - mean) * (w - mean) for i, w in enumerate(worse))
    var = sum((i - mean) ** 2 for i in range(n))
    var_w = sum((w - mean) ** 2 for w in worse)
    return cov / (var * var_w) ** 0.5 if var_w else 0.0


def find_gradual(values: list[float], higher_is_better: bool) -> dict | None:
    """A slowdown that grows over the whole series instead of stepping (a leak, fragmentation,
    a heating GPU): no single split stands out of the noise, but the readings get worse
    steadily. Pure, for tests."""
    n = len(values)
    if n < GRADUAL_MIN_POINTS:
        return None
    sign = 1.0 if higher_is_better else -1.0
    fifth = max(2, n // 5)
    b, a = median(values[:fifth]), median(values[-fifth:])
    if b == 0:
        return None
    change = sign * (b - a) / abs(b)
    if change < GRADUAL_MIN_CHANGE:
        return None
    rho = worsening(values, higher_is_better)
    if rho < GRADUAL_MIN_RHO:
        return None
    return {"before": b, "after": a, "change": change, "rho": rho, "points": n, "fifth": fifth}


class ThroughputDetector(Detector):
    kinds = ("throughput", "timers", "step", "telemetry", "rank_times")

    def __init__(self) -> None:
        self.series: dict[tuple, _Series] = {}
        self.rank_phase: dict[int, dict[str, deque]] = {}
        self.rank_event: dict[int, Event] = {}
        self.phase_event: dict[tuple[int, str], Event] = {}    # (rank, phase) -> its last line: the evidence
        self.first_seq: dict[int, int] = {}
        self.share: dict[str, list[tuple[float, float, Event, int]]] = {}
        self.series_of_rank: dict[int, _Series] = {}
        self.throttle: set[str] = set()          # clock slowdown reasons an `nvidia-smi -q` in the log showed
        self.throttle_ev: Event | None = None
        self.exchange_ran = False                # live rounds across ranks (rank_times) were read
        self.step_ranks: set[int] = set()        # ranks whose phases came from live `step` events

    def _share(self, ph: dict[str, float], ev: Event, seq: int) -> None:
        """Per timer line: how long the optimizer step / gradient all-reduce took against the
        compute (forward + backward), from the line's first value of each phase (`ph`). Any
        rank, also lines without one."""
        compute = ph.get("forward", 0.0) + ph.get("backward_compute", ph.get("backward", 0.0))
        if compute <= 0:
            return
        for p in ("step", "allreduce"):
            v = ph.get(p)
            if v is not None:
                lst = self.share.setdefault(p, [])
                if len(lst) < MAX_POINTS:
                    lst.append((v, compute, ev, seq))

    def _timers(self, ev: Event, seq: int) -> Iterable[Symptom]:
        """A timer line: its phase shares (_share) and the rank's phase windows (as `feed` does
        for a live step), from one pass over its timers (~10 per line, one line per record)."""
        first: dict[str, float] = {}
        rank = ev.rank
        phases = self.rank_phase.setdefault(rank, {}) if rank is not None else None
        got = False
        for name, v in ev.data.items():
            p = _PHASES.get(name)
            if p and isinstance(v, (int, float)):
                if p not in first:
                    first[p] = float(v)
                if phases is not None:
                    q = phases.get(p)
                    if q is None:
                        q = phases[p] = deque(maxlen=RANK_WINDOW)
                    q.append(float(v))
                    if len(self.phase_event) < 65536:
                        self.phase_event[(rank, p)] = ev
                    got = True
        self._share(first, ev, seq)
        if got:
            self.rank_event[rank] = ev
            self.first_seq.setdefault(rank, seq)
            self._micro_step_time(ev, first)
        return ()

    def _micro_step_time(self, ev: Event, first: dict[str, float]) -> None:
        """A micro-step's time from DeepSpeed's wall_clock_breakdown line (forward + backward, which
        holds the gradient all-reduce, + step), as a series of iteration times: rank 0's only timers
        (utils/timer.py prints ranks=[0]) show a rank that fell behind or a link that slowed as its
        all-reduce growing while its compute stays, and nothing else in such a log may time the steps.
        Only the per-micro-step line: the per-step line after it repeats the same times."""
        if "forward" not in first or "backward" not in first or not any(k.endswith("_microstep") for k in ev.data):
            return
        key = ("iter_ms", ev.source, ev.rank, "timers")
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()
        series.add(first["forward"] + first["backward"] + first.get("step", 0.0), ev)

    def feed_step(self, evs: list[Event], seq: int):
        self._phase_times(evs[0], seq, _LIVE_PHASES)    # feed() of the step event (the others: not its kinds)
        return ()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if ev.kind == "rank_times":
            self.exchange_ran = True
            return ()
        if ev.kind == "telemetry":
            # only readings printed in a log (formats/hardware.py); live telemetry goes to the exchange
            if ev.data.get("reading") == "nvidia-smi" and isinstance(ev.data.get("throttle"), list):
                self.throttle.update(ev.data["throttle"])
                self.throttle_ev = self.throttle_ev or ev
            return ()
        if ev.kind == "timers":
            return self._timers(ev, seq)
        if ev.kind == "throughput":
            if ev.data.get("summary"):
                return ()                   # an end-of-training average is not a point in time
            for m in _METRICS:
                v = ev.data.get(m)
                if isinstance(v, (int, float)) and v > 0:
                    # one series per rank and per progress bar: interleaved ranks or an evaluation
                    # bar must not read as a change over time
                    key = (m, ev.source, ev.rank, ev.data.get("series"))
                    series = self.series.get(key)
                    if series is None:
                        series = self.series[key] = _Series()
                    series.add(float(v), ev)
            return ()
        self._phase_times(ev, seq, _LIVE_PHASES if ev.kind == "step" else _PHASES)
        return ()

    def _phase_times(self, ev: Event, seq: int, names: dict[str, str]) -> None:
        """A step's phase times (a live `step` event, a log's timer line), by rank."""
        if ev.rank is None:
            return
        self.step_ranks.add(ev.rank)
        phases = self.rank_phase.get(ev.rank)
        if phases is None:                   # (setdefault would build a dict per event: 1 per step live)
            phases = self.rank_phase[ev.rank] = {}
        got = False
        for name, v in ev.data.items():
            ph = names.get(name)
            if ph and isinstance(v, (int, float)):
                q = phases.get(ph)
                if q is None:                # (setdefault would build a deque per value: 4 per step live)
                    q = phases[ph] = deque(maxlen=RANK_WINDOW)
                q.append(float(v))
                if len(self.phase_event) < 65536:
                    self.phase_event[(ev.rank, ph)] = ev
                got = True
        if got:
            self.rank_event[ev.rank] = ev
            self.first_seq.setdefault(ev.rank, seq)

    def finish(self) -> Iterable[Symptom]:
        out = []
        drop = self._drop()
        if drop:
            out.append(drop)
        if self.throttle and self.throttle_ev is not None:
            names = ", ".join(sorted(self.throttle))
            if drop:
                drop.facts["throttle"] = names
                drop.add_evidence(self.throttle_ev)
            else:
                s = symptom_from(self.throttle_ev, 0, "gpu_throttled_log", key=(), throttle=names)
                s.seq = 10 ** 9
                out.append(s)
        slow = self._slow_ranks()
        if not slow:
            late = late_rank_wait(self.rank_phase, self.phase_event, self.first_seq,
                                   self.known_world_size())     # (it names the late rank of two)
            if late is not None:
                slow = [late]
        out.extend(slow)
        dom = self._dominating_phase()
        # the others' long all-reduce is their wait for the slow rank(s), not slow links
        if dom and not (slow and dom.facts.get("phase") == "allreduce"):
            out.append(dom)
        return out

    # ------------------------------------------------------------------ (c) one phase dominates
    def _dominating_phase(self) -> Symptom | None:
        """The optimizer step (ZeRO's parameter all-gather, a CPU optimizer) or the gradient
        all-reduce taking longer than forward + backward, by the median over the timer lines:
        the whole job is bound by that phase, typically by slow links between GPUs."""
        best = None
        for phase, pts in self.share.items():
            # the line with the median ratio: its own numbers are quoted, so they agree with each other
            mid = sorted(pts, key=lambda p: p[0] / p[1])[(len(pts) - 1) // 2]
            ratio = mid[0] / mid[1]
            if ratio >= DOMINATE_RATIO and mid[0] >= DOMINATE_MIN_MS and (best is None or ratio > best[1]):
                best = (phase, ratio, mid, pts)
        if best is None:
            return None
        phase, ratio, mid, pts = best
        worst = max(pts, key=lambda p: p[0] / p[1])
        s = symptom_from(mid[2], mid[3], "phase_dominates", key=(phase,), phase=phase, ratio=round(ratio, 2),
                         value_ms=round(mid[0], 1), compute_ms=round(mid[1], 1),
                         lines=len(pts), worst_ms=round(worst[0], 1), worst_compute_ms=round(worst[1], 1),
                         worst_ratio=round(worst[0] / worst[1], 2))
        if worst[2] is not mid[2]:
            s.add_evidence(worst[2])
        s.seq = 10 ** 9                      # a consequence of anything else that is wrong
        return s

    # ------------------------------------------------------------------ (a) drop over time
    def _drop(self) -> Symptom | None:
        best = None
        # progress bars: only the longest-running bar of an input is the training loop (evaluation
        # and data bars come and go, and their rates swing with what they process)
        main_bar: dict[tuple, tuple] = {}
        for key, s in self.series.items():
            if key[3] is not None:
                g = key[:3]
                if g not in main_bar or len(s.values) > len(self.series[main_bar[g]].values):
                    main_bar[g] = key
        for key, s in self.series.items():
            metric = key[0]
            if key[3] is not None and main_bar.get(key[:3]) != key:
                continue
            # a progress bar's smoothed rate dips for a few updates after every evaluation pause:
            # only a slowdown over at least a tenth of the bar counts
            d = find_drop(s.values, _METRICS[metric], min_after=max(5, len(s.values) // 10) if key[3] else None)
            if d and _span(s, metric) < MIN_SERIES_SECONDS:
                continue
            if d and (best is None or d["change"] > best[2]["change"]):
                best = (metric, s, d)
        if best is None:
            return self._gradual(main_bar)
        metric, s, d = best
        k = d["split"]
        if len(s.values) - k >= 3 and worsening(s.values[k:], _METRICS[metric]) >= 0.6:
            # still getting worse after the 'step': a trend, not a step change
            g = self._gradual(main_bar)
            if g is not None:
                return g
        ev = s.events[k]
        sym = symptom_from(ev, 0, "throughput_drop", key=(metric,), metric=metric,
                           before=round(d["before"], 4), after=round(d["after"], 4),
                           change_pct=round(100 * d["change"], 1), at_step=s.steps[k],
                           points_after=d["points_after"], points_before=d["points_before"],
                           lasting=True, **self._others(k, s))
        self._timer_parts(sym, s, s.events[:k], s.events[k:])
        sym.seq = 10 ** 9                    # a symptom of something else if anything explains it
        sym.evidence = []
        for e in (s.events[k - 1], ev, s.events[-1]):
            if e is not None and all(x.line != e.line or x.source != e.source for x in sym.evidence):
                sym.add_evidence(e)
        return sym

    def _gradual(self, main_bar: dict) -> Symptom | None:
        best = None
        for key, s in self.series.items():
            if key[3] is not None and main_bar.get(key[:3]) != key:
                continue
            g = find_gradual(s.values, _METRICS[key[0]])
            # (as for a drop: a run of seconds is no trend; tqdm's rate is a moving average, so its
            # readings of a short run worsen "steadily" whenever the machine got busier)
            if g and _span(s, key[0]) < MIN_SERIES_SECONDS:
                continue
            if g and (best is None or g["change"] > best[2]["change"]):
                best = (key[0], s, g)
        if best is None:
            return None
        metric, s, g = best
        sym = symptom_from(s.events[0], 0, "throughput_drop", key=(metric,), metric=metric, gradual=True,
                           before=round(g["before"], 4), after=round(g["after"], 4),
                           change_pct=round(100 * g["change"], 1), at_step=s.steps[0], last_step=s.steps[-1],
                           points=g["points"], points_each=g["fifth"], rho=round(g["rho"], 2), lasting=True)
        self._timer_parts(sym, s, s.events[:g["fifth"]], s.events[-g["fifth"]:])
        sym.seq = 10 ** 9
        sym.evidence = []
        for e in (s.events[0], s.events[-1]):
            if all(x.line != e.line or x.source != e.source for x in sym.evidence):
                sym.add_evidence(e)
        return sym

    def _timer_parts(self, sym: Symptom, s: _Series, before: list, after: list) -> None:
        """For a series of wall_clock_breakdown lines: where the time went (the gradient all-reduce
        against the rank's own compute, before and after). The printing rank is the one that waits,
        not a slow one: the finding names no rank."""
        if not s.events or s.events[0] is None or s.events[0].kind != "timers":
            return
        sym.ranks = set()

        def part(evs: list, phases: tuple[str, ...]) -> float | None:
            vals = [sum(v for n, v in e.data.items() if _PHASES.get(n) in phases and isinstance(v, (int, float)))
                    for e in evs if e is not None]
            return round(median(vals), 1) if vals else None
        ar = (part(before, ("allreduce",)), part(after, ("allreduce",)))
        comp = (part(before, ("forward", "backward_compute")), part(after, ("forward", "backward_compute")))
        if None not in ar and None not in comp and ar[1] > ar[0]:
            sym.facts.update(allreduce_before=ar[0], allreduce_after=ar[1],
                             compute_before=comp[0], compute_after=comp[1],
                             wait_grew=ar[1] - ar[0] > 2 * max(0.0, comp[1] - comp[0]))

    def _others(self, k: int, s: _Series) -> dict:
        """The same split read on the other metrics of the same events (for the summary)."""
        facts = {}
        for m in _METRICS:
            vals = [e.data.get(m) for e in s.events]
            if all(isinstance(v, (int, float)) for v in vals) and len(vals) > k:
                facts[f"{m}_before"] = round(median(vals[:k]), 3)
                facts[f"{m}_after"] = round(median(vals[k:]), 3)
        return facts

    # ------------------------------------------------------------------ (b) slow rank
    def _slow_ranks(self) -> list[Symptom]:
        ranks = sorted(self.rank_phase)
        if self.exchange_ran:
            # the live exchange judged the same `step` phases over rounds in a row (detect/straggler.py);
            # their medians over the last steps alone named a healthy rank of two on a busy machine
            # (forward 46 against 31 ms: every rank slowed alike, gen-ae probes)
            ranks = [r for r in ranks if r not in self.step_ranks]
        if len(ranks) < 2:
            its = self._slow_iterations(exclude=set())
            return [self._slow_symptom(r, w, len(self._iter_by_rank())) for r, w in sorted(its.items())]
        worst: dict[int, tuple[str, float, float, float]] = {}
        for ph in _COMPUTE + ("allreduce",):
            # a rank judged on a few readings of its own: one slow first step is warm-up, not a straggler
            per = {r: median(self.rank_phase[r][ph]) for r in ranks
                   if len(self.rank_phase[r].get(ph) or ()) >= SLOW_MIN_READINGS}
            if len(per) < 2:
                continue
            for r, v in per.items():
                med = _slower_than_others(v, [x for rr, x in per.items() if rr != r])
                if med is None:
                    continue
                ratio = v / med
                if ph == "allreduce":
                    # the waiting ranks have the long allreduce; only blame a rank whose compute is not short
                    continue
                if r not in worst or ratio > worst[r][1]:
                    worst[r] = (ph, ratio, v, med)
        # A rank long only in backward/step while another is slow in forward/data is waiting for
        # that one inside backward's all-reduce: not a straggler itself (live `step` bwd_ms includes the wait).
        own = {r for r, w in worst.items() if w[0] in ("forward", "data")}
        if own:
            worst = {r: w for r, w in worst.items() if r in own or w[0] not in ("backward", "step")}
        if not worst:
            worst = self._late_ranks(ranks)
        worst.update(self._slow_iterations(exclude=set(worst)))
        # ranks slow in the same phase (the GPUs of one node) are one finding
        by_phase: dict[str, list[int]] = {}
        for r, w in sorted(worst.items()):
            by_phase.setdefault(w[0], []).append(r)
        out = []
        for ph, rs in by_phase.items():
            compared = len(ranks) if ph != "iteration" else len(self._iter_by_rank())
            sym = self._slow_symptom(rs[0], worst[rs[0]], compared)
            for r in rs[1:]:
                sym.merge(self._slow_symptom(r, worst[r], compared))
            if len(rs) > 1:
                sym.facts.update(value_ms=round(median(worst[r][2] for r in rs), 2),
                                 ratio=round(min(worst[r][1] for r in rs), 2),
                                 median_ms=round(median(worst[r][3] for r in rs), 2))
            out.append(sym)
        return out

    def _late_ranks(self, ranks: list[int]) -> dict[int, tuple]:
        """No rank computes slower, but a few ranks wait far less in the gradient all-reduce than
        all the others: they arrive last at every all-reduce, so the others wait for them. What
        delays them is outside forward/backward (input data, host work). The tuple holds the
        others' wait (value) against the late ranks' own (median)."""
        per = {r: median(self.rank_phase[r]["allreduce"]) for r in ranks if self.rank_phase[r].get("allreduce")}
        if len(per) < 3:
            return {}
        out = {}
        for r, v in per.items():
            others = [x for q, x in per.items() if q != r]
            med = median(others)
            spread = 1.4826 * _mad(others)
            if med - v < max(SLOW_MIN_MS, 0.5 * med) or (spread and (med - v) / spread < SLOW_Z):
                continue
            out[r] = ("arrival", med / max(v, 1e-3), med, v)
        return out if 0 < len(out) < len(per) / 2 else {}

    def _slow_symptom(self, r: int, w: tuple, compared: int) -> Symptom:
        ph, ratio, v, med = w
        if ph == "iteration":
            s = self.series_of_rank[r]
            ev, seq = s.events[-1], 0
        else:
            # the line of the phase that is slow (Megatron prints one timer per line)
            ev = self.phase_event.get((r, "allreduce" if ph == "arrival" else ph), self.rank_event[r])
            seq = self.first_seq[r]
        return symptom_from(ev, seq, "slow_rank", key=(r,), rank=r, phase=ph, ratio=round(ratio, 2),
                            value_ms=round(v, 2), median_ms=round(med, 2), ranks_compared=compared)

    def _iter_by_rank(self) -> dict[int, float]:
        """Median iteration time per rank, from the ranks' own progress lines (rank prefixes,
        one file per rank): in synchronous training they agree unless the ranks do not wait for
        each other in between (pipeline stages, independent jobs), so a clear outlier is slow."""
        self.series_of_rank = {}
        per: dict[int, float] = {}
        for (metric, _src, rank, _bar), s in self.series.items():
            if metric == "iter_ms" and rank is not None and len(s.values) >= 3:
                if rank not in self.series_of_rank or len(s.values) > len(self.series_of_rank[rank].values):
                    self.series_of_rank[rank] = s
                    per[rank] = median(s.values)
        return per

    def _slow_iterations(self, exclude: set[int]) -> dict[int, tuple]:
        per = self._iter_by_rank()
        out: dict[int, tuple] = {}
        if len(per) < 2:
            return out
        for r, v in per.items():
            if r in exclude:
                continue
            med = _slower_than_others(v, [x for q, x in per.items() if q != r])
            if med is not None:
                out[r] = ("iteration", v / med, v, med)
        return out
