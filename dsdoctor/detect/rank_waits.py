"""Where each rank waited when a hang ended: the ranks' own tracebacks (a collective timeout, a lost
peer, a KeyboardInterrupt), one per rank, read side by side.

Ranks that all wait in the same collective wait for a rank that is not there (it died, or is slow).
Ranks that wait in *different* collectives (rank 0 in the barrier of `engine.save_checkpoint`, rank 1
in the all_reduce of the next backward pass) disagree about what comes next: the code took a
rank-dependent path (`if rank == 0:` around saving, evaluation, generation, logging that calls a
collective; one rank with more batches). Seen for real on 2-rank gloo DeepSpeed runs (gen-s probes):
the gloo timeout's and the lost peer's tracebacks hold exactly this. A rank that waits for its own
DataLoader (a worker stuck in a read) while the others wait in a collective is the one they wait for.
"""
from __future__ import annotations

from ..events import Event
from ..findings import Evidence, Symptom
from .base import symptom_at_end

_PLUMBING = ("torch/distributed/", "deepspeed/comm/", "c10d_logger", "deepspeed/utils/nvtx")


def _wait(ev: Event) -> tuple[str, str | None, str | None] | None:
    """(collective, phase, caller) of one rank's waiting traceback, or None."""
    d = ev.data
    if d.get("waits_in") not in ("collective", "dataloader") or not d.get("wait_frame"):
        return None
    # a rank waiting for its own DataLoader (a worker stuck reading) while the others wait for it
    op = "DataLoader" if d["waits_in"] == "dataloader" else str(d["wait_frame"]).rsplit(":", 1)[-1]
    caller = None if op == "DataLoader" else \
        next((f for f in reversed(d.get("frames") or []) if not any(p in f for p in _PLUMBING)), None)
    return op, d.get("phase"), caller


def _short(frame: str | None) -> str | None:
    if not frame:
        return None
    path, _, func = frame.rpartition(":")
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-3:]) + ":" + func if "site-packages" in path or "dist-packages" in path \
        else parts[-1] + ":" + func


def ranks_wait_apart(per_rank: dict[int, tuple[int, Event]], last_step: int | None) -> Symptom | None:
    """The symptom when at least two ranks' tracebacks wait in different collectives (op or phase), else
    None. `per_rank`: rank -> (seq, its first exception event that waits in a collective or its DataLoader)."""
    waits = {r: (seq, ev, w) for r, (seq, ev) in per_rank.items() if (w := _wait(ev)) is not None}
    if len(waits) < 2 or len({(w[0], w[1]) for _, _, w in waits.values()}) < 2:
        return None
    ranks = sorted(waits)[:8]
    described = []
    for r in ranks:
        _, _, (op, phase, caller) = waits[r]
        where = _short(caller)
        described.append(f"rank {r} in {op}" + (f" called from {where}" if where else "")
                         + (f" ({phase})" if phase else ""))
    seq = min(s for s, _, _ in waits.values())
    first = min(waits.values(), key=lambda x: x[0])[1]
    evidence = [Evidence(ev.source, ev.line, ev.text or f"{ev.data.get('type')}: {ev.data.get('message')}")
                for _, ev, _ in (waits[r] for r in ranks[:4])]
    return symptom_at_end((seq, first), "ranks_wait_apart", ranks, evidence, last_step,
                          waits="; ".join(described), ops=sorted({w[0] for _, _, w in waits.values()}),
                          data_wait_ranks=[r for r in ranks if waits[r][2][0] == "DataLoader"],
                          data_wait_text=", ".join(str(r) for r in ranks if waits[r][2][0] == "DataLoader"),
                          last_step=last_step)


def ranks_away(waiting: dict[int, tuple[int, Event]], interrupted: dict[int, Event]) -> list[int]:
    """The interrupted ranks (a KeyboardInterrupt when a hung run was stopped) whose stack waited in no
    collective and no DataLoader while another rank's waited in a collective: the rank the others waited
    for, stuck in its own code (a sleep, a lock, a blocking read, a loop that never ends). Seen for real
    (gen-av probes): rank 1 asleep in the script, rank 0 in the step's all_reduce, torchrun Ctrl-C'd."""
    if not any(ev.data.get("waits_in") == "collective" for _, ev in waiting.values()):
        return []
    return sorted(r for r in interrupted if r not in waiting)
