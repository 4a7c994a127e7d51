"""Stall watchdog: heartbeats of the training thread's progress in the store, a verdict on
rank 0, and every rank's Python stacks on disk when progress stops — once per stall.

Heartbeats. Each rank's watchdog thread publishes, every `interval` seconds, one heartbeat
key `dsdoctor/hb/<rank>` = {seq, step, micro_step, phase, age, pid, host}: `age` is how long
the MAIN thread has been in its current phase (the hooks update session.progress), so a live
thread next to a stuck training loop still reads as stuck.

The judge. Rank 0 reads all heartbeats with one multi_get and, when some rank made no
progress for the stall timeout, or its heartbeat stopped changing (process gone, or the GIL
held in C code), issues verdict K (K = 1, 2, ...). Rank 0 measures heartbeat freshness with
its own clock (when it saw `seq` change), so clock skew between hosts does not matter.

Notices. The judge publishes what happens to a stall as numbered notices,
`dsdoctor/stall/notice/<i>` with the count in `dsdoctor/stall/count`:
  stall K     the verdict. Every rank dumps its stacks (verdict 1: DIR/stacks-rank<N>.txt,
              the file `kill -USR1` also writes to; verdict K > 1: DIR/stacks-rank<N>-stall<K>.txt)
              and emits one `stall` event carrying `id` K.
  resolved K  every rank has moved from the place (step, micro-step, phase) it was at when
              verdict K was issued: a transient stall (a slow checkpoint save on one rank, with
              --on-stall report). Every rank emits `stall_resolved` {id, stalled_s, step}, and the
              watchdog is re-armed: the next stall gets verdict K+1. No new verdict is issued
              while one stands, so a long hang is reported once, not every interval.
  abort K     with --on-stall abort: end every rank with STALL_EXIT_CODE. Sent with the verdict
              itself (the default), or, when DSDOCTOR_STALL_ABORT_AFTER gives a longer time,
              once the ranks behind have made no progress for that long — so a run can report
              a pause at the stall timeout (stacks, finding) and still ride out one that
              resolves, and only a hang that lasts is ended.
Each rank polls the count with one `add(count, 0)` per interval and reads a notice once.

Store cost per interval: every rank 1 set (heartbeat) + 1 add (notice count); rank 0 also
1 add (ready count) + 1 multi_get; rank 1 also 1 get (rank 0's heartbeat, see below). Per
notice, one get per rank. So O(1) operations per rank per interval, stall or no stall.

Rank 0 hung while holding the GIL. A main thread blocked in C code that does not release the
GIL (a C extension's busy loop, a ctypes.PyDLL call, a regex backtracking for ever) stops
every Python thread of its process, the watchdog included: rank 0 can then neither judge
nor dump its stacks. The store is not in that process's Python: under torchrun the elastic
agent hosts it (TORCHELASTIC_USE_AGENT_STORE), and with env:// rendezvous (the deepspeed
launcher) rank 0 hosts it on a C++ thread (libuv daemon) that needs no GIL; so the store
keeps answering. Rank 1 is therefore the deputy: it reads rank 0's heartbeat (one get per
interval) and, when it has not changed for the stall timeout while rank 1 itself has made
no progress for that long either (training is synchronous: a rank 0 that still trains keeps
rank 1 moving, so a rank 0 watchdog that was merely switched off after an internal error is
not called a hang), rank 1 judges in its place. If rank 0 runs on the same host, the deputy
also sends it SIGUSR1: faulthandler's handler is C code that writes the stacks without the
GIL, so stacks-rank0.txt shows where rank 0 is stuck. Limits that remain: on another host
rank 0 cannot be signalled (its stacks are missing; `py-spy dump --native --pid` on that
node); if rank 0's process died and it hosted the store (env://), the store is gone and the
other ranks' watchdogs switch themselves off on the first failing call; a world of one rank
has no deputy.
"""
from __future__ import annotations

import faulthandler
import math
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from . import flight_recorder
from .exchange import decode, own_store
from .say import say

