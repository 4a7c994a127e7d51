"""Read PyTorch Flight Recorder dumps and let torch's own analysis say which collective went wrong.

Dumps come from two places: the ones the dsdoctor watchdog writes on a stall
(DIR/flight-recorder-rank<N>, live/flight_recorder.py) and the ones torch writes itself on
an NCCL timeout (TORCH_FR_DUMP_TEMP_FILE / TORCH_NCCL_DEBUG_INFO_TEMP_FILE + rank, by default
/tmp/nccl_trace_rank_<N>). Both are the pickle of torch's `_dump_fr_trace()`.

The cross-rank matching is torch's: torch/distributed/flight_recorder/components/builder.py
build_db (what `fr_trace` runs) pairs every rank's entries by sequence id and marks the first
collective that some ranks never joined (Collective.missing_ranks) or joined with another op,
size or dtype (Collective.mismatch_collectives, keyed by the culprit rank). This module only
loads the dumps safely, fills what gloo dumps leave out, and turns the result into `flight_recorder`
events for the rules (rules/comm_stall.yaml, nccl_error.yaml). Without torch the dumps are listed and not read (a
warning says so): analyze itself never needs torch.

Safety: a dump is a pickle, and unpickling runs code. The loader refuses every global, so only
plain containers, strings and numbers (all a dump holds) can be built.
"""
from __future__ import annotations

import contextlib
import functools
import io
import re
from pathlib import Path
from typing import Any, Iterator

from ..events import Event
from ..lazy_regex import compile_later

# names: ours (flight-recorder[-stallK]-rank<N>) and torch's default (nccl_trace_rank_<N>) or any
# prefix ending in 'trace...<N>' / 'fr...<N>' (a TORCH_FR_DUMP_TEMP_FILE the user chose)
DUMP_NAME = re.compile(r"^(?P<prefix>.*?\D)(?P<rank>\d+)$")
DUMP_PREFIX_WORDS = compile_later(r"flight|trace|(^|[^a-z])fr([^a-z]|$)", re.I)
MAX_DUMP_BYTES = 512 << 20
# frames that are not the program's own: torch and DeepSpeed, the doctor's own hook wrappers
# (dsdoctor's live package, wherever it sits), and decorators' wrappers (typing_extensions'
# @deprecated, functools, contextlib)
USER_FRAME_SKIP = ("/torch/", "/deepspeed/", "c10d_logger.py", "distributed_c10d.py",
                   "/dsdoctor/live/", "typing_extensions.py",
                   "/functools.py", "/contextlib.py")


def dump_rank(path: Path) -> int | None:
    """The rank of a file that is a Flight Recorder dump by name and first byte, else None."""
    m = DUMP_NAME.match(path.name)
    if not m or not DUMP_PREFIX_WORDS.search(m.group("prefix")):
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if len(head) < 2 or head[0] != 0x80 or path.stat().st_size > MAX_DUMP_BYTES:
            return None
    except OSError:
        return None
    return int(m.group("rank"))


def group_key(path: Path) -> str:
    """Dumps taken together: one prefix (one stall, or torch's timeout dumps), any folder —
    the nodes' folders of one run each hold their own ranks' dumps."""
    m = DUMP_NAME.match(path.name)
    return m.group("prefix") if m else path.name


