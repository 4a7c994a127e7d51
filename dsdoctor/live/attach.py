"""`dsdoctor.attach(engine, out=DIR, ...)`: watch a DeepSpeed engine from inside the process.

    import dsdoctor
    engine, *_ = deepspeed.initialize(...)
    doctor = dsdoctor.attach(engine, out="dsdoctor-run")
    ...train...
    print(doctor.findings); doctor.close()      # the engine is left as it was

`dsdoctor run` does the same for every rank automatically (bootstrap.py).
"""
from __future__ import annotations

import atexit
import importlib
import sys
from typing import Any

from .hooks import EngineHooks, PipelineHooks, is_pipeline_engine
from .session import LiveOptions, LiveSession

# LIVE-XRANK's parts: (module, class). A module that is not there yet is skipped.
PARTS = (("rollcall", "RollCall"), ("exchange", "Exchange"), ("watchdog", "Watchdog"),
         ("telemetry", "Telemetry"))


def engine_facts(engine: Any) -> dict[str, Any]:
    """The context rules need to compute fixes (context.FACTS names), read from the engine."""
    f: dict[str, Any] = {}

    def get(name: str, fn: Any) -> None:
        try:
            f[name] = fn()
        except Exception:
            pass

    get("zero_stage", lambda: int(engine.zero_optimization_stage()))
    get("fp16", lambda: bool(engine.fp16_enabled()))
    get("bf16", lambda: bool(engine.bfloat16_enabled()))
    f["dtype"] = "fp16" if f.get("fp16") else "bf16" if f.get("bf16") else "fp32"
    get("micro_batch", lambda: int(engine.train_micro_batch_size_per_gpu()))
    get("gas", lambda: int(engine.gradient_accumulation_steps()))
    get("train_batch", lambda: int(engine.train_batch_size()))
    get("gradient_clipping", lambda: float(engine.gradient_clipping()))
    get("overlap_comm", lambda: bool(engine.zero_overlap_comm()))
    get("world_size", lambda: int(engine.world_size))

    def offload(block: Any) -> str:
        dev = getattr(block, "device", None) if block is not None else None
        return str(getattr(dev, "value", dev) or "none")

    get("offload_optimizer", lambda: offload(engine.zero_offload_optimizer()))
    get("offload_param", lambda: offload(engine.zero_offload_param()))
    fp16 = getattr(getattr(engine, "_config", None), "float16_config", None)
    if fp16 is not None and f.get("fp16"):
        for name, attr in (("initial_scale_power", "initial_scale_power"), ("min_loss_scale", "min_loss_scale"),
                           ("loss_scale_window", "loss_scale_window"), ("hysteresis", "hysteresis"),
                           ("static_loss_scale", "loss_scale")):
            get(name, lambda a=attr: getattr(fp16, a))
        get("consecutive_hysteresis", lambda: bool(fp16.consecutive_hysteresis))
    get("optimizer_class", lambda: type(engine.optimizer).__name__)
    get("device", lambda: _device_type(engine))
    for mod, name in (("deepspeed", "ds_version"), ("torch", "torch_version")):
        m = sys.modules.get(mod)
        if m is not None:
            f[name] = getattr(m, "__version__", None)
    return f


def _device_type(engine: Any) -> str:
    try:
        return next(engine.module.parameters()).device.type
    except Exception:
        return "cpu"


class Doctor:
    """The handle `attach` returns."""

    def __init__(self, engine: Any, session: LiveSession, hooks: EngineHooks | None):
        self.engine = engine
        self.session = session
        self.hooks = hooks
        self._closed = False

    @property
    def findings(self) -> list:
        """Findings on this rank so far (rules applied to what the hooks saw)."""
        return self.session.live_findings()

    @property
    def out_dir(self):
        return self.session.out_dir

    def close(self) -> None:
        """Remove every hook, stop the parts, flush the events. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.hooks is not None:
            with self.session.guard("hooks"):
                self.hooks.remove()
        with self.session.guard("hooks"):
            if self.engine.__dict__.get("_dsdoctor") is self:
                del self.engine.__dict__["_dsdoctor"]
        self.session.close()

    def __enter__(self) -> "Doctor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def attach(engine: Any, out: Any = None, *, session: LiveSession | None = None, quiet: bool = False,
           **options: Any) -> Doctor:
    """Start watching `engine`. Options are LiveOptions fields (stall_timeout, on_stall,
    localize_nan, exchange_every, telemetry_interval, tensorboard, check_every); DSDOCTOR_*
    environment variables fill what is not given. Never raises because of the doctor itself."""
    existing = getattr(engine, "_dsdoctor", None)
    if isinstance(existing, Doctor) and not existing._closed:
        return existing               # attach() in the script and `dsdoctor run`: one set of hooks
    if session is None:
        session = LiveSession(LiveOptions.from_env(out=out, **options), quiet=quiet)
    facts: dict[str, Any] = {}
    with session.guard("context"):
        facts = engine_facts(engine)
        session.emit("context", **{k: v for k, v in facts.items() if k != "device"})
    hooks: EngineHooks | None = None
    with session.guard("hooks"):
        hooks = (PipelineHooks if is_pipeline_engine(engine) else EngineHooks)(engine, session, facts)
        hooks.install()
    if session.options.tensorboard:
        with session.guard("tensorboard"):
            from .tboard import TensorBoard
            session.add_part(TensorBoard(session))
    for mod, cls in PARTS:
        with session.guard(mod):
            m = importlib.import_module(f"{__package__}.{mod}")   # imported only when attached
            session.add_part(getattr(m, cls)(session))
    doctor = Doctor(engine, session, hooks)
    with session.guard("hooks"):
        object.__setattr__(engine, "_dsdoctor", doctor)
    atexit.register(_close_quietly, doctor)
    return doctor


def _close_quietly(doctor: Doctor) -> None:
    try:
        doctor.close()
    except Exception:
        pass
