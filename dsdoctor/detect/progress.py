"""Each input's progress: how often its step went up. One counter for the whole run, fed once per event
by the Diagnoser before its detectors, read by the detectors that ask whether an input went on after
an error: detect/failure.py (an exception, an error-level line, a Windows fault report) and
detect/memory.py (an OOM the script caught and logged). Either is not fatal once its input made
SURVIVED_STEPS new steps after it.
"""
from __future__ import annotations

from ..events import Event

SURVIVED_STEPS = 3          # an error followed by this many new steps in its input did not end the run

# The kinds whose step says how far an input got: its progress lines and the other lines a run prints on
# the way (a phase, a timeout, a warning at step N). Not a failure's own lines (an exception, a kill, an
# exit): their step says where the run stopped, not that it went on.
COUNTED_KINDS = frozenset((
    "step", "loss", "throughput", "timers", "skipped", "grad_norm", "lr",
    "phase_mark", "memory", "error_line", "stall", "node_exit", "collective_timeout", "nccl_error", "run_end",
    "rerun", "clock", "hang_said", "op_load", "store_wait", "nccl_warn", "exception_detail", "connect_retry",
    "nccl_init", "stop_ignored", "rank_done", "cuda_error"))


class InputProgress:
    """Per input (event source): its highest step, how often that went up, the lines of its last few rises."""

    def __init__(self) -> None:
        self.top: dict[str, int] = {}
        self.count: dict[str, int] = {}
        self.lines: dict[str, list] = {}

    def feed(self, ev: Event, seq: int) -> tuple:
        """The Diagnoser's feed for COUNTED_KINDS (nearly every event): no symptom of its own."""
        step = ev.step
        if step is not None:
            src = ev.source
            if step > self.top.get(src, -1):
                self.top[src] = step
                self.count[src] = self.count.get(src, 0) + 1
                lines = self.lines.get(src)
                if lines is None:
                    lines = self.lines[src] = []
                lines.append(ev.line)
                if len(lines) > SURVIVED_STEPS:
                    del lines[0]
        return ()

    def advances(self, src: str | None) -> int:
        """How often `src`'s step went up so far."""
        return self.count.get(src, 0)

    def advances_before(self, src: str, line: int | None) -> int:
        """How many steps `src` had made above `line`: a traceback cut off before its exception
        line is fed at its input's end, but the steps printed after its frames came after it (a
        warning's stack, a caught error's frames whose head was cut: the run went on)."""
        now = self.count.get(src, 0)
        if line is None:
            return now
        return now - sum(1 for ln in self.lines.get(src, ()) if ln is not None and ln > line)

    def went_on(self, src: str | None, at: int) -> bool:
        """Did `src` make SURVIVED_STEPS new steps since it had made `at` (advances() then)?"""
        return self.count.get(src, 0) - at >= SURVIVED_STEPS
