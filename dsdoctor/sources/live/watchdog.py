"""Stall watchdog: heartbeats of the training thread's progress in the store, a verdict on
rank 0, and every rank's Python stacks on disk when progress stops.

Each rank's watchdog thread publishes, every `interval` seconds, one heartbeat key
`dsdoctor/hb/<rank>` = {seq, step, micro_step, phase, age}: `age` is how long the MAIN
thread has been in its current phase (the hooks update session.progress), so a live thread
next to a stuck training loop still reads as stuck. Rank 0 reads all heartbeats with one
multi_get and, when some rank made no progress for the stall timeout, or its heartbeat
stopped changing (process gone, or the GIL held in C code), writes the verdict to
`dsdoctor/stall`. Every rank's watchdog polls that key (one `check`), dumps its own stacks
with faulthandler into DIR/stacks-rank<N>.txt, emits a `stall` event and, with
on_stall=abort, ends the process with STALL_EXIT_CODE instead of waiting for the collective
timeout (30 min for gloo groups DeepSpeed creates; deepspeed-facts.md §7).

Rank 0 measures heartbeat freshness with its own clock (when it saw `seq` change), so clock
skew between hosts does not matter. Store cost: per rank 1 set + 1 check per interval;
rank 0 also 1 add + 1 multi_get per interval.
"""
from __future__ import annotations

import faulthandler
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .exchange import decode, own_store

HB_PREFIX = "dsdoctor/hb/"
HB_READY = "dsdoctor/hb/ready"
STALL_KEY = "dsdoctor/stall"
DUMPED_KEY = "dsdoctor/stall/dumped"
STALL_EXIT_CODE = 86            # distinctive: `dsdoctor run` reads it as "ended by the watchdog"
MIN_TIMEOUT = 60.0
PHASE_ORDER = {"idle": 0, "data": 0, "forward": 1, "backward": 2, "step": 3}


def stall_timeout(options: Any, progress: Any) -> float:
    """options.stall_timeout, or max(60 s, 10 x the median step time)."""
    if getattr(options, "stall_timeout", None):
        return float(options.stall_timeout)
    med_ms = progress.median_step_ms() if hasattr(progress, "median_step_ms") else None
    return max(MIN_TIMEOUT, 10 * (med_ms or 0) / 1000)


def progress_age(progress: Any, now: float | None = None) -> float:
    """Seconds since the training thread last changed phase or finished a step."""
    now = time.monotonic() if now is None else now
    last = max(float(getattr(progress, "phase_started", now) or now),
               float(getattr(progress, "last_step_end", None) or 0.0))
    return max(0.0, now - last)


def position(hb: dict[str, Any]) -> tuple[int, int, int]:
    return (int(hb.get("step") or 0), int(hb.get("micro_step") or 0),
            PHASE_ORDER.get(str(hb.get("phase")), 0))


def verdict(heartbeats: dict[int, dict[str, Any]], ages: dict[int, float], stopped: set[int],
            timeout: float) -> dict[str, Any] | None:
    """The stall diagnosis from every rank's last heartbeat, or None if all progress.

    ages: seconds without progress per rank (rank 0's view); stopped: ranks whose heartbeat
    did not change for `timeout`. Behind = ranks whose heartbeat stopped, else the ranks at
    the lowest (step, micro_step, phase) position: the others are waiting for them."""
    stuck = {r for r, a in ages.items() if a >= timeout} | stopped
    if not stuck:
        return None
    if stopped:
        behind = sorted(stopped)
    else:
        low = min(position(hb) for hb in heartbeats.values())
        behind = sorted(r for r, hb in heartbeats.items() if position(hb) == low)
    first = heartbeats.get(behind[0], {})
    all_same = len(behind) == len(heartbeats) and len(heartbeats) > 1
    return {
        "ranks": behind,
        "last_step": first.get("step"),
        "last_phase": first.get("phase"),
        "waited_s": round(max(ages.get(r, 0.0) for r in stuck | set(behind)), 1),
        "timeout_s": round(timeout, 1),
        "heartbeat_stopped": sorted(stopped),
        "all_ranks_same_place": all_same,
        "behind": [{"rank": r, "step": heartbeats.get(r, {}).get("step"),
                    "phase": heartbeats.get(r, {}).get("phase"),
                    "age_s": round(ages.get(r, 0.0), 1),
                    "host": heartbeats.get(r, {}).get("host"),
                    "pid": heartbeats.get(r, {}).get("pid")} for r in behind[:16]],
        "others": {str(r): [hb.get("step"), hb.get("phase")] for r, hb in list(heartbeats.items())[:16]
                   if r not in behind},
        "world_size": len(heartbeats),
    }


