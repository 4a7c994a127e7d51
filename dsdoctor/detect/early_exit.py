"""A rank that returned 0 while the others still trained: they wait for it in their next collective.

The DeepSpeed launcher says when a rank's process returns 0 ('Process N exits successfully.',
deepspeed/launcher/launch.py) and which rank that pid is ('process N spawned with command: [...
--local_rank=K ...]'). In a run that did not end normally, one rank done while another then failed
by losing its peer (gloo's 'Connection closed by peer', NCCL's remote error) or was stopped is the
classic mismatch: that rank ran out of batches first (uneven shards, no drop_last), or returned early
(an `if rank == ...: return` / `sys.exit(0)`). A rank that raised an error of its own (family weight
>= 2, detect/families.py) is that error's finding, not this one; a run that ended normally (every
rank done, or the trainer's own end) is no mismatch.
"""
from __future__ import annotations

from ..events import Event
from ..findings import Evidence, Symptom
from ..lazy_regex import compile_later
from .base import symptom_at_end


def all_spawned_done(done: list[tuple[int, Event]]) -> bool:
    """Every process the launcher said it started on its host returned 0 ('exits successfully'
    for as many pids as it spawned): a normal end, not a rank that left early."""
    spawned = max((e.data.get("spawned") or 0 for _, e in done), default=0)
    return bool(spawned) and len({e.data.get("pid") for _, e in done}) >= spawned


def rank_left_early(done: list[tuple[int, Event]], failure: Event | None, failure_weight: int,
                    ended: bool, stopped: bool, last_step: int | None) -> Symptom | None:
    """The symptom, or None. `done`: the launcher's 'exits successfully' events (seq, event);
    `failure`: the decisive exception (None when no rank raised), of family weight `failure_weight`;
    `stopped`: another rank exited non-zero or by a signal. A log that only stops after some ranks'
    'exits successfully' is no evidence (a healthy run's excerpt, the other ranks a second later)."""
    if not done or ended or failure_weight >= 2 or (failure is None and not stopped):
        return None
    if all_spawned_done(done):
        return None                  # every rank it started returned 0: a normal end
    pids = {e.data.get("pid") for _, e in done}
    seq, ev = done[0]
    ranks = sorted({e.rank for _, e in done if e.rank is not None})
    evidence = [Evidence(e.source, e.line, e.text or "") for _, e in done[:2]]
    if failure is not None and failure.text:
        evidence.append(Evidence(failure.source, failure.line, failure.text))
    return symptom_at_end((seq, ev), "rank_exited_early", ranks, evidence, last_step,
                          pids=sorted(p for p in pids if p is not None), done_ranks=ranks, last_step=last_step,
                          peer_lost=failure is not None,
                          generate=bool(failure is not None and failure.data.get("in_generate")), via="launcher",
                          failed_rank=None, peer=None, at=f"{ev.source}:{ev.line}" if ev.line else ev.source)


# gloo's 'Connection closed by peer [ADDR]:PORT' (transport/tcp/pair.cc) naming this host's loopback
_LOCAL_PEER_CLOSED = compile_later(r"Connection closed by peer \[(127\.\d+\.\d+\.\d+|::1|localhost)\]")


def local_peer_returned(alone: tuple[int, Event] | None, failure: Event | None,
                        last_step: int | None) -> Symptom | None:
    """torchrun's version of the same mismatch, where no launcher line says a rank returned 0: the rank that
    failed lost a gloo peer on its own host (the loopback address), and torchrun's summary, which lists every
    worker of its host that failed, names that rank alone (<NO_OTHER_FAILURES>): the peer ended without an
    error. Seen for real (part AP): rank 1 ran one more evaluation all_reduce than rank 0, which finished."""
    if alone is None or failure is None:
        return None
    m = _LOCAL_PEER_CLOSED.search(failure.data.get("message") or failure.text or "")
    if m is None:
        return None
    seq, ev = alone
    evidence = [Evidence(failure.source, failure.line, failure.text or ""), Evidence(ev.source, ev.line, ev.text or "")]
    return symptom_at_end((seq, ev), "rank_exited_early", (), evidence, last_step,
                          pids=[], done_ranks=[], last_step=last_step, peer_lost=True, generate=False,
                          via="torchrun", failed_rank=ev.rank if ev.rank is not None else failure.rank,
                          peer=m.group(1), at=f"{ev.source}:{ev.line}" if ev.line else ev.source)