@functools.lru_cache(maxsize=None)
def _no_globals() -> type:
    """The unpickler that refuses every global (built on first use: every `analyze` imports
    this module for dump_rank, and pickle costs ~1 ms of its start-up)."""
    import pickle

    class NoGlobals(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise pickle.UnpicklingError(f"refused global {module}.{name} in a Flight Recorder dump")
    return NoGlobals


def __getattr__(name: str) -> Any:
    if name == "NoGlobals":            # live/flight_recorder.py reads its dumps with it too
        return _no_globals()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        d = _no_globals()(fh).load()
    if not isinstance(d, dict) or "entries" not in d:
        raise ValueError("not a Flight Recorder dump (no 'entries')")
    return d


def _fill_pg_configs(dumps: dict[int, dict[str, Any]]) -> None:
    """gloo dumps list no groups by name (only NCCL registers them, ProcessGroupNCCL::getNCCLComm;
    gloo leaves `'': ranks '[]'`). A group's members are then the ranks whose dumps hold
    entries of that group: a rank stuck outside it still has its earlier calls in the buffer."""
    members: dict[str, set[int]] = {}
    for rank, d in dumps.items():
        for e in d["entries"]:
            if e.get("process_group"):
                members.setdefault(e["process_group"][0], set()).add(rank)
    for rank, d in dumps.items():
        cfg = {k: v for k, v in (d.get("pg_config") or {}).items()
               if isinstance(v, dict) and str(v.get("ranks", "[]")).strip() not in ("", "[]")}
        for e in d["entries"]:
            name, desc = e["process_group"]
            if name not in cfg:
                cfg[name] = {"name": name, "desc": desc, "ranks": str(sorted(members.get(name, {rank})))}
        d["pg_config"] = cfg


def _user_frame(frames: list[dict[str, Any]] | None) -> str | None:
    """The innermost frame outside torch/deepspeed: where the program called the collective."""
    for f in frames or ():
        fn = str(f.get("filename", ""))
        if not any(s in fn for s in USER_FRAME_SKIP):
            return f"{f.get('name')} ({fn}:{f.get('line')})"
    if frames:
        f = frames[-1]
        return f"{f.get('name')} ({f.get('filename')}:{f.get('line')})"
    return None


def _position(dump: dict[str, Any]) -> dict[str, Any]:
    """Where one rank was: its last collective (seq id, op, state, caller) and what torch's
    pg_status says was completed."""
    coll = [e for e in dump["entries"] if not e.get("is_p2p")]
    last = coll[-1] if coll else None
    pos: dict[str, Any] = {}
    if last is not None:
        pos.update(last_seq=last.get("collective_seq_id"), last_op=last.get("profiling_name"),
                   last_state=last.get("state"), last_retired=bool(last.get("retired")),
                   caller=_user_frame(last.get("frames")))
    st = dump.get("pg_status") or {}
    if isinstance(st, dict) and st:
        s0 = next(iter(st.values()))
        if isinstance(s0, dict):
            pos["last_completed"] = s0.get("last_completed_collective")
            pos["last_enqueued"] = s0.get("last_enqueued_collective")
    return pos


def _torch_analysis() -> Any:
    """torch's fr_trace pieces, or None without torch. Imported with torch's FR logger muted
    (it prints on import and while matching)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from torch.distributed.flight_recorder.components.builder import build_db
            from torch.distributed.flight_recorder.components.config_manager import JobConfig
    except Exception:       # ImportError, or a torch too old to have it
        return None
    return build_db, JobConfig


def read_dumps(paths: list[Path], warnings: list[str] | None = None) -> Iterator[Event]:
    """`flight_recorder` events from one group of dumps (one per rank)."""
    warnings = warnings if warnings is not None else []
    where = f"{len(paths)} Flight Recorder dump(s) ({', '.join(p.name for p in paths[:4])}{', ...' if len(paths) > 4 else ''})"
    tools = _torch_analysis()
    if tools is None:
        warnings.append(f"{where} found but NOT read: torch is not installed here (pip install torch, "
                        f"then re-run dsdoctor analyze)")
        return
    build_db, JobConfig = tools
    dumps: dict[int, dict[str, Any]] = {}
    files: dict[int, Path] = {}
    for p in paths:
        rank = dump_rank(p)
        try:
            d = load(p)
        except Exception as e:
            warnings.append(f"{p}: not a readable Flight Recorder dump ({type(e).__name__}: {e}); skipped")
            continue
        if rank in dumps:
            warnings.append(f"{p}: a second dump of rank {rank} in one group; skipped")
            continue
        dumps[int(rank or 0)], files[int(rank or 0)] = d, p
    if not dumps:
        return
    _fill_pg_configs(dumps)
    version = str(next(iter(dumps.values())).get("version", ""))
    details = {str(files[r]): {"host_name": files[r].parent.name, "rank": r, "entries": d["entries"],
                               "version": str(d.get("version", "")), "pg_config": d["pg_config"]}
               for r, d in dumps.items()}
    positions = {r: {**_position(d), "folder": files[r].parent.name} for r, d in dumps.items()}
    args = JobConfig().parse_args([str(paths[0].parent), "--allow-incomplete-ranks"])
    import logging              # only when dumps are analysed (~3 ms of every start-up)
    prev = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            db = build_db(details, args, version)
    except (Exception, SystemExit) as e:
        warnings.append(f"{where}: torch's Flight Recorder analysis failed ({type(e).__name__}: {e})")
        return
    finally:
        logging.disable(prev)
    source = str(paths[0].parent / group_key(paths[0])) + "*"
    found = False
    for c in db.collectives:
        ev = _event(c, positions, source)
        if ev is not None:
            found = True
            yield ev
    if not found:
        yield Event("flight_recorder", time=None, source=source,
                    data={"verdict": "consistent", "ranks_dumped": sorted(positions),
                          "positions": _positions_text(positions)})


def _event(c: Any, positions: dict[int, dict[str, Any]], source: str) -> Event | None:
    base = {"seq": c.collective_seq_id, "op": c.collective_name, "group": c.pg_desc,
            "expected_ranks": sorted(c.expected_ranks), "state": c.collective_state,
            "caller": _user_frame(c.collective_frames), "ranks_dumped": sorted(positions),
            "positions": _positions_text(positions)}
    if c.missing_ranks:
        miss = sorted(c.missing_ranks)
        return Event("flight_recorder", rank=None, source=source, data={
            **base, "verdict": "missing", "culprit_ranks": miss,
            "joined_ranks": sorted(set(c.expected_ranks) - set(miss)),
            "sizes": str(c.input_sizes)})
    if c.mismatch_collectives:
        others = {int(r): oc for r, oc in c.mismatch_collectives.items()}
        expected = set(c.expected_ranks)
        # torch compares every rank with the first one; when most ranks differ from it, the
        # first rank is the odd one out
        culprits = sorted(others)
        if len(others) > len(expected) / 2 and len(expected) > 2:
            culprits = sorted(expected - set(others))
        kind = "size"
        first = next(iter(others.values()))
        info = str(getattr(first, "type_of_mismatch", "") or "")
        if "DTYPE" in info:
            kind = "dtype"
        elif "COLLECTIVE_TYPE" in info:
            kind = "op"
        elif "STATE" in info:
            kind = "state"
        sizes = {str(r): str(oc.input_sizes) for r, oc in others.items()}
        return Event("flight_recorder", rank=None, source=source, data={
            **base, "verdict": f"{kind}_mismatch", "culprit_ranks": culprits,
            "expected_sizes": str(c.input_sizes), "culprit_sizes": sizes,
            "culprit_ops": {str(r): oc.collective_name for r, oc in others.items()},
            "detail": info[:300]})
    return None


def _positions_text(positions: dict[int, dict[str, Any]]) -> str:
    parts = []
    for r in sorted(positions)[:16]:
        p = positions[r]
        if p.get("last_seq") is None:
            parts.append(f"rank {r}: no collective recorded")
            continue
        parts.append(f"rank {r}: last collective #{p['last_seq']} {p.get('last_op')}"
                     + (f" (completed up to #{p['last_completed']})" if p.get("last_completed") not in (None, -1) else "")
                     + (f" from {p['caller']}" if p.get("caller") else ""))
    return "; ".join(parts)
