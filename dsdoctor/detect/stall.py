"""Stalls seen by the live watchdog (live/watchdog.py): `stall` and `stall_resolved`
events -> one `stall` symptom per verdict.

Every rank records the same verdict (the judge decides it, the others read it from the store
when they dump their stacks), so the symptom is keyed by the verdict's id, not by rank, and
names the ranks that were behind, not the ranks that wrote the event. Event files from before
verdicts had ids count as verdict 1.

A `stall_resolved` event for verdict K (every rank moved on afterwards) marks that symptom
`resolved` with how long the stall lasted. Why it matters to the diagnosis: a run that paused
for a slow checkpoint save, trained on for hours and then hung must name the hang as the
problem, not the pause. The rules (rules/comm_stall.yaml) therefore give a resolved stall its own
rule, `stall-resolved`: a warning (all ranks lost that time, and with --on-stall abort the same
pause would have ended the run, so the user should know), below the error of a hang, and
with no `explains`, so it is never put forward as the root cause of a later failure (a
collective timeout, an OOM). The symptom of a live run is first reported as a stall (at that
moment nobody knows it will resolve) and re-read as resolved when the event comes: findings
are re-matched against their symptom's facts at the end of the run.
"""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Evidence, Symptom
from .base import Detector, symptom_from

MAX_TRACKED = 1000      # verdicts remembered for their resolution (one per stall timeout at most)


def _stall_id(d: dict) -> int:
    try:
        return int(d.get("id") or 1)
    except (TypeError, ValueError):
        return 1


class StallDetector(Detector):
    kinds = ("stall", "stall_resolved")

    def __init__(self) -> None:
        self._first: dict[int, Symptom] = {}        # verdict id -> its first symptom (the one kept)
        self._resolved: dict[int, dict] = {}         # verdict id -> resolution facts

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        sid = _stall_id(d)
        if ev.kind == "stall_resolved":
            facts = {"resolved": True, "stalled_s": d.get("stalled_s"), "resumed_step": ev.step}
            if sid not in self._resolved and len(self._resolved) < MAX_TRACKED:
                self._resolved[sid] = facts
            s = self._first.get(sid)
            if s is not None and not s.facts.get("resolved"):
                s.facts.update(facts)
                s.evidence.append(Evidence(ev.source, ev.line,
                                           f"stall {sid} resolved: every rank had moved on about "
                                           f"{d.get('stalled_s')} s after it began (seen at step {ev.step})"))
            return ()
        behind = [int(r) for r in (d.get("ranks") or []) if str(r).lstrip("-").isdigit()]
        stopped = d.get("heartbeat_stopped") or []
        s = symptom_from(ev, seq, "stall", key=(sid,), stall_id=sid, last_step=d.get("last_step"),
                         last_phase=d.get("last_phase"), waited_s=d.get("waited_s"),
                         timeout_s=d.get("timeout_s"), stacks=d.get("stacks"),
                         heartbeat_stopped=bool(stopped), all_ranks_same_place=bool(d.get("all_ranks_same_place")),
                         on_stall=d.get("on_stall"), abort_after_s=d.get("abort_after_s"),
                         signalled=d.get("signalled") or [], world_size_seen=d.get("world_size"),
                         resolved=False, stalled_s=None, resumed_step=None)
        s.facts.update(self._resolved.get(sid, {}))
        if behind:
            s.ranks = set(behind)
        s.steps = [int(d["last_step"])] if d.get("last_step") is not None else []
        others = d.get("others") or {}
        waiting = "; ".join(f"rank {r} at step {v[0]} in {v[1]}" for r, v in list(others.items())[:4]
                            if isinstance(v, (list, tuple)) and len(v) == 2)
        s.evidence.append(Evidence(ev.source, ev.line,
                                   f"no progress for {d.get('waited_s')} s on rank(s) {behind}: last step "
                                   f"{d.get('last_step')}, phase {d.get('last_phase')}"
                                   + (f" (waiting: {waiting})" if waiting else "")))
        if sid not in self._first and len(self._first) < MAX_TRACKED:
            self._first[sid] = s
        return (s,)
