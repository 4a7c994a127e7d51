"""One event, one symptom: errors that need no arithmetic (config errors, op build failures,
hardware errors, a communication watchdog's abort, megatron-core's rerun verdicts). The symptom's name is the event's `error` id, prefixed by its kind."""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Evidence, Symptom
from .base import Detector, symptom_from


class PassThroughDetector(Detector):
    kinds = ("config_error", "env_error", "hardware", "comm_abort", "collective_mismatch", "result_check", "rank_done")

    def __init__(self) -> None:
        self._xids: list[Symptom] = []                 # driver Xid lines: no rank of their own
        self._gpu_error_ranks: dict[int, set[int | None]] = {}   # rank -> pids of its GPU errors
        self._run_pids: set[int] = set()               # the run's processes, as its launcher named them

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if ev.kind == "rank_done":                     # no symptom: only the pid of one of the run's processes
            if ev.data.get("pid") is not None and len(self._run_pids) < 4096:
                self._run_pids.add(ev.data["pid"])
            return ()
        d = dict(ev.data)
        err = str(d.pop("error", "unknown"))
        name = f"{ev.kind}.{err}"          # e.g. config_error.batch_mismatch, hardware.xid
        key = (d.get("key"), d.get("xid"), d.get("op"))
        s = symptom_from(ev, seq, name, key=key)
        s.facts.update(d)              # not as **d: config errors carry a 'key' fact
        if d.get("compiler_line") is not None:         # an op build's compiler error: the decisive line, first
            s.evidence.insert(0, Evidence(ev.source, d["compiler_line"], str(d.get("compiler_error") or "")))
        if ev.kind == "hardware":
            s.facts["other_process"] = False           # decided at finish, once the run's pids are known
            if d.get("xid") is not None and ev.rank is None and len(self._xids) < 64:
                self._xids.append(s)
            elif d.get("xid") is None and ev.rank is not None and len(self._gpu_error_ranks) < 4096:
                self._gpu_error_ranks.setdefault(ev.rank, set()).add(d.get("pid"))
        return (s,)

    def finish(self) -> Iterable[Symptom]:
        """The rank behind a driver Xid: the one whose process the Xid names (pid=, as NCCL's WARN
        line of that rank does), or else the only rank whose process hit a GPU error."""
        for s in self._xids:
            if s.ranks:
                continue
            pid = s.facts.get("pid")
            by_pid = {r for r, pids in self._gpu_error_ranks.items() if pid is not None and pid in pids}
            if by_pid:
                s.ranks |= by_pid
            elif len(self._gpu_error_ranks) == 1:
                s.ranks |= set(self._gpu_error_ranks)
            # an application fault (Xid 13/31/43/45) of a process the launcher did not start, on a node where none
            # of the run's processes hit a GPU error: another job's kernel on another GPU of a shared node
            s.facts["other_process"] = bool(
                not s.ranks and pid is not None and not s.facts.get("gpu_fault") and self._run_pids
                and pid not in self._run_pids and not self._gpu_error_ranks)
        return ()
