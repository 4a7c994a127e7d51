"""PyTorch's Flight Recorder, turned on by `dsdoctor run` and dumped by the watchdog on a stall.

The recorder (torch/csrc/distributed/c10d/FlightRecorder.hpp) keeps the last N collectives of
every process group of the process — NCCL and, in torch >= 2.6, gloo too — with their sequence
id, op, sizes, dtypes, state and Python stack. N comes from TORCH_FR_BUFFER_SIZE (older name
TORCH_NCCL_TRACE_BUFFER_SIZE), read once when the first process group is made, so it must be in
the environment before the training starts: `dsdoctor run` puts it there (ENV below) unless the
user set it. On an NCCL timeout torch writes the same dump itself to
TORCH_FR_DUMP_TEMP_FILE<rank> (older name TORCH_NCCL_DEBUG_INFO_TEMP_FILE); `dsdoctor run`
points that at the run folder too.

On a stall verdict every rank's watchdog calls dump(): the pickle torch's own
`_dump_fr_trace()` returns (the format torch's fr_trace reads) goes next to the stacks, as
DIR/flight-recorder-rank<N> (verdict K > 1: flight-recorder-stall<K>-rank<N>). `dsdoctor
analyze` reads them back (sources/flight_recorder.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

BUFFER_ENV = ("TORCH_FR_BUFFER_SIZE", "TORCH_NCCL_TRACE_BUFFER_SIZE")
DUMP_FILE_ENV = ("TORCH_FR_DUMP_TEMP_FILE", "TORCH_NCCL_DEBUG_INFO_TEMP_FILE")
BUFFER_SIZE = 256       # entries per process: a few steps of collectives; see benchmarks/overhead.py
TORCH_DUMP_PREFIX = "nccl_trace_rank_"    # the file name torch's default dump prefix uses


def dump_name(rank: int, stall_id: int = 1) -> str:
    """Ends with the rank, as torch's fr_trace loader expects (components/loader.py read_dir)."""
    return f"flight-recorder-rank{rank}" if stall_id <= 1 else f"flight-recorder-stall{stall_id}-rank{rank}"


def env_for_run(env: dict[str, str], out: Path) -> dict[str, str]:
    """The variables `dsdoctor run` adds for the ranks (those the user set are left alone)."""
    add: dict[str, str] = {}
    if not any(env.get(k) for k in BUFFER_ENV):
        add["TORCH_FR_BUFFER_SIZE"] = str(BUFFER_SIZE)
    if not any(env.get(k) for k in DUMP_FILE_ENV):
        add["TORCH_FR_DUMP_TEMP_FILE"] = str(out.resolve() / TORCH_DUMP_PREFIX)
    return add


def enabled() -> bool:
    """False only when the user turned the recorder off (torch >= 2.6 records by default:
    FlightRecorder.hpp reads TORCH_FR_BUFFER_SIZE with a default of 2000)."""
    for k in BUFFER_ENV:
        v = os.environ.get(k)
        if v:
            try:
                return int(v) > 0
            except ValueError:
                return True
    return True


def dump(out_dir: Path, rank: int, stall_id: int = 1) -> Path | None:
    """Write this process's Flight Recorder to out_dir; None when torch has none to give."""
    if not enabled() or "torch.distributed" not in sys.modules:
        return None
    from torch._C import _distributed_c10d as c10d      # torch/csrc/distributed/c10d/init.cpp
    fn = getattr(c10d, "_dump_fr_trace", None)
    if fn is None:
        return None
    data = fn()
    if not data or not _has_entries(data):
        return None
    path = Path(out_dir) / dump_name(rank, stall_id)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)          # analyze never sees half a dump
    return path


def _has_entries(data: bytes) -> bool:
    """A dump of a recorder that recorded nothing (off, or no collective yet) is not written."""
    import io

    from ..sources.flight_recorder import NoGlobals
    try:
        d = NoGlobals(io.BytesIO(data)).load()
    except Exception:
        return True                   # a format we do not know: keep it for torch's own tools
    return not isinstance(d, dict) or bool(d.get("entries"))
