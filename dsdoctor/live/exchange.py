"""Cross-rank exchange of phase times through the rendezvous key-value store.

Why the store and not a collective: a collective on the training process group is exactly
what hangs when a rank is stuck, and it would add a synchronisation to every K-th step. The
store (the TCPStore torchrun/deepspeed rendezvous through) is a separate TCP service that
keeps answering while NCCL/gloo is stuck.

Cost, per K steps (options.exchange_every) and at most once per MIN_PERIOD seconds:
  every rank   1 `set` of ~120 bytes (its key `dsdoctor/sum/<rank>`), from a background
               thread, never from the training thread; plus one `add` at start-up.
  rank 0       no `set` (its own summary stays in the process); `add(ready, 0)` until every
               rank has published once, then 1 `multi_get` over the other ranks' keys (one
               round trip that returns world_size - 1 values), then median/MAD in Python on
               its own thread.
At 4,096 ranks: 4,096 small sets spread over the K-step window, and one 4,096-key multi_get
(~0.5 MB) on rank 0, ~0.1 s of work per round (benchmarks/store_scale.py); rank 0 then spaces
its rounds so this stays under 1 % of its time (GIL_BUDGET). Nothing is kept
per round except the straggler detector's counters for the current outliers.
"""
from __future__ import annotations

import collections
import itertools
import json
import threading
import time
from typing import Any

from ..stats import median

PREFIX = "dsdoctor/sum/"
READY_KEY = "dsdoctor/sum/ready"
POLL_SECONDS = 0.5       # how often the thread looks at the training thread's step counter
MIN_PERIOD = 1.0         # at most one publication per second, whatever K and the step time
GIL_BUDGET = 100         # rank 0 aggregates at most once per 100 x the last round's cost: its
                         # decoding holds the GIL next to the training thread (<= 1 %)


def summary_key(rank: int) -> str:
    return f"{PREFIX}{rank}"


def own_store(store: Any) -> Any:
    """A separate client connection when the store can make one (Store.clone, torch >= 2.6),
    so the exchange never queues behind the training thread's store calls."""
    try:
        return store.clone()
    except Exception:
        return store


def window_summary(progress: Any, last: int = 10) -> dict[str, Any] | None:
    """Median phase times (ms) over this rank's `last` steps (at least 5). `at` is the global
    step (not `step`: that key is the optimizer-step phase time, as in round_stats)."""
    window = getattr(progress, "window", None) or ()
    n = max(5, last)
    # the last n steps without copying the whole window (64 steps): newest first, the medians
    # do not depend on the order
    window = list(itertools.islice(reversed(window), n)) if isinstance(window, collections.deque) \
        else list(window)[-n:]
    if not window:
        return None
    out: dict[str, Any] = {"at": int(progress.step), "n": len(window), "t": round(time.time(), 3)}
    for ph, key in _PHASE_KEYS:            # (the keys made once, not two f-strings per step per phase)
        vals = [v for w in window if (v := w.get(key)) is not None]
        if vals:
            out[ph] = round(median(vals), 3)
    return out


_PHASE_KEYS = tuple((ph, f"{ph}_ms") for ph in ("fwd", "bwd", "step", "data"))


def decode(raw: Any) -> dict[str, Any] | None:
    try:
        d = json.loads(raw.decode() if isinstance(raw, (bytes, bytearray)) else raw)
        return d if isinstance(d, dict) else None
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None


