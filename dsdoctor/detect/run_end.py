"""Where a log ends: a run whose progress stops short of its total with no error and no normal
end was stopped from outside (SIGKILL, a lost node, a pod evicted) or the log is a partial copy.

Only when the text is clearly mid-progress: the last progress point knows its total (a tqdm bar's
'n/total', Megatron's 'iteration n/train_iters') and is well short of it, and nothing after it
says the loop finished (HF Trainer's train_runtime summary, Lightning's '`Trainer.fit` stopped',
Megatron's 'after training is done'). Any sign of a failure (an exception, a kill, an exit, an OOM,
a communication error) leaves the ending to the failure rules.
"""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from

DONE_FRACTION = 0.98      # a bar sampled every total/200 steps may miss its last frames
_FAILURE_KINDS = ("exception", "killed", "process_exit", "exit", "oom", "cuda_error", "collective_timeout",
                  "nccl_error", "gloo_error", "comm_abort", "stall", "shm_error", "node_exit")


def progress_total(ev: Event) -> int | None:
    """The total a progress event counts toward (Megatron's train_iters, a bar's 'n/total' kept in its series)."""
    total = ev.data.get("total")
    series = ev.data.get("series")
    if total is None and isinstance(series, str) and "|" in series:
        total = series.rsplit("|", 1)[1]
    try:
        return int(total) if total is not None else None
    except ValueError:
        return None


def loop_finished(ev: Event) -> bool:
    """A throughput event that says the training loop ended: a summary (HF's train_runtime) or a
    progress point at its total."""
    if ev.data.get("summary"):
        return True
    total = progress_total(ev) if ev.step is not None else None
    return bool(total) and ev.step >= DONE_FRACTION * total


class RunEndDetector(Detector):
    kinds = ("throughput", "run_end") + _FAILURE_KINDS

    def __init__(self) -> None:
        self.failed = False
        self.last: dict[str, tuple[int, int, Event, int]] = {}   # per input: (n, total, event, seq)
        self.ended: set[str] = set()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if ev.kind in _FAILURE_KINDS:
            self.failed = True
        elif ev.kind == "run_end" or ev.data.get("summary"):
            self.ended.add(ev.source)
        else:
            total = progress_total(ev)
            if total and ev.step is not None and len(self.last) < 4096:
                self.last[ev.source] = (ev.step, total, ev, seq)
                self.ended.discard(ev.source)      # progress after an end: another run in the same log
        return ()

    def finish(self) -> Iterable[Symptom]:
        if self.failed:
            return ()
        for src, (n, total, ev, seq) in self.last.items():
            if src in self.ended or n >= DONE_FRACTION * total:
                continue
            series = ev.data.get("series")
            desc = series.rsplit("|", 1)[0].strip() if isinstance(series, str) else ""
            s = symptom_from(ev, seq, "log_ends_mid_run", at=n, total=total, pct=round(100.0 * n / total, 1),
                             what="progress bar" if series is not None else "iteration counter", bar=desc or None)
            s.seq = 10 ** 9
            return [s]
        return ()
