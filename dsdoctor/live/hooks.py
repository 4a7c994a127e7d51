"""Hooks on a DeepSpeed engine: wrap forward / backward / step and turn what happens into events.

DeepSpeedEngine.forward/backward/step are plain methods (deepspeed/runtime/engine.py), so the hooks
are instance attributes that shadow them; `remove()` deletes them again and the engine is as
it was. Every bit of doctor work runs inside `session.guard(...)`: if it fails, that part is
switched off and the original method still runs. Exceptions of the training itself are
recorded and re-raised unchanged.

No host-device synchronisation per step: the loss and the grad norm stay on the device in a
small buffer (detached tensors); every `check_every` steps one `torch.isfinite(stack).all()`
and one `.tolist()` read the whole batch (one sync per N steps instead of N). On the CPU
there is nothing to synchronise: the values are read with float() at the optimizer step, so
a NaN is seen at once.
"""
from __future__ import annotations

import collections
import re
from json.encoder import encode_basestring_ascii as _json_str
import sys
import threading
import time
from typing import Any, Callable

from ..events import Event
from ..torch_oom import requested_bytes
from .session import LiveSession, Prewritten

MEMORY_EVERY = 20                 # steps between `memory` events ...
MEMORY_MIN_SECONDS = 2.0          # ... and at least this long: a psutil read costs ~150 us of the
                                  # training thread, 7 us per step of a 16 ms step every 20 steps
PHASES = ("forward", "backward", "step")


# ---------------------------------------------------------------- memory readings
def gpu_memory(stats: dict[str, Any]) -> dict[str, int]:
    """allocated / reserved / peak bytes from a torch.cuda.memory_stats() dict."""
    keys = {"gpu_allocated": "allocated_bytes.all.current", "gpu_reserved": "reserved_bytes.all.current",
            "gpu_peak": "allocated_bytes.all.peak"}
    return {k: int(stats[v]) for k, v in keys.items() if v in stats}


_process: Any = None                  # psutil.Process of this pid, made once (its constructor reads /proc)


def host_memory() -> dict[str, int]:
    global _process
    import os

    import psutil
    if _process is None or _process.pid != os.getpid():      # a fork gets its own
        _process = psutil.Process()
    return {"rss": _process.memory_info().rss, "available": psutil.virtual_memory().available}


def memory_now(device: str) -> dict[str, int]:
    out = host_memory()
    if device == "cuda":
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            out.update(gpu_memory(torch.cuda.memory_stats()))
    return out


# ---------------------------------------------------------------- OOM recognition
_CUDA_OOM = re.compile(r"CUDA out of memory|CUBLAS_STATUS_ALLOC_FAILED|HIP out of memory|out of memory", re.I)
_CPU_OOM = re.compile(r"DefaultCPUAllocator: can't allocate memory|CPU out of memory|can't allocate memory")


def classify_oom(exc: BaseException) -> str | None:
    """'cuda' | 'cpu' | None: is this exception an out-of-memory, and where."""
    torch = sys.modules.get("torch")
    msg = str(exc)
    if isinstance(exc, MemoryError):
        return "cpu"
    if not isinstance(exc, RuntimeError):
        return None
    if _CPU_OOM.search(msg):
        return "cpu"
    oom_cls = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if (oom_cls is not None and isinstance(exc, oom_cls)) or _CUDA_OOM.search(msg):
        return "cuda"
    return None


