"""TensorBoard: the events as scalars, findings as text, under DIR/tb/rank<N>.

A listener on the session: it sees every event after it is written. Without the
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
             "data_ms": "time_ms/data"},
    "memory": {"rss": "memory/rss_bytes", "available": "memory/available_bytes",
               "gpu_allocated": "memory/gpu_allocated_bytes", "gpu_reserved": "memory/gpu_reserved_bytes",
               "gpu_peak": "memory/gpu_peak_bytes"},
}
TEXT_KINDS = ("exception", "oom", "stall", "nonfinite_module", "doctor_error")


class TensorBoard:
    def __init__(self, session: Any):
        self.session = session
        self.writer: Any = None
        self._findings_seen = 0

    def start(self) -> None:
        from torch.utils.tensorboard import SummaryWriter   # ImportError without tensorboard: part off
        self.writer = SummaryWriter(log_dir=str(self.session.out_dir / "tb" / f"rank{self.session.rank}"),
                                    flush_secs=5)
        self.session.add_listener(self.on_event)

    def on_event(self, ev: Event) -> None:
        if self.writer is None or not self.session.enabled("tensorboard"):
            return
        with self.session.guard("tensorboard"):
            self._write(ev)

    def _write(self, ev: Event) -> None:
        step = ev.step if ev.step is not None else self.session.progress.step
        for key, tag in SCALARS.get(ev.kind, {}).items():
            v = ev.data.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(tag, float(v), step)
        if ev.kind in TEXT_KINDS:
            self.writer.add_text(f"events/{ev.kind}", _md(ev.data), step)
        new = self.session.findings[self._findings_seen:]
        for f in new:
            self.writer.add_text("findings", f"**{f.severity}** {f.title}\n\n{f.summary}", step)
        self._findings_seen += len(new)

    def stop(self) -> None:
        if self.writer is not None:
            w, self.writer = self.writer, None
            w.close()


def _md(d: dict[str, Any]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in d.items())