HB_PREFIX = "dsdoctor/hb/"
HB_READY = "dsdoctor/hb/ready"
NOTICE_COUNT = "dsdoctor/stall/count"
NOTICE_PREFIX = "dsdoctor/stall/notice/"
VERDICT_COUNT = "dsdoctor/stall/verdicts"
DUMPED_PREFIX = "dsdoctor/stall/dumped/"
DEPUTY = 1                      # the rank that judges when rank 0's watchdog cannot run
STALL_EXIT_CODE = 86            # distinctive: `dsdoctor run` reads it as "ended by the watchdog"
MIN_TIMEOUT = 60.0
PHASE_ORDER = {"idle": 0, "data": 0, "forward": 1, "backward": 2, "step": 3}
ABORT_AFTER_ENV = "DSDOCTOR_STALL_ABORT_AFTER"


def stall_timeout(options: Any, progress: Any) -> float:
    """options.stall_timeout, or max(60 s, 10 x the median step time)."""
    if getattr(options, "stall_timeout", None):
        return float(options.stall_timeout)
    med_ms = progress.median_step_ms() if hasattr(progress, "median_step_ms") else None
    return max(MIN_TIMEOUT, 10 * (med_ms or 0) / 1000)


def abort_after(options: Any, timeout: float) -> float:
    """Seconds without progress before --on-stall abort ends the run: options.stall_abort_after
    or $DSDOCTOR_STALL_ABORT_AFTER, never less than the stall timeout (the default)."""
    raw = getattr(options, "stall_abort_after", None) or os.environ.get(ABORT_AFTER_ENV)
    if not raw:
        return timeout
    try:
        v = float(raw)
    except ValueError:
        return timeout
    return max(timeout, v) if math.isfinite(v) else timeout     # nan/inf: the default


def progress_age(progress: Any, now: float | None = None) -> float:
    """Seconds since the training thread last changed phase or finished a step."""
    now = time.monotonic() if now is None else now
    last = max(float(getattr(progress, "phase_started", now) or now),
               float(getattr(progress, "last_step_end", None) or 0.0))
    return max(0.0, now - last)


def position(hb: dict[str, Any]) -> tuple[int, int, int]:
    return (int(hb.get("step") or 0), int(hb.get("micro_step") or 0),
            PHASE_ORDER.get(str(hb.get("phase")), 0))


def place(hb: dict[str, Any]) -> tuple[int, int, str]:
    """Where a rank is, exactly (the phase by name: pipeline engines have phases PHASE_ORDER
    does not rank). A rank that left its place at the verdict has made progress."""
    return (int(hb.get("step") or 0), int(hb.get("micro_step") or 0), str(hb.get("phase")))


