"""One rank's live session: where its events go and how doctor failures are contained.

Every observation becomes an `events.Event` that is (1) appended to
DIR/events-rank<N>.jsonl, so a SIGKILL still leaves the evidence, (2) fed to this rank's
Diagnoser, so findings appear while the run goes on (rank 0 prints each one once), and
(3) shown in TensorBoard. Doctor code runs inside `guard(part)`: an exception there is
recorded as a `doctor_error` event and switches that part off; it never reaches training.
"""
from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ...events import Event, _finite_or_str

STEP_FLUSH_SECONDS = 1.0       # step events are buffered at most this long
PHASE_WINDOW = 64              # recent steps kept for per-phase statistics


def default_out() -> Path:
    return Path(f"dsdoctor-{time.strftime('%Y%m%d-%H%M%S')}")


def _env_bool(v: str | None) -> bool | None:
    if v is None or v == "":
        return None
    return v.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class LiveOptions:
    out: Path = field(default_factory=default_out)   # run folder
    stall_timeout: float | None = None     # None = auto: max(60 s, 10 x median step time)
    on_stall: str = "report"               # "report" | "abort"
    localize_nan: bool = False
    exchange_every: int = 10               # K: steps between cross-rank publications
    telemetry_interval: float = 10.0
    tensorboard: bool = True
    check_every: int = 10                  # steps between batched finiteness checks of the loss

    @classmethod
    def from_env(cls, **overrides: Any) -> "LiveOptions":
        """Options from DSDOCTOR_* variables (what `dsdoctor run` passes to every rank);
        keyword arguments that are not None win."""
        env = os.environ
        o = cls()
        if env.get("DSDOCTOR_OUT"):
            o.out = Path(env["DSDOCTOR_OUT"])
        if env.get("DSDOCTOR_STALL_TIMEOUT"):
            o.stall_timeout = float(env["DSDOCTOR_STALL_TIMEOUT"])
        if env.get("DSDOCTOR_ON_STALL"):
            o.on_stall = env["DSDOCTOR_ON_STALL"].strip().lower()
        if _env_bool(env.get("DSDOCTOR_LOCALIZE_NAN")) is not None:
            o.localize_nan = bool(_env_bool(env.get("DSDOCTOR_LOCALIZE_NAN")))
        if env.get("DSDOCTOR_EXCHANGE_EVERY"):
            o.exchange_every = max(1, int(env["DSDOCTOR_EXCHANGE_EVERY"]))
        if env.get("DSDOCTOR_TELEMETRY_INTERVAL"):
            o.telemetry_interval = float(env["DSDOCTOR_TELEMETRY_INTERVAL"])
        if _env_bool(env.get("DSDOCTOR_TENSORBOARD")) is not None:
            o.tensorboard = bool(_env_bool(env.get("DSDOCTOR_TENSORBOARD")))
        if env.get("DSDOCTOR_CHECK_EVERY"):
            o.check_every = max(1, int(env["DSDOCTOR_CHECK_EVERY"]))
        for k, v in overrides.items():
            if v is not None:
                if k == "out":
                    v = Path(v)
                setattr(o, k, v)
        if o.on_stall not in ("report", "abort"):
            o.on_stall = "report"
        return o