class Watchdog:
    """A live part (start/stop), one per rank."""

    PART = "watchdog"

    def __init__(self, session: Any):
        self.session = session
        self.rank = session.rank
        self.world = session.world_size
        self.out_dir = Path(session.out_dir)
        self.stacks_path = self.out_dir / f"stacks-rank{self.rank}.txt"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Any = None
        self._seq = 0
        self._seen: dict[int, tuple[int, float]] = {}     # rank -> (seq, when rank 0 saw it change)
        self._registered = False
        self._stacks_fh = None
        self._sigusr1 = False
        self.handled = False
        self.diagnosis: dict[str, Any] | None = None
        self.exit = os._exit                # replaced in unit tests

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.session.store is not None and self.world > 1:
            self._store = own_store(self.session.store)
        with self.session.guard("watchdog.sigusr1"):
            self._register_sigusr1()
        self._thread = threading.Thread(target=self._run, name="dsdoctor-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._sigusr1:
            try:
                faulthandler.unregister(signal.SIGUSR1)
            except Exception:
                pass
        if self._stacks_fh is not None:
            try:
                self._stacks_fh.close()
                if self.stacks_path.stat().st_size == 0:
                    self.stacks_path.unlink()        # no stall, no request: leave no empty file
            except OSError:
                pass

    def _register_sigusr1(self) -> None:
        """`kill -USR1 <pid>` (or the run wrapper) writes this rank's stacks to DIR."""
        if not hasattr(signal, "SIGUSR1"):
            return
        self._stacks_fh = open(self.stacks_path, "a", encoding="utf-8")
        prev = signal.getsignal(signal.SIGUSR1)
        faulthandler.register(signal.SIGUSR1, file=self._stacks_fh, all_threads=True,
                              chain=prev not in (signal.SIG_DFL, None))
        self._sigusr1 = True

    def interval(self) -> float:
        return min(10.0, max(0.5, stall_timeout(self.session.options, self.session.progress) / 5))

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            if not self.session.enabled(self.PART):
                return
            with self.session.guard(self.PART):
                self.tick()

    # ------------------------------------------------------------------ one beat
    def heartbeat(self) -> dict[str, Any]:
        p = self.session.progress
        self._seq += 1
        return {"seq": self._seq, "step": int(p.step), "micro_step": int(getattr(p, "micro_step", 0) or 0),
                "phase": p.phase, "age": round(progress_age(p), 2), "pid": os.getpid(),
                "host": socket.gethostname()}

    def tick(self) -> None:
        if self.handled:
            return
        hb = self.heartbeat()
        if self._store is None:                      # one rank, or no store: judge alone
            self._judge({self.rank: hb})
            return
        self._store.set(HB_PREFIX + str(self.rank), json.dumps(hb, separators=(",", ":")))
        if not self._registered:
            self._store.add(HB_READY, 1)
            self._registered = True
        if self._store.check([STALL_KEY]):
            self.on_stall(decode(self._store.get(STALL_KEY)) or {})
            return
        if self.rank == 0 and int(self._store.add(HB_READY, 0)) >= self.world:
            raws = self._store.multi_get([HB_PREFIX + str(r) for r in range(self.world)])
            beats = {r: d for r, d in enumerate(decode(x) for x in raws) if d is not None}
            self._judge(beats)

    def _judge(self, beats: dict[int, dict[str, Any]]) -> None:
        now = time.monotonic()
        timeout = stall_timeout(self.session.options, self.session.progress)
        ages, stopped = {}, set()
        for r, hb in beats.items():
            seq = int(hb.get("seq") or 0)
            prev = self._seen.get(r)
            if prev is None or prev[0] != seq:
                self._seen[r] = prev = (seq, now)
            since = now - prev[1]                      # rank 0's clock, not the other host's
            ages[r] = float(hb.get("age") or 0.0) + since
            if since >= timeout:
                stopped.add(r)
        v = verdict(beats, ages, stopped, timeout)
        if v is None:
            return
        v["stacks"] = str(self.out_dir / "stacks-rank<N>.txt")
        v["on_stall"] = self.session.options.on_stall
        if self._store is not None:
            self._store.set(STALL_KEY, json.dumps(v, separators=(",", ":")))
        self.on_stall(v)

    # ------------------------------------------------------------------ the stall
    def on_stall(self, v: dict[str, Any]) -> None:
        """Dump this rank's stacks, record the stall, and abort if asked."""
        self.handled, self.diagnosis = True, v
        with self.session.guard("watchdog.stacks"):
            self.dump_stacks(v)
        if self._store is not None:
            with self.session.guard("watchdog.store"):
                self._store.add(DUMPED_KEY, 1)
        self.session.emit("stall", step=v.get("last_step"), **v)
        if self.session.options.on_stall != "abort":
            return
        self._wait_for_dumps()
        if self.rank == 0:
            print(f"dsdoctor: stall: rank(s) {v.get('ranks')} made no progress for {v.get('waited_s')} s "
                  f"(last step {v.get('last_step')}, phase {v.get('last_phase')}); stacks in {self.out_dir}; "
                  f"ending the run (--on-stall abort)", file=sys.stderr, flush=True)
        with self.session.guard("watchdog.flush"):
            self.session.flush()
        self.exit(STALL_EXIT_CODE)

    def dump_stacks(self, v: dict[str, Any]) -> None:
        fh = self._stacks_fh
        if fh is None or fh.closed:
            fh = self._stacks_fh = open(self.stacks_path, "a", encoding="utf-8")
        fh.write(f"# dsdoctor stall on rank {self.rank} (pid {os.getpid()}) at "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}: this rank at step {self.session.progress.step}, "
                 f"phase {self.session.progress.phase}; behind: ranks {v.get('ranks')}. The training loop is the "
                 f"main thread, listed last.\n")
        fh.flush()
        faulthandler.dump_traceback(file=fh, all_threads=True)
        fh.flush()

    def _wait_for_dumps(self) -> None:
        """Give the other ranks' watchdogs one or two beats to write their stacks first."""
        if self._store is None:
            return
        deadline = time.monotonic() + (3 * self.interval() if self.rank == 0 else 1.0)
        while time.monotonic() < deadline:
            try:
                if int(self._store.add(DUMPED_KEY, 0)) >= self.world:
                    break
            except Exception:
                break
            time.sleep(0.2)
        if self.rank != 0:
            time.sleep(1.0)          # let rank 0 print the verdict before the launcher tears down
