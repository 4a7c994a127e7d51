"""One rank's own timers show that it waits for a later rank: the straggler seen from rank 0.

DeepSpeed 0.19 prints rank 0's wall_clock_breakdown only (utils/timer.py `log`: ranks=[0]), so
a slower rank never prints its own times. Rank 0 still shows the wait: in ZeRO stage 1/2 the
gradient all-reduce (`bwd_allreduce_microstep`, engine.py) is the step's first collective, and
whoever gets there first waits in it for the last rank; the parameter all-gather
(`optimizer_allgather`, zero/stage_1_and_2.py) moves as many bytes a moment later, with the ranks
already in step. So an all-reduce many times the all-gather is a wait for a late rank, not slow
links (slow links make both long). Provoked for real on 2 CPU ranks (gen-ae probes): rank 1's
DataLoader 500 ms slower gave rank 0 a 540 ms all-reduce against a 7 ms all-gather and 55 ms of
its own compute; a healthy run 60 ms against 14 ms.
"""
from __future__ import annotations

from collections import deque

from ..events import Event
from ..findings import Symptom
from ..stats import median
from .base import symptom_from

MIN_READINGS = 5         # readings of each timer: one slow first step is warm-up
MIN_OVER_GATHER = 5.0    # the all-reduce at least this many times the all-gather (ZeRO-1: an all-reduce
                         # moves twice the all-gather's bytes; healthy runs here 1.2-11x) ...
MIN_WAIT_MS = 50.0       # ... the wait (all-reduce - all-gather) at least this long ...
MIN_WAIT_SHARE = 1.0     # ... and at least the rank's own forward + backward compute (the late rank about
                         # twice as slow): healthy runs here 0.04-0.47 on a busy machine, slow ranks 1.85-5.1


def other_rank(rank: int | None, world_size: int | None) -> int | None:
    """The rank a waiting rank waits for, when the log says there are two."""
    return 1 - rank if world_size == 2 and rank in (0, 1) else None


def late_rank_wait(rank_phase: dict[int, dict[str, deque]],
                   phase_event: dict[tuple[int, str], Event], first_seq: dict[int, int],
                   world_size: int | None = None) -> Symptom | None:
    """The `late_rank_wait` symptom when the only rank whose timers the log holds waits in the
    gradient all-reduce far longer than the all-gather after it and than its own compute."""
    if len(rank_phase) != 1:
        return None         # several ranks' timers: the cross-rank comparison names the slow one
    (rank, ph), = rank_phase.items()
    ar, ag = ph.get("allreduce") or (), ph.get("allgather") or ()
    fwd, bwd = ph.get("forward") or (), ph.get("backward_compute") or ()
    if min(len(ar), len(ag), len(fwd), len(bwd)) < MIN_READINGS:
        return None
    m_ar, m_ag = median(ar), median(ag)
    compute = median(fwd) + median(bwd)
    wait = m_ar - m_ag
    if m_ar < MIN_OVER_GATHER * max(m_ag, 0.01) or wait < max(MIN_WAIT_MS, MIN_WAIT_SHARE * compute):
        return None
    ev = phase_event.get((rank, "allreduce"))
    if ev is None:
        return None
    s = symptom_from(ev, first_seq.get(rank, 0), "late_rank_wait", key=(rank,), rank=rank,
                     allreduce_ms=round(m_ar, 1), allgather_ms=round(m_ag, 1), compute_ms=round(compute, 1),
                     wait_ms=round(wait, 1), readings=len(ar), slow_rank=other_rank(rank, world_size))
    # the finding is about the rank waited for: named when there are two ranks, else unknown
    s.ranks = {s.facts["slow_rank"]} if s.facts["slow_rank"] is not None else set()
    gather_ev = phase_event.get((rank, "allgather"))
    if gather_ev is not None:
        s.add_evidence(gather_ev)
    return s