class Progress:
    """Where the training thread is, written by the hooks and read by watchdog/exchange
    threads (plain attribute writes: atomic enough under the GIL, no lock on the hot path)."""

    def __init__(self) -> None:
        self.step = 0                  # global optimizer step (engine.global_steps)
        self.micro_step = 0
        self.phase = "idle"            # 'forward'|'backward'|'step'|'data'|'idle'
        self.phase_started = time.monotonic()
        self.last_step_end: float | None = None
        self.window: collections.deque[dict[str, float]] = collections.deque(maxlen=PHASE_WINDOW)

    def set_phase(self, phase: str) -> float:
        now = time.monotonic()
        self.phase, self.phase_started = phase, now
        return now

    def median_step_ms(self) -> float | None:
        if not self.window:
            return None
        tot = sorted(sum(v for k, v in w.items() if k.endswith("_ms")) for w in self.window)
        return tot[len(tot) // 2]


def _dist_info() -> tuple[int, int, int]:
    """rank, world size, local rank: from torch.distributed if it is up, else the launcher env."""
    env = os.environ
    rank, ws = int(env.get("RANK", "0") or 0), int(env.get("WORLD_SIZE", "1") or 1)
    local = int(env.get("LOCAL_RANK", "0") or 0)
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            rank, ws = dist.get_rank(), dist.get_world_size()
    except Exception:
        pass
    return rank, ws, local


def _default_store() -> Any:
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_initialized():
            from torch.distributed import distributed_c10d
            return distributed_c10d._get_default_store()
    except Exception:
        return None
    return None


class LiveSession:
    def __init__(self, options: LiveOptions | None = None, *, rank: int | None = None,
                 world_size: int | None = None, local_rank: int | None = None,
                 store: Any = "auto", quiet: bool = False):
        self.options = options or LiveOptions.from_env()
        r, ws, lr = _dist_info()
        self.rank = r if rank is None else rank
        self.world_size = ws if world_size is None else world_size
        self.local_rank = lr if local_rank is None else local_rank
        self.store = _default_store() if store == "auto" else store
        self.out_dir = Path(self.options.out)
        self.progress = Progress()
        self.findings: list = []           # findings made live on this rank, in order
        self.errors: list[tuple[str, str]] = []
        self.quiet = quiet
        self._disabled: set[str] = set()
        self._parts: list[Any] = []
        self._lock = threading.RLock()
        self._fh = None
        self._pending_steps = 0
        self._last_flush = time.monotonic()
        self._diag = None
        self._closed = False
        self._listeners: list[Any] = []    # callables(ev) fed after each event (tensorboard)
        self._console = None
        with self.guard("events"):
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.out_dir / f"events-rank{self.rank}.jsonl", "a", encoding="utf-8")
        with self.guard("diagnose"):
            from ...pipeline import Diagnoser
            self._diag = Diagnoser()
        # step events are buffered; this thread makes sure they reach the disk within a second
        # even when no other event comes (a stalled rank killed later keeps its last steps)
        self._stop_flusher = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="dsdoctor-flush", daemon=True)
        with self.guard("events"):
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop_flusher.wait(STEP_FLUSH_SECONDS):
            if self._pending_steps:
                self.flush()

    # ------------------------------------------------------------------ containment
    def enabled(self, part: str) -> bool:
        return part not in self._disabled and not self._closed

    def disable(self, part: str) -> None:
        self._disabled.add(part)

    @contextlib.contextmanager
    def guard(self, part: str) -> Iterator[None]:
        """Run doctor code; an exception is recorded and disables `part`, never propagates.
        Callers skip disabled parts with `if session.enabled(part)`."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - containment is the point
            self._record_error(part, e)

    def _record_error(self, part: str, e: BaseException) -> None:
        msg = f"{type(e).__name__}: {e}"[:500]
        self._disabled.add(part)
        self.errors.append((part, msg))
        if part != "events":
            try:
                self.emit("doctor_error", part=part, error=msg)
            except Exception:
                pass
        if not self.quiet and self.rank == 0:
            print(f"dsdoctor: {part} disabled after an internal error: {msg}", file=sys.stderr)

    # ------------------------------------------------------------------ events
    def emit(self, kind: str, step: int | None = None, **data: Any) -> Event:
        """Record one event (thread-safe). Step events are buffered up to a second; every
        other kind is flushed at once."""
        ev = Event(kind=kind, rank=self.rank, step=step, time=time.time(), data=data)
        with self._lock:
            if self._fh is not None and self.enabled("events"):
                with self.guard("events"):
                    line = _to_line(ev)
                    self._fh.write(line)
                    self._pending_steps += 1
                    now = time.monotonic()
                    if kind != "step" or now - self._last_flush >= STEP_FLUSH_SECONDS:
                        self._fh.flush()
                        self._pending_steps, self._last_flush = 0, now
            if self._diag is not None and self.enabled("diagnose"):
                with self.guard("diagnose"):
                    for f in self._diag.feed(ev):
                        self._new_finding(f)
            for fn in list(self._listeners):
                fn(ev)
        return ev

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None and self.enabled("events"):
                with self.guard("events"):
                    self._fh.flush()
                    self._pending_steps, self._last_flush = 0, time.monotonic()

    def add_listener(self, fn: Any) -> None:
        self._listeners.append(fn)

    def _new_finding(self, f: Any) -> None:
        self.findings.append(f)
        if self.rank == 0 and not self.quiet and self.enabled("print"):
            with self.guard("print"):
                from rich.console import Console

                from ...report import render_finding
                if self._console is None:
                    self._console = Console(stderr=True)
                self._console.rule(f"dsdoctor live · rank {self.rank} · step {self.progress.step}")
                render_finding(self._console, f, brief=True)

    def live_findings(self) -> list:
        """Every finding this rank's Diagnoser holds now (including finish()-time ones)."""
        if self._diag is None:
            return list(self.findings)
        with self._lock, self.guard("diagnose"):
            return self._diag.finish()
        return list(self.findings)

    # ------------------------------------------------------------------ parts
    def add_part(self, part: Any) -> None:
        """An object with .start() and .stop(): started now, stopped at close()."""
        name = type(part).__name__.lower()
        with self.guard(name):
            part.start()
            self._parts.append(part)

    def close(self) -> None:
        if self._closed:
            return
        self._stop_flusher.set()
        for part in reversed(self._parts):
            with self.guard(type(part).__name__.lower()):
                part.stop()
        self._parts.clear()
        with self._lock:
            if self._fh is not None:
                with self.guard("events"):
                    self._fh.flush()
                    self._fh.close()
                self._fh = None
            self._closed = True


def _to_line(ev: Event) -> str:
    """JSON line with nan/inf as strings (events.read_events restores them); the event
    itself keeps its float values for the live detectors."""
    out = Event(ev.kind, ev.rank, ev.step, ev.time, _finite_or_str(ev.data))
    return out.to_json() + "\n"