class Aggregator:
    """Rank 0's side: read every rank's summary in O(1) store operations and condense it."""

    def __init__(self, store: Any, world_size: int, own_rank: int | None = None):
        self.store = store
        self.world_size = world_size
        # own_rank: this rank's summary is handed to round() and never goes through the store
        # (one `set` round trip less per round on rank 0)
        self.own_rank = own_rank
        self._ranks = [r for r in range(world_size) if r != own_rank]
        self.keys = [summary_key(r) for r in self._ranks]
        self.ops = 0
        self._all_ready = False

    def ready(self) -> bool:
        """All ranks have published once, so multi_get will not block on a missing key. Asked
        of the store until it is true, then known: a published key stays (one store round
        trip less per round on rank 0)."""
        if self._all_ready:
            return True
        self.ops += 1
        self._all_ready = int(self.store.add(READY_KEY, 0)) >= self.world_size
        return self._all_ready

    def collect(self, own: dict[str, Any] | None = None) -> dict[int, dict[str, Any]]:
        self.ops += 1
        raws = self.store.multi_get(self.keys)
        out = {}
        if own is not None and self.own_rank is not None:
            out[self.own_rank] = own
        for r, raw in zip(self._ranks, raws):
            d = decode(raw)
            if d is not None:
                out[r] = d
        return dict(sorted(out.items()))

    def round(self, max_lag_steps: int | None = None, own: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """One aggregation round -> `rank_times` data, or None when not every rank is there.
        Summaries older than max_lag_steps behind the newest are left out (a stalled rank's
        last numbers are the watchdog's business, not a timing sample)."""
        from ..detect.straggler import round_stats
        if not self.ready():
            return None
        sums = self.collect(own)
        if max_lag_steps is not None and sums:
            newest = max(int(s.get("at", 0)) for s in sums.values())
            sums = {r: s for r, s in sums.items() if newest - int(s.get("at", 0)) <= max_lag_steps}
        if len(sums) < 2:
            return None
        return round_stats(sums)


class Exchange:
    """A live part (start/stop): publishes this rank's summary every K steps and, on rank 0,
    aggregates all ranks and emits `rank_times` events for the straggler detector."""

    PART = "exchange"

    def __init__(self, session: Any):
        self.session = session
        self.every = max(1, int(getattr(session.options, "exchange_every", 10) or 10))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Any = None
        self._agg: Aggregator | None = None
        self._published_step: int | None = None
        self._last_pub = 0.0
        self._registered = False
        self._last_round = 0.0
        self._round_cost = 0.0
        self.rounds = 0

    def start(self) -> None:
        s = self.session
        if s.store is None or s.world_size < 2:
            return                         # nothing to compare against: a normal case, not an error
        self._store = own_store(s.store)
        if s.rank == 0:
            self._agg = Aggregator(self._store, s.world_size, own_rank=0)
        self._thread = threading.Thread(target=self._run, name="dsdoctor-exchange", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._pause()):
            if not self.session.enabled(self.PART):
                return
            with self.session.guard(self.PART):
                self.tick()

    def _pause(self) -> float:
        """Seconds until the next look: none is due before MIN_PERIOD after the last
        publication, then every POLL_SECONDS. One wake-up a second instead of two when steps
        are fast: a wake-up of this thread costs ~70 us of CPU on a busy core (measured with a
        per-thread clock), taken from the training's core."""
        return max(POLL_SECONDS, self._last_pub + MIN_PERIOD + 0.01 - time.monotonic())

    def tick(self) -> None:
        step = int(self.session.progress.step)
        due = self._published_step is None or step - self._published_step >= self.every
        if not due or time.monotonic() - self._last_pub < MIN_PERIOD:
            return
        summary = window_summary(self.session.progress, self.every)
        if summary is None:
            return
        tele = getattr(self.session, "telemetry_latest", None) or {}
        for k in ("sm_clock", "throttle"):
            if tele.get(k):
                summary[k] = tele[k]
        agg = self._agg
        if agg is None or agg.own_rank != self.session.rank:
            self._store.set(summary_key(self.session.rank), json.dumps(summary, separators=(",", ":")))
        if not self._registered:
            self._store.add(READY_KEY, 1)
            self._registered = True
        self._published_step, self._last_pub = step, time.monotonic()
        now = time.monotonic()
        if agg is not None and now - self._last_round >= max(MIN_PERIOD, GIL_BUDGET * self._round_cost):
            data = agg.round(max_lag_steps=3 * self.every, own=summary)
            self._last_round = now
            self._round_cost = time.monotonic() - now
            if data is not None:
                self.rounds += 1
                self.session.emit("rank_times", step=step, **data)
