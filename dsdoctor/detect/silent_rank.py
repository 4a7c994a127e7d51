"""The rank a SIGKILL took, from a run folder: the one whose own events stopped first, silently.

A SIGKILL leaves no traceback and runs no atexit: the killed rank's events-rank<N>.jsonl just
ends. Its peers go on until their next collective fails (gloo's 'Connection closed by peer',
NCCL's watchdog) and write that exception. The launcher's report often names no rank: the
DeepSpeed launcher's 'exits with return code = -9' prints the command of the LAST rank it spawned,
whichever died (deepspeed/launcher/launch.py sigkill_handler, 0.19), so a log alone cannot say
(sources/formats/launcher.py). The watched run can: when exactly one attached rank has no
exception and its last step came before every other rank's exception, that rank is the one killed.

Only the SIGKILL findings with no rank (host_oom, or a kill from outside) are given one (`annotate`), with the rank's last
event as evidence. Memory: one small record per rank (at most MAX_RANKS).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ..events import Event
from ..findings import Evidence, Finding, Symptom
from .base import Detector
from .step_windows import EVENT_FILES

MAX_RANKS = 4096


class _Seen:
    __slots__ = ("label", "last_time", "last_step", "where", "raised_at")

    def __init__(self) -> None:
        self.label: str | None = None
        self.last_time: float | None = None
        self.last_step: int | None = None
        self.where: tuple[str, int | None] = ("", None)
        self.raised_at: float | None = None


class SilentRankDetector(Detector):
    kinds = ("attach", "step", "exception")

    def __init__(self) -> None:
        self.ranks: dict[int, _Seen] = {}

    def feed_step(self, evs: list[Event], seq: int) -> Sequence[tuple[int, Symptom]]:
        return ()        # a live Watch's own steps, which feed() passes over too (not from an events file)

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if ev.rank is None or ev.time is None or not ev.source.endswith(EVENT_FILES):
            return ()
        r = self.ranks.get(ev.rank)
        if r is None:
            if ev.kind != "attach" or len(self.ranks) >= MAX_RANKS:
                return ()
            r = self.ranks[ev.rank] = _Seen()
        if ev.kind == "attach":
            r.label = ev.data.get("label")
        elif ev.kind == "step":
            r.last_time, r.last_step, r.where = ev.time, ev.step, (ev.source, ev.line)
        elif r.raised_at is None:
            r.raised_at = ev.time
        return ()

    def killed_rank(self) -> int | None:
        """The one attached rank that went silent before every other rank raised, or None."""
        if len(self.ranks) < 2:
            return None
        silent = [k for k, r in self.ranks.items() if r.raised_at is None and r.last_time is not None]
        if len(silent) != 1:
            return None
        gone = self.ranks[silent[0]].last_time
        others = [r.raised_at for k, r in self.ranks.items() if k != silent[0]]
        if any(t is None or t <= gone for t in others):
            return None
        return silent[0]

    def annotate(self, findings: list[Finding]) -> None:
        # (and a SIGKILL from outside: the kernel's OOM-kill counters did not move, detect/failure.py)
        targets = [f for f in findings if not f.ranks and (
            (f.category == "host_oom" and f.rule.startswith("host-oom-killed")) or
            f.rule == "killed-from-outside")]
        if not targets:
            return
        rank = self.killed_rank()
        if rank is None:
            return
        r = self.ranks[rank]
        for f in targets:
            f.ranks = [rank]
            if r.label:
                f.hosts[rank] = r.label
            f.summary += (f" Rank {rank}'s own events stop at step {r.last_step} with no exception, before every"
                          f" other rank's error: it is the process that was killed.")
            f.evidence.append(Evidence(r.where[0], r.where[1],
                                       f"rank {rank}: last step {r.last_step}, then nothing (no exception, no exit)"))
