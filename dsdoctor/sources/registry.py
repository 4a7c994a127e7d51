"""The recogniser table, built in one place: what the log scanner looks for.

FORMATS lists the recogniser modules (sources/formats/*). From each one the table takes the
functions marked with `@on` (sources/recogniser.py), in the order they are defined, its
`STEADY_GROUPS`; FINISHERS lists the `finish` of the modules that buffer wrapped lines. The scanner (sources/scanner.py) compiles the literals and the
groups' anomaly patterns; sources/parse.py calls the handlers.

Adding a recogniser: a function with `@on(...)` in a module of FORMATS (a new module is
added to FORMATS here).
"""
from __future__ import annotations

from types import ModuleType
from typing import Iterator

from ..events import Event
from .formats import (anomaly, apex, bitsandbytes, comms_logger, context_lines, cuda_init, deepspeed, error_lines, exit_reports,
                      fairseq, hardware, hf, job_status, json_traceback, jsonlog, launcher, loader, megatron, megatron_core, memory,
                      loss_table, multinode, nccl, notebook_table, numpy_abi, openrlhf, paste, phases, progress, ray,
                      rank_head, relaunch, script_steps, sdpa, torch_compile, traceback, translated)
from .lines import StreamState
from .recogniser import (STEADY_KEEP_ALL, STEADY_PER_DOUBLING, Handler, SteadyGroup,
                         declarations)

# Order matters where two recognisers share a literal: the first listed runs first.
FORMATS: tuple[ModuleType, ...] = (
    traceback, json_traceback, memory, context_lines, deepspeed, nccl, launcher, exit_reports, job_status, hf, megatron,
    megatron_core,
    hardware, phases, multinode, ray, openrlhf, bitsandbytes, numpy_abi, cuda_init, loader, relaunch, jsonlog, rank_head, torch_compile, comms_logger,
    fairseq, apex, progress, anomaly,      # other trainers' loss scalers, progress bars, NaN checks
    sdpa,                                  # scaled_dot_product_attention's reasons for refusing a kernel
    script_steps,                          # a script's own 'step=N loss=X lr=Y' line
    loss_table,                            # a loss curve typed as a table with pipes
    notebook_table,                        # the HF Trainer's notebook table, copied with tabs or spaces
    translated,                            # a translated shell/libc message, read as its English line
    error_lines,                           # any logger's error level: the last resort of a failed run
    paste,                                 # an issue paste's prose between two attempts
)

__all__ = ["FORMATS", "HANDLERS", "TRIGGERS", "CONTINUES", "STEADY", "FINISHERS", "finish_stream",
           "recognisers_of", "STEADY_KEEP_ALL", "STEADY_PER_DOUBLING", "SteadyGroup"]


def recognisers_of(module: ModuleType) -> list[Handler]:
    """The functions of `module` marked with `@on`, in definition order (imported ones are
    their own module's)."""
    return [fn for fn in vars(module).values()
            if declarations(fn) and getattr(fn, "__module__", None) == module.__name__]


def _build():
    handlers: dict[str, list[Handler]] = {}
    triggers: set[str] = set()
    continues: dict[str, set[str]] = {}        # continuation literal -> literals it may continue
    steady: dict[str, SteadyGroup] = {}        # trigger literal -> its group
    for module in FORMATS:
        for fn in recognisers_of(module):
            for decl in declarations(fn):
                for t in decl.triggers:
                    handlers.setdefault(t, []).append(fn)
                    triggers.add(t)
                for t in decl.continuation:
                    handlers.setdefault(t, []).append(fn)
                    continues.setdefault(t, set()).update(decl.triggers, decl.after, decl.continuation if decl.chain else ())
        for g in getattr(module, "STEADY_GROUPS", ()):
            for t in g.triggers:
                steady[t] = g
    return handlers, triggers, continues, steady


HANDLERS, TRIGGERS, CONTINUES, STEADY = _build()
translated.HANDLERS.update(HANDLERS)      # it hands a translated line to the recognisers of its English text
# recognisers that buffer wrapped lines, flushed at the end of an input (in this order)
FINISHERS = (megatron.finish, traceback.finish, deepspeed.finish)


def finish_stream(st: StreamState) -> Iterator[Event]:
    """End of an input: flush recognisers that buffer (wrapped lines)."""
    for fn in FINISHERS:
        yield from fn(st)
