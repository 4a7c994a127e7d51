"""TensorBoard: the events as scalars, findings as text, under DIR/tb/rank<N>.

A listener on the session: it sees every event after it is written, on the session's writer
thread for per-step events (never on the training thread). Per-step scalars (loss, grad
norm, phase times) are averaged over EVERY steps and written once per window: one
add_scalar per tag per EVERY steps instead of one per step, which was most of the doctor's
CPU cost. A non-finite value is written at its own step at once (a NaN is not averaged
away). Rare scalars (loss scale, skipped steps, memory) are written as they come. Without the
`tensorboard` package (or if writing fails) the part is switched off and training goes on.
"""
from __future__ import annotations

from typing import Any

from ...events import Event

# event kind -> {data key: scalar tag}
SCALARS = {
    "loss": {"value": "loss"},
    "grad_norm": {"value": "grad_norm"},
    "loss_scale": {"value": "fp16/loss_scale"},
    "skipped": {"skipped": "fp16/skipped_steps"},
    "step": {"fwd_ms": "time_ms/forward", "bwd_ms": "time_ms/backward", "step_ms": "time_ms/step",
             "data_ms": "time_ms/data", "batch_ms": "time_ms/train_batch"},
    "memory": {"rss": "memory/rss_bytes", "available": "memory/available_bytes",
               "gpu_allocated": "memory/gpu_allocated_bytes", "gpu_reserved": "memory/gpu_reserved_bytes",
               "gpu_peak": "memory/gpu_peak_bytes"},
}
TEXT_KINDS = ("exception", "oom", "stall", "nonfinite_module", "doctor_error")
AVERAGED = ("loss", "grad_norm", "step", "memory")     # per-step kinds: mean over a window
EVERY = 10          # a window is at least EVERY steps ...
PERIOD = 1.0        # ... and at least PERIOD seconds: each add_scalar costs ~50-80 us (a lock
                    # shared with TensorBoard's own writer thread), so at most ~6 per second


class TensorBoard:
    def __init__(self, session: Any):
        self.session = session
        self.writer: Any = None
        self._findings_seen = 0
        self._acc: dict[str, list[float]] = {}     # tag -> [sum, count] of the current window
        self._window_start: int | None = None
        self._window_time = 0.0

    def start(self) -> None:
        from torch.utils.tensorboard import SummaryWriter   # ImportError without tensorboard: part off
        self.writer = SummaryWriter(log_dir=str(self.session.out_dir / "tb" / f"rank{self.session.rank}"),
                                    flush_secs=5)
        self.session.add_listener(self.on_event)

    def on_event(self, ev: Event) -> None:
        if self.writer is None or not self.session.enabled("tensorboard"):
            return
        if ev.kind in SCALARS or ev.kind in TEXT_KINDS or len(self.session.findings) > self._findings_seen:
            with self.session.guard("tensorboard"):
                self._write(ev)

    def _write(self, ev: Event) -> None:
        step = ev.step if ev.step is not None else self.session.progress.step
        averaged = ev.kind in AVERAGED
        if averaged and step is not None:
            if self._window_start is None:
                self._window_start, self._window_time = step, ev.time or 0.0
            elif step - self._window_start >= EVERY and (ev.time or 0.0) - self._window_time >= PERIOD:
                self._write_means(step - 1)
                self._window_start, self._window_time = step, ev.time or 0.0
        for key, tag in SCALARS.get(ev.kind, {}).items():
            v = ev.data.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            v = float(v)
            if averaged and v == v and abs(v) != float("inf"):
                acc = self._acc.setdefault(tag, [0.0, 0])
                acc[0] += v
                acc[1] += 1
            else:
                self.writer.add_scalar(tag, v, step)
        if ev.kind in TEXT_KINDS:
            self.writer.add_text(f"events/{ev.kind}", _md(ev.data), step)
        if len(self.session.findings) > self._findings_seen:
            new = self.session.findings[self._findings_seen:]
            for f in new:
                self.writer.add_text("findings", f"**{f.severity}** {f.title}\n\n{f.summary}", step)
            self._findings_seen += len(new)

    def _write_means(self, step: int) -> None:
        for tag, (total, n) in self._acc.items():
            if n:
                self.writer.add_scalar(tag, total / n, step)
        self._acc.clear()

    def stop(self) -> None:
        if self.writer is not None:
            with self.session.guard("tensorboard"):
                self._write_means(self.session.progress.step)
            w, self.writer = self.writer, None
            w.close()


def _md(d: dict[str, Any]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in d.items())