def stacks_name(rank: int | str, stall_id: int) -> str:
    """Verdict 1 writes to stacks-rank<N>.txt (also SIGUSR1's file), verdict K to ...-stall<K>.txt."""
    return f"stacks-rank{rank}.txt" if stall_id <= 1 else f"stacks-rank{rank}-stall{stall_id}.txt"


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
                    "node": heartbeats.get(r, {}).get("node"),
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
        self.stacks_path = self.out_dir / stacks_name(self.rank, 1)
        node = getattr(session, "node", None)
        self._node_label = node.label if node is not None else socket.gethostname()
        # where every rank's stacks go, as the verdict names them: DIR, or DIR/node*/ over several nodes
        run_dir = Path(getattr(session, "run_dir", self.out_dir))
        self._stacks_dir = run_dir / "node*" if self.out_dir != run_dir else self.out_dir
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Any = None
        self._seq = 0
        self._seen: dict[int, tuple[int, float]] = {}     # rank -> (seq, when this judge saw it change)
        self._registered = False
        self._hb0_there = False             # deputy: rank 0's heartbeat key exists (get would block)
        self._notices_read: int | None = None
        self._judging: dict[str, Any] | None = None       # the judge's view of the standing verdict
        self._stacks_fh = None
        self._sigusr1 = False
        self.open_stall: dict[str, Any] | None = None     # the standing verdict (every rank)
        self.verdicts: list[dict[str, Any]] = []           # every verdict seen, in order
        self.resolved: list[dict[str, Any]] = []
        self.handled = False                # a stall was reported in this session
        self.ended = False                  # aborted: no more beats
        self.diagnosis: dict[str, Any] | None = None       # the last verdict
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
        """`kill -USR1 <pid>` (or the run wrapper, or the deputy) writes this rank's stacks to DIR."""
        if not hasattr(signal, "SIGUSR1"):
            return
        self._stacks_fh = open(self.stacks_path, "a", encoding="utf-8")
        prev = signal.getsignal(signal.SIGUSR1)
        faulthandler.register(signal.SIGUSR1, file=self._stacks_fh, all_threads=True,
                              chain=prev not in (signal.SIG_DFL, None))
        self._sigusr1 = True

    def timeout(self) -> float:
        return stall_timeout(self.session.options, self.session.progress)

    def interval(self) -> float:
        return min(10.0, max(0.5, self.timeout() / 5))

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
                "host": socket.gethostname(), "node": self._node_label}

    def tick(self) -> None:
        if self.ended:
            return
        hb = self.heartbeat()
        if self._store is None:                      # one rank, or no store: judge alone
            self._judge({self.rank: hb})
            return
        st = self._store
        st.set(HB_PREFIX + str(self.rank), json.dumps(hb, separators=(",", ":")))
        if not self._registered:
            # notices from before this session (an earlier attach on the same store) are not ours;
            # no verdict can be issued before this rank has registered below
            self._notices_read = int(st.add(NOTICE_COUNT, 0))
            st.add(HB_READY, 1)
            self._registered = True
        self._read_notices()
        if self.ended:
            return
        if self.rank == 0 or (self.rank == DEPUTY and self._rank0_silent()):
            missing0 = self.rank != 0 and not self._hb0_there     # rank 0 hung before its first beat
            ranks = list(range(1 if missing0 else 0, self.world))
            if int(st.add(HB_READY, 0)) >= len(ranks):             # multi_get blocks on a missing key
                raws = st.multi_get([HB_PREFIX + str(r) for r in ranks])
                beats = {r: d for r, d in zip(ranks, (decode(x) for x in raws)) if d is not None}
                if missing0:
                    beats[0] = {"seq": 0, "step": None, "phase": "no heartbeat yet", "age": 0.0}
                self._judge(beats)

    def _rank0_silent(self) -> bool:
        """Deputy: rank 0's heartbeat unchanged for the stall timeout, and this rank stuck too."""
        st = self._store
        now, timeout = time.monotonic(), self.timeout()
        if not self._hb0_there:
            self._hb0_there = bool(st.check([HB_PREFIX + "0"]))
        if self._hb0_there:
            seq = int((decode(st.get(HB_PREFIX + "0")) or {}).get("seq") or 0)
        else:
            seq = 0                         # no beat yet: silent since this rank first looked
        prev = self._seen.get(0)
        if prev is None or prev[0] != seq:
            self._seen[0] = prev = (seq, now)
        return now - prev[1] >= timeout and progress_age(self.session.progress, now) >= timeout

    # ------------------------------------------------------------------ the judge (rank 0 or deputy)
    def _judge(self, beats: dict[int, dict[str, Any]]) -> None:
        now = time.monotonic()
        timeout = self.timeout()
        ages, stopped = {}, set()
        for r, hb in beats.items():
            seq = int(hb.get("seq") or 0)
            prev = self._seen.get(r)
            if prev is None or prev[0] != seq:
                self._seen[r] = prev = (seq, now)
            since = now - prev[1]                      # this judge's clock, not the other host's
            ages[r] = float(hb.get("age") or 0.0) + since
            if since >= timeout:
                stopped.add(r)
        if self.open_stall is not None:                # a verdict stands: watch how it ends
            self._follow(beats, ages, stopped, now)
            return
        v = verdict(beats, ages, stopped, timeout)
        if v is None:
            return
        sid = int(self._store.add(VERDICT_COUNT, 1)) if self._store is not None else len(self.verdicts) + 1
        wait_abort = abort_after(self.session.options, timeout)
        v["id"] = sid
        v["stacks"] = str(self._stacks_dir / stacks_name("<N>", sid))
        v["on_stall"] = self.session.options.on_stall
        v["abort"] = v["on_stall"] == "abort" and wait_abort <= timeout
        if v["on_stall"] == "abort" and not v["abort"]:
            v["abort_after_s"] = round(wait_abort, 1)
        if self.rank != 0:
            v["judge"] = self.rank
            v["signalled"] = self._signal_rank0(beats.get(0) or {})
        self._judging = {"id": sid, "at": {r: place(hb) for r, hb in beats.items()}, "since": now,
                         "waited_s": v["waited_s"], "abort_sent": v["abort"]}
        self._publish({"type": "stall", **v})

    def _follow(self, beats: dict[int, dict[str, Any]], ages: dict[int, float], stopped: set[int],
                now: float) -> None:
        """Resolve the standing verdict once every rank has moved on; abort it when it lasts."""
        v = self.open_stall or {}
        j = self._judging
        if j is None or j["id"] != v.get("id"):        # a verdict another judge issued: take it over here
            j = self._judging = {"id": v.get("id"), "at": {r: place(hb) for r, hb in beats.items()},
                                 "since": now, "waited_s": float(v.get("waited_s") or 0.0),
                                 "abort_sent": bool(v.get("abort"))}
            return
        moved = len(beats) >= len(j["at"]) and all(
            r not in stopped and place(hb) != j["at"].get(r) for r, hb in beats.items())
        if moved:
            self._publish({"type": "resolved", "id": j["id"], "ranks": v.get("ranks"),
                           "stalled_s": round(j["waited_s"] + now - j["since"], 1),
                           "step": min(int(hb.get("step") or 0) for hb in beats.values())})
            return
        if v.get("on_stall") == "abort" and not j["abort_sent"]:
            behind = [r for r in (v.get("ranks") or []) if r in ages] or list(ages)
            waited = max(ages[r] for r in behind)
            if waited >= abort_after(self.session.options, self.timeout()):
                j["abort_sent"] = True
                self._publish({"type": "abort", "id": j["id"], "waited_s": round(waited, 1)})

    def _signal_rank0(self, hb0: dict[str, Any]) -> list[int]:
        """Deputy: ask a silent rank 0 on this host for its stacks (faulthandler needs no GIL)."""
        pid = hb0.get("pid")
        if not isinstance(pid, int) or pid == os.getpid() or hb0.get("host") != socket.gethostname() \
                or not hasattr(signal, "SIGUSR1"):
            return []
        with self.session.guard("watchdog.signal"):
            os.kill(pid, signal.SIGUSR1)
            return [0]
        return []

    def _publish(self, notice: dict[str, Any]) -> None:
        if self._store is None:
            self._on_notice(notice)
            return
        i = int(self._store.add(NOTICE_COUNT, 1))
        self._store.set(NOTICE_PREFIX + str(i), json.dumps(notice, separators=(",", ":")))
        self._read_notices()                           # the judge acts on its own notice at once

    # ------------------------------------------------------------------ every rank: the notices
    def _read_notices(self) -> None:
        n = int(self._store.add(NOTICE_COUNT, 0))
        while (self._notices_read or 0) < n and not self.ended:
            self._notices_read = (self._notices_read or 0) + 1
            notice = decode(self._store.get(NOTICE_PREFIX + str(self._notices_read)))
            if notice is not None:
                self._on_notice(notice)

    def _on_notice(self, notice: dict[str, Any]) -> None:
        kind = notice.pop("type", "stall")
        if kind == "stall":
            self.on_stall(notice)
        elif kind == "resolved":
            self.on_resolved(notice)
        elif kind == "abort":
            self._abort(self.open_stall or notice)

    # ------------------------------------------------------------------ the stall
    def on_stall(self, v: dict[str, Any]) -> None:
        """Dump this rank's stacks, record the stall, and abort if asked."""
        sid = int(v.get("id") or len(self.verdicts) + 1)
        self.handled, self.diagnosis, self.open_stall = True, v, v
        self.verdicts.append(v)
        with self.session.guard("watchdog.stacks"):
            self.dump_stacks(v, sid)
        with self.session.guard("watchdog.flight_recorder"):
            fr = flight_recorder.dump(self.out_dir, self.rank, sid)
            if fr is not None:
                v = {**v, "flight_recorder": str(fr)}
        if self._store is not None:
            with self.session.guard("watchdog.store"):
                self._store.add(DUMPED_PREFIX + str(sid), 1)
        self.session.emit("stall", step=v.get("last_step"), **v)
        if v.get("abort"):
            self._abort(v)

    def on_resolved(self, r: dict[str, Any]) -> None:
        """Progress resumed after verdict r['id']: record it; the watchdog is armed again."""
        if self.open_stall is not None and self.open_stall.get("id") == r.get("id"):
            self.open_stall = None
        self.resolved.append(r)
        data = {k: v for k, v in r.items() if k != "step"}
        self.session.emit("stall_resolved", step=r.get("step"), **data)
        if self.rank == 0 and not getattr(self.session, "quiet", False):
            say(f"dsdoctor: stall {r.get('id')} resolved: every rank had moved on about {r.get('stalled_s')} s "
                f"after it began (now at step {r.get('step')}); watching for the next one")

    def _abort(self, v: dict[str, Any]) -> None:
        self.ended = True
        self.diagnosis = v
        self._wait_for_dumps()
        if self.rank == 0 or v.get("judge") == self.rank:
            say(f"dsdoctor: stall: rank(s) {_where(v)} made no progress for {v.get('waited_s')} s "
                f"(last step {v.get('last_step')}, phase {v.get('last_phase')}); stacks in {self._stacks_dir}; "
                f"ending the run (--on-stall abort)")
        with self.session.guard("watchdog.flush"):
            self.session.flush()
        self.exit(STALL_EXIT_CODE)

    def dump_stacks(self, v: dict[str, Any], stall_id: int = 1) -> None:
        if stall_id <= 1:
            fh = self._stacks_fh
            if fh is None or fh.closed:
                fh = self._stacks_fh = open(self.stacks_path, "a", encoding="utf-8")
        else:
            fh = open(self.out_dir / stacks_name(self.rank, stall_id), "a", encoding="utf-8")
        try:
            fh.write(f"# dsdoctor stall {stall_id} on rank {self.rank} (pid {os.getpid()}) at "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}: this rank at step {self.session.progress.step}, "
                     f"phase {self.session.progress.phase}; behind: ranks {v.get('ranks')}. The training loop is "
                     f"the main thread, listed last.\n")
            fh.flush()
            faulthandler.dump_traceback(file=fh, all_threads=True)
            fh.flush()
        finally:
            if fh is not self._stacks_fh:
                fh.close()

    def _wait_for_dumps(self) -> None:
        """Give the other ranks' watchdogs one or two beats to write their stacks first."""
        if self._store is None:
            return
        stall_id = int((self.diagnosis or {}).get("id") or 1)
        judge = self.rank == 0 or (self.diagnosis or {}).get("judge") == self.rank
        deadline = time.monotonic() + (3 * self.interval() if judge else 1.0)
        while time.monotonic() < deadline:
            try:
                if int(self._store.add(DUMPED_PREFIX + str(stall_id), 0)) >= self.world:
                    break
            except Exception:
                break
            time.sleep(0.2)
        if not judge:
            time.sleep(1.0)          # let the judge print the verdict before the launcher tears down


def _where(v: dict[str, Any]) -> str:
    """'[1] (on vm (node 1))': the ranks behind and their hosts, for the messages printed."""
    hosts = sorted({str(b.get("node") or b.get("host")) for b in v.get("behind") or []
                    if b.get("node") or b.get("host")})
    return f"{v.get('ranks')}" + (f" (on {', '.join(hosts)})" if hosts else "")