def _scalar(x: Any) -> Any:
    """A loss / norm as something we can stack later: a detached 0-d tensor or a float."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if x.numel() != 1:
            return None
        x = x.detach()
        return x if x.dim() == 0 else x.reshape(())
    if isinstance(x, (int, float)):
        return float(x)
    return None


def _lr_from(engine: Any) -> tuple[Any, bool] | None:
    """(the engine's optimizer, wrapped) when DeepSpeedEngine.get_lr() can be read directly:
    it is [group['lr'] (0.0 if absent) for group in optimizer.param_groups] ([] with no
    optimizer; engine.py _get_optimizer_param), and a DeepSpeed wrapper's param_groups (ZeRO
    1-3, the fp16 optimizers) is a property returning its torch optimizer's (wrapped: read
    through `.optimizer`). None when get_lr is not DeepSpeed's own (a subclass's, a stand-in)
    or the optimizer is of another shape: then get_lr() is called."""
    meth = getattr(type(engine), "get_lr", None)
    inner = getattr(type(engine), "_get_optimizer_param", None)
    if (getattr(meth, "__qualname__", "") != "DeepSpeedEngine.get_lr" or "get_lr" in getattr(engine, "__dict__", ())
            or getattr(inner, "__qualname__", "") != "DeepSpeedEngine._get_optimizer_param"):
        return None
    opt = getattr(engine, "optimizer", None)
    if not opt:
        return None
    prop = getattr(type(opt), "param_groups", None)
    if isinstance(prop, property):
        if getattr(prop.fget, "__name__", "") != "_get_param_groups" or \
                not isinstance(getattr(getattr(opt, "optimizer", None), "param_groups", None), list):
            return None
        return opt, True
    return (opt, False) if isinstance(getattr(opt, "param_groups", None), list) else None


class _NoTensor:
    pass


_Tensor: Any = _NoTensor        # torch.Tensor once EngineHooks sees torch imported (not imported here)


def _host_float(x: Any) -> float | None:
    """A loss / norm read at once as a Python float: for CPU tensors, where reading
    synchronises nothing. Tensor.item() (one call, no autograd warning, no detached copy):
    float(x.detach()) cost ~10 us per value on the training thread in real training (two
    dispatched ops and a new tensor), item() ~4 us (benchmarks/kept_tensors.py, modes on/onfloat)."""
    if x is None or type(x) is float:
        return x
    if type(x) is _Tensor:                     # the common case: one test, then item()
        try:
            v = x.item()
        except (RuntimeError, ValueError):     # more than one element
            return None
        return v if type(v) is float else (float(v) if isinstance(v, (int, float)) else None)
    item = getattr(x, "item", None)            # torch tensors (numpy scalars too)
    if item is not None and not isinstance(x, (int, float)):
        try:
            v = item()
        except (RuntimeError, ValueError):     # more than one element
            return None
        return float(v) if isinstance(v, (int, float)) else None
    if isinstance(x, (int, float)):
        return float(x)
    return None


class EngineHooks:
    """Installs the wrappers on one engine and keeps the per-step bookkeeping."""

    STEP_KEYS = ("fwd_ms", "bwd_ms", "step_ms", "data_ms")     # always in a `step` event

    def __init__(self, engine: Any, session: LiveSession, facts: dict[str, Any] | None = None):
        self.engine = engine
        self.session = session
        self.facts = facts or {}
        self.progress = session.progress
        self._saved: dict[str, Any] = {}       # name -> previous instance attribute (or _MISSING)
        self._installed = False
        self._cur: dict[str, float] = {}       # phase times of the optimizer step in progress
        self._micro = 0
        self._step_end: float | None = None
        self._buffer: list[tuple[int, Any, Any]] = []   # (step, loss, grad_norm) not yet checked
        self._last_loss: Any = None
        self._nonfinite_seen = False
        self._localize_armed = False
        self._localize_handles: list[Any] = []
        self._scale: float | None = None
        self._skipped = int(getattr(engine, "skipped_steps", 0) or 0)
        self._streak = 0
        self._steps_seen = 0
        self._memory_at = 0.0                  # monotonic time of the last `memory` event
        self.device = self.facts.get("device", "cpu")
        self.on_host = self.device == "cpu"    # values read at once with float(), no batching
        self.check_every = 1 if self.on_host else max(1, session.options.check_every)
        self.on_step: list[Callable[[int, dict[str, float]], None]] = []   # extra per-step listeners
        # (step, micro steps, phase ms, lr, loss, grad norm, wall time) per optimizer step, made
        # into events off the training thread (expand_pending)
        self._pending: collections.deque[tuple] = collections.deque()
        self._expanding = threading.Lock()      # the writer and the training thread both expand:
                                                # one at a time, so the file keeps step order
        self.read_now = bool(session.options.localize_nan)      # then made into events at once
        # looked up once, not per step (each lookup makes a bound method; in training, with the
        # caches cold after the step's compute, every Python-level operation counts)
        self._get_lr = getattr(engine, "get_lr", None)
        self._lr_from = _lr_from(engine)       # how DeepSpeed's get_lr() reads the param groups
        self._get_norm = getattr(engine, "get_global_grad_norm", None)
        # DeepSpeedEngine.get_global_grad_norm() is `return self._global_grad_norm` (engine.py)
        own = getattr(getattr(type(engine), "get_global_grad_norm", None), "__qualname__", "")
        self._norm_direct = (own == "DeepSpeedEngine.get_global_grad_norm" and hasattr(engine, "_global_grad_norm")
                             and "get_global_grad_norm" not in getattr(engine, "__dict__", ()))
        self._fp16 = bool(self.facts.get("fp16"))
        global _Tensor
        torch = sys.modules.get("torch")
        if torch is not None and _Tensor is _NoTensor:
            _Tensor = torch.Tensor

    # ------------------------------------------------------------ install / remove
    def install(self) -> None:
        for name, wrap in (("forward", self._wrap_forward), ("backward", self._wrap_backward),
                           ("step", self._wrap_step)):
            self._saved[name] = self.engine.__dict__.get(name, _MISSING)
            orig = getattr(self.engine, name)
            object.__setattr__(self.engine, name, wrap(orig))
        self.session.add_producer(self.expand_pending)
        self._installed = True

    def remove(self) -> None:
        """Put the engine back as it was: our instance attributes go, earlier ones come back."""
        if not self._installed:
            return
        for name, prev in self._saved.items():
            if prev is _MISSING:
                self.engine.__dict__.pop(name, None)
            else:
                object.__setattr__(self.engine, name, prev)
        self._remove_localizer()
        self._installed = False
        self.expand_pending()
        with self.session.guard("nonfinite"):
            self._check_buffer(force=True)

    # ------------------------------------------------------------ wrappers
    # The three wrappers run on the training thread at every step. Measured there (not in a
    # tight loop: after a step's compute the doctor's code and data are out of the CPU caches,
    # so each Python call costs several times what a micro-benchmark says), they are written
    # flat: the phase bookkeeping inline, session.enabled(part) as the same test on the
    # session's fields, session.guard(part) as try/except with the same containment
    # (session._record_error), everything looked up once at install.
    def _wrap_phase(self, phase: str, orig: Callable) -> Callable:
        """Time one phase (forward, backward) around `orig`; an exception is recorded (OOM
        phase) and re-raised. Backward also keeps its loss argument for the optimizer step,
        written out here: each Python call a wrapper makes costs ~1-2 us of the training thread
        in training (cold caches after the step's compute: the forward and backward wrappers
        cost ~8 us each there, ~1.5 us in a tight loop)."""
        s, progress = self.session, self.progress
        disabled, failed, monotonic = s._disabled, s._record_error, time.monotonic
        key, first = _PHASE_KEY[phase], phase == "forward"
        keep_loss, on_host = phase == "backward", self.on_host

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            on = "steps" not in disabled and not s._closed          # s.enabled("steps")
            if on:
                try:
                    if first:
                        self._begin(phase)
                    else:                             # _begin of a later phase, without the call
                        progress.phase, progress.phase_started = phase, monotonic()
                    if keep_loss:
                        loss = args[0] if args else kwargs.get("loss")
                        # CPU: kept as it is until the optimizer step reads it as a float (within
                        # this step); elsewhere detached, to be read in a batch (no sync per step)
                        self._last_loss = loss if on_host else _scalar(loss)
                except Exception as e:
                    failed("steps", e)
            try:
                out = orig(*args, **kwargs)
            except BaseException as e:
                self._failed(e, phase)
                raise
            if on and "steps" not in disabled and not s._closed:
                try:
                    now = monotonic()
                    cur = self._cur
                    cur[key] = cur.get(key, 0.0) + (now - progress.phase_started) * 1e3
                    if first and self._localize_handles:
                        self._remove_localizer()      # hooks live for one forward only
                    progress.phase, progress.phase_started = "idle", now
                except Exception as e:
                    failed("steps", e)
            return out
        wrapper.__name__ = phase
        wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
        return wrapper

    def _wrap_forward(self, orig: Callable) -> Callable:
        return self._wrap_phase("forward", orig)

    def _wrap_backward(self, orig: Callable) -> Callable:
        return self._wrap_phase("backward", orig)

    def _wrap_step(self, orig: Callable) -> Callable:
        s, progress, engine = self.session, self.progress, self.engine
        disabled, failed, monotonic = s._disabled, s._record_error, time.monotonic
        fp16 = bool(self.facts.get("fp16"))        # only fp16 has a loss scale to read

        def step(*args: Any, **kwargs: Any) -> Any:
            before = None
            if "steps" not in disabled and not s._closed:
                try:
                    progress.phase, progress.phase_started = "step", monotonic()
                    before = (int(engine.global_steps), self._read_scale() if fp16 else None)
                except Exception as e:
                    failed("steps", e)
            try:
                out = orig(*args, **kwargs)
            except BaseException as e:
                self._failed(e, "step")
                raise
            if before is not None and "steps" not in disabled and not s._closed:
                try:
                    now = monotonic()
                    cur = self._cur
                    cur["step_ms"] = cur.get("step_ms", 0.0) + (now - progress.phase_started) * 1e3
                    self._micro += 1
                    progress.micro_step += 1
                    self._step_end = progress.last_step_end = now
                    progress.phase, progress.phase_started = "data", now
                    if int(engine.global_steps) != before[0]:          # an optimizer step happened
                        self._optimizer_step_done(before[0], before[1])
                except Exception as e:
                    failed("steps", e)
            return out
        step.__wrapped__ = orig  # type: ignore[attr-defined]
        return step

    # ------------------------------------------------------------ bookkeeping
    def _begin(self, phase: str) -> None:
        now = time.monotonic()
        progress = self.progress
        progress.phase, progress.phase_started = phase, now      # Progress.set_phase, inlined
        if phase == "forward":                 # _step_begins(now), inlined (one call less per step)
            if self._step_end is not None:
                cur = self._cur
                cur["data_ms"] = cur.get("data_ms", 0.0) + (now - self._step_end) * 1e3
                self._step_end = None
            progress.step = int(self.engine.global_steps)
            if self._localize_armed and self.session.enabled("localize"):
                with self.session.guard("localize"):
                    self._install_localizer()

    def _step_begins(self, now: float) -> None:
        """A step's first phase (forward; a pipeline engine's train_batch): the time since the
        last step ended was data loading, the step number is the engine's, and an armed NaN
        localizer goes on (it comes off at the end of this step)."""
        if self._step_end is not None:
            self._cur["data_ms"] = self._cur.get("data_ms", 0.0) + (now - self._step_end) * 1e3
            self._step_end = None
        self.progress.step = int(self.engine.global_steps)
        if self._localize_armed and self.session.enabled("localize"):
            with self.session.guard("localize"):
                self._install_localizer()

    def _optimizer_step_done(self, step: int, scale_before: float | None) -> None:
        """What the training thread does per optimizer step: read the few values that change
        (phase times, lr, loss and grad norm as they are) into one tuple. The writer thread
        turns it into the step / lr / loss / grad_norm events (`expand_pending`): building
        four events and reading two tensors cost ~60 us of this thread per step on a busy
        CPU, twice the rest of the hooks. session.guard(part) is written out as try/except
        here (no context-manager calls on the hot path), with the same containment."""
        s, engine = self.session, self.engine
        failed = s._record_error
        disabled = s._disabled                   # "x" not in disabled: s.enabled("x") while training
        cur = self._cur
        progress = self.progress
        progress.window.append(cur)              # never changed after this: no copy
        progress.step = step + 1
        if self.on_step:
            times = _step_times(cur, self.STEP_KEYS)
            for fn in self.on_step:
                fn(step, times)
        lr = loss = norm = None
        if "lr" not in disabled:
            try:
                # get_lr() reads the optimizer's param groups: host floats, no device sync.
                # DeepSpeed's get_lr()[0] read here directly (three Python calls less: get_lr,
                # _get_optimizer_param, the ZeRO optimizer's param_groups property) while the
                # engine's optimizer is the one seen at install
                how = self._lr_from
                if how is not None and engine.optimizer is how[0]:
                    groups = (how[0].optimizer if how[1] else how[0]).param_groups
                    if groups:
                        lr = groups[0].get("lr", 0.0)
                else:
                    get_lr = self._get_lr
                    lrs = get_lr() if get_lr is not None else None
                    if lrs:
                        lr = lrs[0]
            except Exception as e:
                failed("lr", e)
        if "nonfinite" not in disabled:
            try:
                if self._norm_direct:            # DeepSpeed's get_global_grad_norm(), read directly
                    norm = engine._global_grad_norm
                else:
                    get_norm = self._get_norm
                    norm = get_norm() if get_norm is not None else None
                if self.on_host:
                    # read now (~1.5 us each, nothing to synchronise on the CPU), not kept as
                    # tensors for the writer thread: a kept loss keeps its autograd graph (grad_fn
                    # and every node behind it) until the writer's next round, and those small
                    # long-lived host allocations among the step's large transient tensors made
                    # malloc fault in ~115 more pages per step, ~300 us of the training thread's
                    # CPU inside DeepSpeed's methods (1 rank, 2 torch threads; minor faults of the
                    # thread, getrusage(RUSAGE_THREAD): benchmarks/overhead.py)
                    # _host_float(loss), _host_float(norm), with their common case written out
                    # (a 0-d tensor: item(); a float; None): two calls less per step
                    loss = self._last_loss
                    if type(loss) is _Tensor:
                        try:
                            loss = loss.item()
                        except (RuntimeError, ValueError):
                            loss = None
                        if loss is not None and type(loss) is not float:
                            loss = _host_float(loss)
                    elif loss is not None and type(loss) is not float:
                        loss = _host_float(loss)
                    if type(norm) is _Tensor:
                        try:
                            norm = norm.item()
                        except (RuntimeError, ValueError):
                            norm = None
                        if norm is not None and type(norm) is not float:
                            norm = _host_float(norm)
                    elif norm is not None and type(norm) is not float:
                        norm = _host_float(norm)
                else:
                    self._buffer.append((step, self._last_loss, _scalar(norm)))
                    self._check_buffer()
                    norm = None
                self._last_loss = None
            except Exception as e:
                failed("nonfinite", e)
        self._pending.append((step, self._micro, cur, lr, loss, norm, time.time()))
        self._cur, self._micro = {}, 0
        if self.read_now:
            self.expand_pending()                # the NaN must arm the localizer for the next forward
        if "loss_scale" not in disabled:
            try:
                if self._fp16 or getattr(engine, "skipped_steps", 0) != self._skipped:
                    self._watch_scale(step, scale_before)
                else:
                    self._streak = 0             # _watch_scale's common case, without the call
            except Exception as e:
                failed("loss_scale", e)
        self._steps_seen += 1
        if (self._steps_seen == 1 or step % MEMORY_EVERY == 0) and s.enabled("memory"):
            now = time.monotonic()
            if self._steps_seen == 1 or now - self._memory_at >= MEMORY_MIN_SECONDS:
                self._memory_at = now
                with s.guard("memory"):
                    self.expand_pending()        # the step events first: the file keeps step order
                    s.emit("memory", step=step, **memory_now(self.device))

    def expand_pending(self) -> None:
        """The per-step tuples as events, in step order: on the writer thread before each drain
        (a session producer), and on the training thread before any event that must come after
        them (overflow, memory, an exception) and at remove(). The events carry the step's
        own wall time and are queued together (session.queue)."""
        if not self._pending:
            return
        s = self.session
        with self._expanding:
            q, rank, keys = self._pending, s.rank, self.STEP_KEYS
            steps_on, lr_on, nf_on = s.enabled("steps"), s.enabled("lr"), s.enabled("nonfinite")
            lines_on = s._fh is not None and s.enabled("events")       # no file: no lines to make
            out: list[Event | Prewritten] = []
            nkeys, key_set = len(keys), frozenset(keys)
            usual = steps_on and lr_on and nf_on and lines_on and keys == EngineHooks.STEP_KEYS
            while q:
                step, micro, cur, lr, loss, norm, t = q.popleft()
                if usual and type(loss) is float and type(norm) is float and type(lr) is float \
                        and type(t) is float and type(step) is int and type(micro) is int and type(rank) is int \
                        and len(cur) <= nkeys and key_set.issuperset(cur):
                    # the usual step (phase times, lr, loss, grad norm: finite floats): its four
                    # events and their JSON lines made at once, as the code below and four_lines make them
                    fw, bw = round(cur.get("fwd_ms", 0.0), 3), round(cur.get("bwd_ms", 0.0), 3)
                    st, da = round(cur.get("step_ms", 0.0), 3), round(cur.get("data_ms", 0.0), 3)
                    if type(fw) is float and type(bw) is float and type(st) is float and type(da) is float \
                            and fw + bw + st + da + lr + loss + norm + t - (fw + bw + st + da + lr + loss + norm + t) == 0.0:
                        out.append(Prewritten([
                            Event("step", rank, step, t, {"micro_steps": micro, "fwd_ms": fw, "bwd_ms": bw,
                                                          "step_ms": st, "data_ms": da}),
                            Event("lr", rank, step, t, {"value": lr}),
                            Event("loss", rank, step, t, {"value": loss, "name": "loss"}),
                            Event("grad_norm", rank, step, t, {"value": norm})],
                            _four_text(rank, step, t, micro, fw, bw, st, da, lr, loss, norm), usual=True))
                        continue
                evs: list[Event] = []
                if steps_on:
                    try:
                        # {"micro_steps": micro, **_step_times(cur, keys)}, built in place
                        d = {"micro_steps": micro}
                        for k in keys:
                            d[k] = round(cur.get(k, 0.0), 3)
                        if len(cur) > nkeys or not key_set.issuperset(cur):
                            for k, v in cur.items():
                                if k not in d:
                                    d[k] = round(v, 3)
                        evs.append(Event("step", rank, step, t, d))
                    except Exception as e:
                        s._record_error("steps", e)
                        steps_on = False
                if lr is not None and lr_on:
                    try:
                        evs.append(Event("lr", rank, step, t, {"value": float(lr)}))
                    except Exception as e:
                        s._record_error("lr", e)
                        lr_on = False
                if (loss is not None or norm is not None) and nf_on:
                    try:
                        # _record(step, lv, nv, t, evs), written out; on the CPU both are floats
                        lv = loss if loss is None or type(loss) is float else _host_float(loss)
                        nv = norm if norm is None or type(norm) is float else _host_float(norm)
                        if lv is not None:
                            evs.append(Event("loss", rank, step, t, {"value": lv, "name": "loss"}))
                            if lv - lv != 0.0:           # nan / inf (not _finite)
                                self._nonfinite_at()
                        if nv is not None:
                            evs.append(Event("grad_norm", rank, step, t, {"value": nv}))
                    except Exception as e:
                        s._record_error("nonfinite", e)
                        nf_on = False
                if evs:
                    text = None
                    if lines_on:
                        text = four_lines(evs, rank, step, t) if len(evs) == 4 else None
                        if text is None:
                            text = step_lines(evs, rank, step, t)
                    if text is None:
                        out.extend(evs)              # a nan, an odd value: event_line writes them
                    else:
                        out.append(Prewritten(evs, text))
            if out:
                s.queue(out)

    # ------------------------------------------------------------ NaN / Inf
    def _check_buffer(self, force: bool = False) -> None:
        if not self._buffer or (len(self._buffer) < self.check_every and not force):
            return
        import torch
        batch, self._buffer = self._buffer, []
        # Device tensors are stacked and read with ONE .tolist(): one host-device sync for the
        # whole batch, and the values also feed the loss curve. Python floats need no read.
        # CPU tensors are read one by one (float() of a 0-d CPU tensor costs ~1 us; a stack
        # would cost more than it saves).
        items = [v for _, v, _ in batch] + [n for _, _, n in batch]
        tensors = [v for v in items if isinstance(v, torch.Tensor)]
        if all(t.device.type == "cpu" for t in tensors):
            host = [float(v) if isinstance(v, torch.Tensor) else v for v in items]
        else:
            read = iter(torch.stack([t.float().to(tensors[0].device) for t in tensors]).tolist())
            host = [next(read) if isinstance(v, torch.Tensor) else v for v in items]
        n = len(batch)
        for i, (step, loss, norm) in enumerate(batch):
            self._record(step, host[i] if loss is not None else None, host[n + i] if norm is not None else None)

    def _record(self, step: int, lv: float | None, nv: float | None, t: float | None = None,
                out: list[Event] | None = None) -> None:
        """Loss and grad norm of one step as host floats: events, and the NaN trigger. `t`:
        the wall time of the step, when the events are made later; `out`: a batch to add the
        events to (queued by the caller), else they are queued now."""
        rank, evs = self.session.rank, out if out is not None else []
        if t is None:
            t = time.time()
        if lv is not None:
            evs.append(Event("loss", rank, step, t, {"value": lv, "name": "loss"}))
        if nv is not None:
            evs.append(Event("grad_norm", rank, step, t, {"value": nv}))
        if out is None and evs:
            self.session.queue(evs)
        if lv is not None and not _finite(lv):
            self._nonfinite_at()

    def _nonfinite_at(self) -> None:
        """A non-finite loss: the first one arms the NaN localizer (--localize-nan)."""
        if not self._nonfinite_seen:
            self._nonfinite_seen = True
            if self.session.options.localize_nan:
                self._localize_armed = True

    def _install_localizer(self) -> None:
        """Forward hooks on every submodule for one forward: the first module (in execution
        order; children finish before their parent) whose output is non-finite is the culprit."""
        import torch
        self._localize_armed = False
        module = getattr(self.engine, "module", None)
        if module is None:
            return
        found: list[str] = []
        step = int(self.engine.global_steps)

        def make(name: str) -> Callable:
            def hook(mod: Any, inputs: Any, output: Any) -> None:
                if found:
                    return
                with self.session.guard("localize"):
                    outs = output if isinstance(output, (tuple, list)) else (output,)
                    for o in outs:
                        if isinstance(o, torch.Tensor) and o.is_floating_point() and not bool(torch.isfinite(o).all()):
                            ins_ok = all(bool(torch.isfinite(t).all()) for t in inputs
                                         if isinstance(t, torch.Tensor) and t.is_floating_point())
                            found.append(name)
                            self.session.emit("nonfinite_module", step=step, module=name or "<model>",
                                              module_type=type(mod).__name__, inputs_finite=ins_ok)
                            return
            return hook

        for name, sub in module.named_modules():
            self._localize_handles.append(sub.register_forward_hook(make(name)))

    def _remove_localizer(self) -> None:
        for h in self._localize_handles:
            try:
                h.remove()
            except Exception:
                pass
        self._localize_handles = []

    # ------------------------------------------------------------ fp16 loss scale
    def _read_scale(self) -> float | None:
        if not self.facts.get("fp16"):
            return None
        get = getattr(self.engine, "_get_optimizer_loss_scale", None)   # every optimizer class (engine.py)
        v = get() if get is not None else None
        return float(v) if v is not None else None

    def _hysteresis(self) -> int | None:
        scaler = getattr(getattr(self.engine, "optimizer", None), "loss_scaler", None)
        h = getattr(scaler, "cur_hysteresis", None)
        return int(h) if h is not None else None

    def _watch_scale(self, step: int, scale_before: float | None) -> None:
        skipped = int(getattr(self.engine, "skipped_steps", 0) or 0)
        if skipped == self._skipped and not self.facts.get("fp16"):
            self._streak = 0                     # the common case: no loss scale, no skipped step
            return
        scale = self._read_scale()
        if skipped > self._skipped or (scale is not None and scale != self._scale):
            self.expand_pending()                # this step's events before the overflow's
        if skipped > self._skipped:
            self._streak += skipped - self._skipped
            self.session.emit("overflow", step=step, prev_scale=scale_before, new_scale=scale,
                              hysteresis=self._hysteresis(), dtype=self.facts.get("dtype"),
                              streak=self._streak)
            self.session.emit("skipped", step=step, skipped=skipped)
        elif skipped == self._skipped:
            self._streak = 0
        self._skipped = skipped
        if scale is not None and scale != self._scale:
            self.session.emit("loss_scale", step=step, value=scale, hysteresis=self._hysteresis(),
                              min_scale=self.facts.get("min_loss_scale"))
            self._scale = scale

    # ------------------------------------------------------------ failures of training
    def _failed(self, exc: BaseException, phase: str) -> None:
        """The training raised: record what it was, then the caller re-raises it unchanged."""
        if getattr(exc, "_dsdoctor_seen", False):
            return
        with self.session.guard("errors"):
            try:
                exc._dsdoctor_seen = True  # type: ignore[attr-defined]   # nested wrappers: once
            except Exception:
                pass
            step = int(getattr(self.engine, "global_steps", 0))
            self.expand_pending()
            self._check_buffer(force=True)
            msg = str(exc)
            device = classify_oom(exc)
            if device is not None:
                mem: dict[str, Any] = {}
                with self.session.guard("memory"):
                    mem = memory_now(device)
                self.session.emit("oom", step=step, device=device, phase=phase,
                                  requested=requested_bytes(msg), wording=msg.splitlines()[0][:300] if msg else "",
                                  micro_batch=self.facts.get("micro_batch"), zero_stage=self.facts.get("zero_stage"),
                                  offload_optimizer=self.facts.get("offload_optimizer"),
                                  offload_param=self.facts.get("offload_param"), **mem)
            if "loss scale already at minimum" in msg:
                self.session.emit("scale_at_minimum", step=step, scale=self._read_scale())
            self.session.emit("exception", step=step, type=type(exc).__name__, message=msg[:500], phase=phase)
            self.session.flush()


# PipelineEngine instruction (engine._exec_instr, set by _exec_schedule) -> phase of a failure
PIPE_PHASES = {"_exec_forward_pass": "forward", "_exec_backward_pass": "backward",
               "_exec_optimizer_step": "step", "_exec_load_micro_batch": "data",
               "_exec_reduce_grads": "backward", "_exec_reduce_tied_grads": "backward",
               "_exec_send_activations": "forward", "_exec_recv_activations": "forward",
               "_exec_send_grads": "backward", "_exec_recv_grads": "backward"}


def is_pipeline_engine(engine: Any) -> bool:
    return callable(getattr(type(engine), "train_batch", None)) and hasattr(type(engine), "_exec_schedule")


class PipelineHooks(EngineHooks):
    """DeepSpeed's PipelineEngine: the user calls train_batch() / eval_batch(), and forward,
    backward and step run inside them through super() (which instance attributes cannot
    shadow), so these two are wrapped instead. One `step` event per train_batch with batch_ms
    (the whole batch: every micro-batch's forward and backward, the p2p waits between stages,
    the optimizer step) and data_ms (time between batches); no per-phase split, and stages do
    different work by design, so cross-rank comparison only sees whole batches (the same on
    every rank of a pipeline). The loss is train_batch's return value (the mean over the
    batch, broadcast to every stage). The phase of a failure (OOM) is the pipeline instruction
    that was running (engine._exec_instr)."""

    STEP_KEYS = ("batch_ms", "data_ms")

    def install(self) -> None:
        for name, train in (("train_batch", True), ("eval_batch", False)):
            self._saved[name] = self.engine.__dict__.get(name, _MISSING)
            object.__setattr__(self.engine, name, self._wrap_batch(getattr(self.engine, name), train))
        self.session.add_producer(self.expand_pending)     # each batch's events within one writer round
        self._installed = True

    def _wrap_batch(self, orig: Callable, train: bool) -> Callable:
        def batch(*args: Any, **kwargs: Any) -> Any:
            before = None
            if train and self.session.enabled("steps"):
                with self.session.guard("steps"):
                    before = self._batch_begin()
            try:
                out = orig(*args, **kwargs)
            except BaseException as e:
                self._failed(e, self._pipe_phase(train))
                raise
            if before is not None and self.session.enabled("steps"):
                with self.session.guard("steps"):
                    self._batch_end(before, out)
            return out
        batch.__wrapped__ = orig  # type: ignore[attr-defined]
        return batch

    def _pipe_phase(self, train: bool) -> str:
        instr = getattr(self.engine, "_exec_instr", None)
        name = getattr(getattr(instr, "__func__", None), "__name__", "")
        return PIPE_PHASES.get(name, "train_batch" if train else "eval")

    def _batch_begin(self) -> tuple[int, float | None, float]:
        now = self.progress.set_phase("train_batch")
        self._step_begins(now)
        return int(self.engine.global_steps), self._read_scale(), now

    def _batch_end(self, before: tuple[int, float | None, float], loss: Any) -> None:
        now = time.monotonic()
        self._cur["batch_ms"] = self._cur.get("batch_ms", 0.0) + (now - before[2]) * 1e3
        if self._localize_handles:
            self._remove_localizer()
        self._micro += int(getattr(self.engine, "micro_batches", 1) or 1)
        self.progress.micro_step += 1
        self._step_end = self.progress.last_step_end = now
        self.progress.set_phase("data")
        if int(self.engine.global_steps) != before[0]:
            self._last_loss = loss if self.on_host else _scalar(loss)
            self._optimizer_step_done(before[0], before[1])


_MISSING = object()
_PHASE_KEY = {"forward": "fwd_ms", "backward": "bwd_ms", "step": "step_ms"}


def _step_times(cur: dict[str, float], keys: tuple[str, ...]) -> dict[str, float]:
    """The phase times of a `step` event: every key of `keys` (0 when that phase did not
    run), rounded to the microsecond."""
    times = {k: round(cur.get(k, 0.0), 3) for k in keys}
    for k, v in cur.items():
        if k not in times:
            times[k] = round(v, 3)
    return times


_FOUR = ("step", "lr", "loss", "grad_norm")
_STEP_DATA = ("micro_steps", "fwd_ms", "bwd_ms", "step_ms", "data_ms")


def four_lines(evs: list[Event], rank: Any, step: Any, t: Any) -> str | None:
    """step_lines for the usual step of EngineHooks (a step with the four phase times, an lr, a
    loss named 'loss', a grad norm: finite floats), in one f-string, without step_lines' loops
    over the events and their data (~450 -> ~150 Python opcodes per step on the writer thread);
    None for any other shape, and step_lines takes it. The same bytes
    (tests/test_live_step_cost.py)."""
    a, b, c, e = evs
    if (a.kind, b.kind, c.kind, e.kind) != _FOUR or type(t) is not float or type(step) is not int \
            or type(rank) is not int or t - t != 0.0:
        return None
    d = a.data
    if tuple(d) != _STEP_DATA or type(d["micro_steps"]) is not int:
        return None
    fw, bw, st, da = d["fwd_ms"], d["bwd_ms"], d["step_ms"], d["data_ms"]
    lr, lv, nv, cd = b.data.get("value"), c.data.get("value"), e.data.get("value"), c.data
    if (type(fw) is not float or type(bw) is not float or type(st) is not float or type(da) is not float
            or type(lr) is not float or type(lv) is not float or type(nv) is not float
            or fw + bw + st + da + lr + lv + nv - (fw + bw + st + da + lr + lv + nv) != 0.0
            or len(b.data) != 1 or len(e.data) != 1 or len(cd) != 2 or cd.get("name") != "loss"
            or tuple(cd) != ("value", "name")):
        return None                              # (a sum of finite floats can overflow to inf: then step_lines)
    return _four_text(rank, step, t, d["micro_steps"], fw, bw, st, da, lr, lv, nv)


def _four_text(rank: int, step: int, t: float, micro: int, fw: float, bw: float, st: float, da: float,
               lr: float, lv: float, nv: float) -> str:
    """The four JSON lines of the usual step (four_lines; expand_pending's usual step), from its
    values (ints and finite floats, checked by the callers)."""
    tail = f'", "rank": {rank}, "step": {step}, "time": {t!r}, "data": {{'
    return (f'{{"kind": "step{tail}"micro_steps": {micro!r}, "fwd_ms": {fw!r}, "bwd_ms": {bw!r}, '
            f'"step_ms": {st!r}, "data_ms": {da!r}}}}}\n'
            f'{{"kind": "lr{tail}"value": {lr!r}}}}}\n'
            f'{{"kind": "loss{tail}"value": {lv!r}, "name": "loss"}}}}\n'
            f'{{"kind": "grad_norm{tail}"value": {nv!r}}}}}\n')


def step_lines(evs: list[Event], rank: Any, step: Any, t: Any) -> str | None:
    """The JSON lines of one step's step / lr / loss / grad_norm events (expand_pending made
    them, all with this rank, step and wall time), byte for byte what events.event_line
    writes, or None when a value is not a plain int / finite float / string (a nan loss, a
    bool): then event_line writes each event. One f-string per event, the time's repr made
    once, instead of a dict and a C-encoder call per event: ~2 us per step against ~9
    (benchmarks/live_path.py). What json writes (json/encoder.py, c_make_encoder): a float as
    float.__repr__, an int as int.__repr__, a string through encode_basestring_ascii, keys in
    order, ", " and ": " as separators. tests/test_live_writer.py compares the two."""
    if type(t) is not float or t - t != 0.0 or type(step) is not int or type(rank) is not int:
        return None
    tail = f'", "rank": {rank}, "step": {step}, "time": {t!r}, "data": {{'
    lines = []
    for ev in evs:
        d = ev.data
        if len(d) == 1:                          # lr, grad_norm: {"value": v}
            v = d.get("value")
            if type(v) is not float or v - v != 0.0:
                return None
            lines.append(f'{{"kind": "{ev.kind}{tail}"value": {v!r}}}}}\n')
            continue
        parts = []
        for k, v in d.items():                   # step, loss: keys are dsdoctor's own identifiers
            tv = type(v)
            if tv is float:
                if v - v != 0.0:                 # nan / inf: event_line writes them as strings
                    return None
                parts.append(f'"{k}": {v!r}')
            elif tv is int:
                parts.append(f'"{k}": {v!r}')
            elif tv is str:
                parts.append(f'"{k}": {_json_str(v)}')
            else:
                return None
        lines.append(f'{{"kind": "{ev.kind}{tail}{", ".join(parts)}}}}}\n')
    return "".join(lines)


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))
