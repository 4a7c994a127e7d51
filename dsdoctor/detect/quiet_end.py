"""Endings that leave no error of the log's own: the log just stops.

A hung run prints nothing at the moment it hangs, so its log ends like a log that was cut: no
exception, no exit code, no normal end. A rank whose peer died may only warn. These still tell
a failed run from a cut copy, and each becomes a symptom here (only when the run left no failure
of its own: detect/failure.py calls `quiet_end` at the end when it found nothing):

  hang_said          the person who pasted the log says it hangs / is stuck / nothing happens
                     (sources/formats/paste.py: hang_prose); where the log stops (start-up phase,
                     last step, a JIT op it waits for, a store barrier) says what to look at
  store_barrier_wait torch's store-based barrier reported fewer ranks than the world size and no
                     step came after it: the missing ranks never reached init_process_group
                     (torch/distributed/distributed_c10d.py: _store_based_barrier)
  op_lock_wait       the last start-up line is torch's 'Using DIR as PyTorch extensions root...'
                     with no 'Loading extension module' and no step after it: every rank waits for
                     the lock file of a JIT build (torch/utils/cpp_extension.py: _jit_compile waits
                     on FileBaton while another process builds, forever when a killed build left
                     its `lock` behind)
  rendezvous_connect_wait
                     the last word after the last progress or start-up mark is the c10d client's
                     warning that it failed to connect to the rendezvous store and tries again
                     (torch/csrc/distributed/c10d/socket.cpp), and no step came after: the log stops
                     while this rank still cannot reach MASTER_ADDR:MASTER_PORT
  nccl_init_wait     the last words are NCCL's communicator set-up (NCCL_DEBUG=INFO: 'Init START', the
                     channels it connects 'via P2P/IPC', 'via SHM', 'via NET/...') of a process that
                     printed no 'Init COMPLETE' after them, and no step came after: the ranks hang while
                     connecting (the transport of the last channel says which path to suspect)
  peer_lost          the last word after the last progress is NCCL's warning that a peer closed the
                     connection ('Net : Connection closed by remote peer', 'Call to recv ... failed :
                     Connection reset by peer'; nccl src/misc/socket.cc) and the run printed no
                     normal end: this rank lost a peer that died first (a rank of another node,
                     whose own log has the cause). After a normal end the same warning is teardown.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..events import Event
from ..findings import Evidence, Symptom
from .base import symptom_at_end

Seen = tuple[int, Event]          # (seq, event): where in the input a wait was last said


@dataclass(frozen=True)
class Waits:
    """What the log last said it waited on (each the last such line, or None); detect/failure.py
    collects them while it reads and hands them over at the end."""
    said: Seen | None = None                  # the person's own word that it hangs (sources/formats/paste.py)
    op_lock: Seen | None = None               # a JIT op build's lock (torch cpp_extension 'Using DIR as ...')
    store: Seen | None = None                 # torch's store-based barrier short of the world size
    connect: Seen | None = None               # the c10d client's connect-and-retry warning
    nccl_connecting: tuple[Seen, Seen] | None = None   # the first and last NCCL set-up line of one process
    peer_lost: Seen | None = None             # NCCL's warning that a peer closed the connection


def quiet_end(waits: Waits, *, last_seq: int, last_step: int | None, phase: str | None, phase_text: str | None,
              last_event: Event | None, normal_end: bool) -> Symptom | None:
    """The symptom of a hang the log cannot show, or None. `last_seq` is the seq of the last
    training progress or start-up mark: a wait before it ended."""
    said, peer_lost = waits.said, waits.peer_lost
    op = waits.op_lock if waits.op_lock is not None and waits.op_lock[0] > last_seq else None
    store = waits.store if waits.store is not None and waits.store[0] > last_seq else None
    if store is not None:
        d = store[1].data
        if not (isinstance(d.get("joined"), int) and isinstance(d.get("world_size"), int)
                and d["joined"] < d["world_size"]):
            store = None
    connect = waits.connect if waits.connect is not None and waits.connect[0] > last_seq and not normal_end else None
    nccl = waits.nccl_connecting if waits.nccl_connecting is not None and waits.nccl_connecting[1][0] > last_seq \
        and not normal_end else None
    where = op or store or connect or (nccl[1] if nccl else None)
    if said is None:
        if store is not None:
            return _symptom("store_barrier_wait", store, None, last_step, phase, phase_text,
                            joined=store[1].data["joined"], world_size=store[1].data["world_size"])
        if op is not None and last_step is None:
            return _symptom("op_lock_wait", op, None, last_step, phase, phase_text,
                            root=op[1].data.get("root"))
        if connect is not None:
            d = connect[1].data
            return _symptom("rendezvous_connect_wait", connect, None, last_step, phase, phase_text,
                            peer=d.get("peer"), errno=d.get("errno"), reason=d.get("reason"))
        if nccl is not None:
            first, last = nccl
            via = last[1].data.get("via")
            return _symptom("nccl_init_wait", first, last if last is not first else None, last_step, phase, phase_text,
                            via=via, proc=last[1].data.get("proc"))
        if peer_lost is not None and peer_lost[0] > last_seq and not normal_end:
            d = peer_lost[1].data
            return _symptom("peer_lost", peer_lost, None, last_step, phase, phase_text, peer=d.get("peer"),
                            warn=d.get("msg"), host=d.get("host"))
        return None
    s = _symptom("hang_said", said, where or ((last_seq, last_event) if last_event is not None else None),
                 last_step, phase, phase_text, said=said[1].data.get("phrase"), normal_end=normal_end,
                 op_wait=op is not None, root=op[1].data.get("root") if op else None,
                 joined=store[1].data["joined"] if store else None,
                 world_size=store[1].data["world_size"] if store else None,
                 stops_at=(where[1].text if where else last_event.text if last_event is not None else None))
    return s


def _symptom(name: str, first: tuple[int, Event], then: tuple[int, Event] | None, last_step: int | None,
             phase: str | None, phase_text: str | None, **facts) -> Symptom:
    ev = first[1]
    shown = [e for e in (ev, then[1] if then is not None else None) if e is not None and e.text]
    return symptom_at_end(first, name, [e.rank for e in shown if e.rank is not None],
                          [Evidence(e.source, e.line, e.text) for e in shown], last_step,
                          last_step=last_step, phase=phase, phase_text=phase_text,
                          at=f"{ev.source}:{ev.line}" if ev.line else ev.source, **facts)
