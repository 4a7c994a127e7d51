"""What runs leave behind besides text logs: which files are which, and their readers.

    tensorboard     a folder of TensorBoard event files (DeepSpeed's `tensorboard` monitor)
    monitor_csv     a folder of DeepSpeed `csv_monitor` files (step,<name> per tag)
    hf_state        HF Trainer's trainer_state.json (log_history)
    torchrun_error  error.json of torchelastic's @record (torchrun --log-dir trees)

Each reader turns its input into the same events as the log recognisers (sources/logs.py:
read_log dispatches here), so the NaN, loss-scale, slow-down and LR rules work on all of them.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterator

from ..events import Event
from . import tensorboard, torchrun_logdir
from .input_spec import Input

# monitor_csv (csv, scalars) and hf_state are imported when a .csv / .json file or a folder
# asks for them: every `analyze` of a plain log passes through artifact_kind (~2 ms of start-up)


@functools.lru_cache(maxsize=None)
def _readers() -> dict[str, Callable]:
    from . import hf_state, monitor_csv
    return {"tensorboard": tensorboard.read, "monitor_csv": monitor_csv.read,
            "hf_state": hf_state.read, "torchrun_error": torchrun_logdir.read}


def __getattr__(name: str) -> Any:
    if name == "READERS":              # the kinds and their readers (built on first use)
        return _readers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read(inp, warnings: list[str] | None) -> Iterator[Event]:
    yield from _readers()[inp.kind](inp, warnings)


def artifact_kind(p: Path) -> str | None:
    """The kind of one file named on the command line, or None for a text log."""
    if tensorboard.is_event_file(p):
        return "tensorboard"
    if p.suffix == ".csv":
        from . import monitor_csv
        if monitor_csv.header(p):
            return "monitor_csv"
    if torchrun_logdir.is_error_file(p):
        return "torchrun_error"
    if p.suffix == ".json":
        from . import hf_state
        if hf_state.load(p) is not None:
            return "hf_state"
    return None


def _own_tensorboard(d: Path, root: Path) -> bool:
    """A `dsdoctor run` folder's tb/ holds copies of its events-rank*.jsonl: not read twice."""
    for a in [d, *d.parents]:
        if a.name == "tb" and any(a.parent.glob("events-rank*.jsonl")):
            return True
        if a == root:
            break
    return False


def artifacts_in(root: Path) -> list:
    """Inputs for the non-log artifacts under a folder, in a stable order."""
    from . import hf_state, monitor_csv
    tb_dirs: set[Path] = set()
    csv_dirs: set[Path] = set()
    states: list[tuple[int, Path]] = []
    errors: list[Path] = []
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        if tensorboard.is_event_file(f):
            tb_dirs.add(f.parent)
        elif f.suffix == ".csv" and monitor_csv.header(f):
            csv_dirs.add(f.parent)
        elif torchrun_logdir.is_error_file(f):
            errors.append(f)
        elif f.name == "trainer_state.json":
            st = hf_state.load(f)
            if st is not None:
                states.append((int(st.get("global_step") or 0), f))
    out = []
    tb_dirs = {d for d in tb_dirs if not _own_tensorboard(d, root)}
    for d in sorted(tb_dirs):
        out.append(Input(str(d), d, "tensorboard", None))
    # DeepSpeed's tensorboard and csv_monitor write the same values: with both in one tree,
    # read one (TensorBoard, which has wall times, when the tensorboard package is here)
    if not (tb_dirs and tensorboard.available()):
        for d in sorted(csv_dirs):
            out.append(Input(str(d), d, "monitor_csv", None))
    if states:
        # HF saves one per checkpoint-N/ folder, each with the history up to N: the latest has it all
        f = max(states, key=lambda t: (t[0], str(t[1])))[1]
        out.append(Input(str(f), f, "hf_state", None))
    for f in errors:
        out.append(Input(str(f), f, "torchrun_error", torchrun_logdir.rank_from_path(f)))
    return out
