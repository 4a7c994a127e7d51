"""Stalls seen by the live watchdog (sources/live/watchdog.py): `stall` events -> `stall`.

Every rank records the same verdict (rank 0 decides it, the others read it from the store
when they dump their stacks), so the symptom is keyed once per run and names the ranks that
were behind, not the ranks that wrote the event.
"""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Evidence, Symptom
from . import Detector, register, symptom_from


@register
class StallDetector(Detector):
    kinds = ("stall",)

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        behind = [int(r) for r in (d.get("ranks") or []) if str(r).lstrip("-").isdigit()]
        stopped = d.get("heartbeat_stopped") or []
        s = symptom_from(ev, seq, "stall", key=(), last_step=d.get("last_step"),
                         last_phase=d.get("last_phase"), waited_s=d.get("waited_s"),
                         timeout_s=d.get("timeout_s"), stacks=d.get("stacks"),
                         heartbeat_stopped=bool(stopped), all_ranks_same_place=bool(d.get("all_ranks_same_place")),
                         on_stall=d.get("on_stall"), world_size_seen=d.get("world_size"))
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
        return (s,)
