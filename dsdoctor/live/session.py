"""One rank's live session: where its events go and how doctor failures are contained.

Every observation becomes an `events.Event` that is (1) appended to
DIR/events-rank<N>.jsonl, so a SIGKILL still leaves the evidence, (2) fed to this rank's
`api.Watch` (the application layer's live door: the same pipeline as analyze), so findings
appear while the run goes on (rank 0 prints each one once, report.render_live_finding), and
(3) shown in TensorBoard. Doctor code runs inside `guard(part)`: an exception there is
recorded as a `doctor_error` event and switches that part off; it never reaches training.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import Event, EventWriter
from .nodes import node_info
from .say import say

# Per-step events (these kinds) are only queued by the training thread: a deque append, no
# JSON, no file write, no detector, no TensorBoard on the hot path. The writer thread
# drains the queue every STEP_FLUSH_SECONDS (JSON line, flush, api.Watch, TensorBoard).
# Every other kind (exception, oom, overflow, stall, ...) drains the queue first, so the
# order is kept, and is written and flushed at once. A SIGKILL therefore loses at most
# ~STEP_FLUSH_SECONDS of step events and never a non-step event.
STEP_KINDS = frozenset({"step", "loss", "grad_norm", "lr", "memory"})
MAX_QUEUED = 4096
DRAIN_CHUNK = 16               # events handled per GIL hold by the writer thread (~0.2 ms on a
                               # busy core); each hand-off (sleep(0)) costs ~14 us of CPU there.
                               # A step's Prewritten counts as its events
STEP_FLUSH_SECONDS = 0.5       # step events wait at most this long (+ one drain) for the disk
                               # and the detectors (before: up to 2 x 0.25 s, made into events
                               # in one round, drained in the next); a wake-up of an idle thread
                               # costs ~40 us of CPU on a busy core, per-event work is the same
PHASE_WINDOW = 64              # recent steps kept for per-phase statistics


def default_out() -> Path:
    return Path(f"dsdoctor-{time.strftime('%Y%m%d-%H%M%S')}")


def _env_bool(v: str | None) -> bool | None:
    if v is None or v == "":
        return None
    return v.strip().lower() in ("1", "true", "yes", "on")


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    """A bad DSDOCTOR_* value: said once per process, by rank 0 only (64 ranks, one line)."""
    if msg in _warned or os.environ.get("RANK", "0") not in ("", "0"):
        return
    _warned.add(msg)
    say(f"dsdoctor: warning: {msg}")


@dataclass
class LiveOptions:
    out: Path = field(default_factory=default_out)   # run folder
    stall_timeout: float | None = None     # None = auto: max(60 s, 10 x median step time)
    on_stall: str = "report"               # "report" | "abort"
    stall_abort_after: float | None = None  # with abort: end the run after this long (None = the stall timeout)
    localize_nan: bool = False
    exchange_every: int = 10               # K: steps between cross-rank publications
    telemetry_interval: float = 10.0
    tensorboard: bool = True
    check_every: int = 10                  # steps between batched finiteness checks of the loss

    @classmethod
    def from_env(cls, **overrides: Any) -> "LiveOptions":
        """Options from DSDOCTOR_* variables (what `dsdoctor run` passes to every rank);
        keyword arguments that are not None win."""
        from .options import from_environment
        env = os.environ
        o = cls()
        if env.get("DSDOCTOR_OUT"):
            o.out = Path(env["DSDOCTOR_OUT"])
        # a value out of range keeps the default with one warning: an option typo must not
        # stop (or slow down) the training; `dsdoctor run` refuses it before starting
        for k, v in from_environment(o, env, warn=_warn_once).items():
            setattr(o, k, v)
        from .options import api_value_problem
        for k, v in overrides.items():
            if v is not None:
                if k == "out":
                    v = Path(v)
                elif (why := api_value_problem(k, v)) is not None:
                    _warn_once(f"dsdoctor.attach: {why}; keeping {getattr(o, k)!r}")
                    continue              # never break the training over the doctor's options
                setattr(o, k, v)
        if o.on_stall not in ("report", "abort"):
            o.on_stall = "report"
        return o


class Prewritten:
    """One optimizer step's step-kind events with their JSON lines already made
    (hooks.step_lines: one f-string per step instead of one encoder call per event); queued as
    one item, written with one file write, each event then diagnosed as usual. `usual`: the
    maker vouches that they are the usual step, step / lr / loss / grad_norm events of one
    rank, step and wall time, source "live", no line, no prefix, finite float values, the step's data
    micro_steps and the four phase times of EngineHooks.STEP_KEYS (hooks.expand_pending):
    the Diagnoser and TensorBoard then take them without checking their shape again."""
    __slots__ = ("events", "text", "usual")

    def __init__(self, events: list[Event], text: str, usual: bool = False):
        self.events, self.text, self.usual = events, text, usual


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
        self.node = node_info()
        self.run_dir = Path(self.options.out)
        # over several nodes each node writes to its own DIR/node<K>-<host>/ (live/nodes.py)
        self.out_dir = self.run_dir / self.node.folder if self.node.multi_node(self.world_size) else self.run_dir
        self.progress = Progress()
        self.findings: list = []           # findings made live on this rank, in order
        self.errors: list[tuple[str, str]] = []
        self.quiet = quiet
        self._disabled: set[str] = set()
        self._guards: dict[str, _Guard] = {}
        self._queue: collections.deque[Event | Prewritten] = collections.deque()   # STEP_KINDS not yet written
        self._parts: list[Any] = []
        self._lock = threading.RLock()
        self._fh: EventWriter | None = None
        self._watch = None                 # api.Watch: this rank's diagnosis
        self._closed = False
        self._listeners: list[Any] = []    # callables(ev) fed after each event (tensorboard)
        self._step_listeners: list[Any] = []   # the same listeners, taking a step's events at once
        self._usual_listeners: list[Any] = []  # ... and the usual step's (Prewritten.usual)
        self._producers: list[Any] = []    # callables() run by the writer thread before each drain
        self._tickers: list[Any] = []      # callables() run by the writer thread after each drain
        self._console = None
        with self.guard("events"):
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._fh = EventWriter(self.out_dir / f"events-rank{self.rank}.jsonl", flush_each=False)
        with self.guard("diagnose"):
            from ..api import Watch
            self._watch = Watch()
        # the writer thread: step events reach the disk (and the detectors) within
        # STEP_FLUSH_SECONDS even when no other event comes (a stalled rank killed later keeps
        # its last steps)
        self._stop_flusher = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="dsdoctor-flush", daemon=True)
        with self.guard("events"):
            self._flusher.start()

    def _flush_loop(self) -> None:
        # time.sleep, not Event.wait(timeout): a wake-up of Event.wait (threading.Condition:
        # a new lock, a timed acquire, the condition's lock again) cost ~65 us of CPU on a busy
        # core against ~40 us. close() does its own last drain and does not wait for this
        # thread (a daemon): it just stops at its next wake-up.
        stop = self._stop_flusher
        while True:
            time.sleep(STEP_FLUSH_SECONDS)
            if stop.is_set():
                return
            self._writer_round()

    def _writer_round(self) -> None:
        """One wake-up of the writer thread: the producers queue what the training thread left
        (the hooks' per-step tuples become events), the queue is written and diagnosed, then
        the tickers run (TensorBoard writes), outside the lock. Producing before the drain
        puts a step on disk and before the detectors within one STEP_FLUSH_SECONDS, not two."""
        for fn in self._producers:
            with self.guard("events.writer"):
                fn()
        if self._queue:
            with self.guard("events.writer"):
                self._drain_in_chunks()
        for fn in self._tickers:           # TensorBoard writes here, outside the lock
            with self.guard("events.writer"):
                fn()

    def _drain_in_chunks(self) -> None:
        """The writer thread's drain: DRAIN_CHUNK events at a time, then the GIL is given back
        (sleep(0)). Otherwise the training thread, back from a torch op, could wait for the
        whole drain (up to the 5 ms switch interval) and its step would grow: CPU time equal,
        wall time not."""
        q = self._queue
        handle = self._handle
        while q:
            with self._lock:
                n = 0
                while q and n < DRAIN_CHUNK:
                    item = q.popleft()
                    handle(item)
                    n += len(item.events) if type(item) is Prewritten else 1
            if q:
                time.sleep(0)
        with self._lock:
            self._flush_file()

    # ------------------------------------------------------------------ containment
    def enabled(self, part: str) -> bool:
        return part not in self._disabled and not self._closed

    def disable(self, part: str) -> None:
        self._disabled.add(part)

    def guard(self, part: str) -> "_Guard":
        """`with session.guard(part):` runs doctor code; an exception is recorded and disables
        `part`, never propagates. Callers skip disabled parts with `if session.enabled(part)`.
        A small class, not @contextmanager: it runs several times per training step."""
        g = self._guards.get(part)
        if g is None:
            g = self._guards[part] = _Guard(self, part)
        return g

    def _record_error(self, part: str, e: BaseException) -> None:
        if part in self._disabled:
            return                         # said once: a full disk fails the close() again
        msg = f"{type(e).__name__}: {e}"[:500]
        self._disabled.add(part)
        self.errors.append((part, msg))
        if part != "events":
            try:
                self.emit("doctor_error", part=part, error=msg)
            except Exception:
                pass
        if not self.quiet and self.rank == 0:
            if isinstance(e, OSError):     # ENOSPC, EIO, a vanished folder: not a dsdoctor bug
                say(f"dsdoctor: {part}: stopped writing to {self.out_dir} ({e.strerror or msg}); "
                    "the training goes on")
            else:
                say(f"dsdoctor: {part} disabled after an internal error: {msg}")

    # ------------------------------------------------------------------ events
    def emit(self, kind: str, step: int | None = None, **data: Any) -> Event:
        """Record one event (thread-safe). STEP_KINDS are queued for the writer thread;
        every other kind is written, flushed and diagnosed at once."""
        ev = Event(kind=kind, rank=self.rank, step=step, time=time.time(), data=data)
        if kind in STEP_KINDS and not self._closed:
            self._queue.append(ev)          # atomic under the GIL: no lock on the hot path
            if len(self._queue) > MAX_QUEUED:
                self.flush()                # the writer thread is gone or starved
            return ev
        with self._lock:
            self._drain()
            self._handle(ev)
            self._flush_file()
        return ev

    def queue(self, events: list[Event | Prewritten]) -> None:
        """Step-kind events made elsewhere (the hooks' expand_pending, with the step's own wall
        time), or a step's Prewritten: queued as emit() queues them, without building them
        twice."""
        if self._closed:
            for item in events:
                for ev in (item.events if type(item) is Prewritten else (item,)):
                    self.emit(ev.kind, ev.step, **ev.data)
            return
        self._queue.extend(events)
        if len(self._queue) > MAX_QUEUED:
            self.flush()

    def flush(self) -> None:
        """Write and diagnose every queued event and flush the file."""
        with self._lock:
            self._drain()
            self._flush_file()

    def _drain(self) -> None:
        q = self._queue
        while q:
            self._handle(q.popleft())

    def _handle(self, item: Event | Prewritten) -> None:
        """Write one event or one step's Prewritten (not flushed), feed the diagnosis
        (api.Watch), then the listeners, event by event. Lock held. The writer thread's
        per-event path: guard() written out as try/except (no context manager calls), the same
        containment."""
        disabled = self._disabled
        pre = type(item) is Prewritten
        if self._fh is not None and "events" not in disabled and not self._closed:
            try:
                if pre:
                    self._fh.write_text(item.text)
                else:
                    self._fh.write(item)
            except Exception as e:
                self._record_error("events", e)
        if not pre:
            if self._watch is not None and "diagnose" not in disabled and not self._closed:
                try:
                    for f in self._watch.feed(item):
                        self._new_finding(f)
                except Exception as e:
                    self._record_error("diagnose", e)
            for fn in self._listeners:
                fn(item)
            return
        # a step's Prewritten: its events diagnosed in order, then each listener takes the
        # whole step in one call (they share one step and one wall time)
        evs = item.events
        if self._watch is not None and "diagnose" not in disabled and not self._closed:
            try:
                # feed() of each, in fewer calls
                found = self._watch.feed_usual_step(evs) if item.usual else self._watch.feed_step(evs)
                if found:
                    for f in found:
                        self._new_finding(f)
            except Exception as e:
                self._record_error("diagnose", e)
        if item.usual:
            for fn in self._usual_listeners:
                fn(evs)
        else:
            for fn in self._step_listeners:
                fn(evs)

    def _flush_file(self) -> None:
        if self._fh is not None and self.enabled("events"):
            with self.guard("events"):
                self._fh.flush()

    def add_listener(self, fn: Any, step_fn: Any = None, usual_fn: Any = None) -> None:
        """fn(ev) after each event, lock held, on whichever thread handles it (the training
        thread for non-step kinds): bookkeeping only, no I/O. step_fn(events), if given, takes
        a step's Prewritten events (one step, one wall time, finite values) in one call instead
        of fn per event: one call per step on the writer thread instead of four; usual_fn(events)
        the usual step's (Prewritten.usual)."""
        self._listeners.append(fn)
        self._step_listeners.append(step_fn if step_fn is not None else _per_event(fn))
        self._usual_listeners.append(usual_fn or self._step_listeners[-1])

    def add_producer(self, fn: Any) -> None:
        """fn() on the writer thread every STEP_FLUSH_SECONDS, before the drain, without the
        lock: where per-step records become queued events (emit or queue), off the training
        thread."""
        self._producers.append(fn)

    def add_ticker(self, fn: Any) -> None:
        """fn() on the writer thread every STEP_FLUSH_SECONDS, after the drain, without the
        lock: where a listener does its I/O, off the training thread."""
        self._tickers.append(fn)

    def _new_finding(self, f: Any) -> None:
        self.findings.append(f)
        if self.rank == 0 and not self.quiet and self.enabled("print"):
            with self.guard("print"):
                from ..report import render_live_finding
                if self._console is None:
                    from rich.console import Console
                    self._console = Console(stderr=True)
                render_live_finding(self._console, f, self.rank, self.progress.step)

    def live_findings(self) -> list:
        """Every finding this rank's diagnosis holds now (including finish()-time ones)."""
        if self._watch is None:
            return list(self.findings)
        self.flush()
        with self._lock, self.guard("diagnose"):
            return self._watch.report().findings
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
        self.flush()                       # queued steps reach TensorBoard before it closes
        for part in reversed(self._parts):
            with self.guard(type(part).__name__.lower()):
                part.stop()
        self._parts.clear()
        with self._lock:
            self._drain()
            if self._fh is not None:
                with self.guard("events"):
                    self._fh.close()
                self._fh = None
            self._closed = True


def _per_event(fn: Any) -> Any:
    def each(evs: list[Event]) -> None:
        for ev in evs:
            fn(ev)
    return each


class _Guard:
    """The context manager behind LiveSession.guard (one per part, reused)."""
    __slots__ = ("session", "part")

    def __init__(self, session: LiveSession, part: str):
        self.session, self.part = session, part

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False                   # KeyboardInterrupt / SystemExit go through
        self.session._record_error(self.part, exc)
        return True                        # containment is the point
