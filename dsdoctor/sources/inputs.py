"""Open what the user points `dsdoctor analyze` at: files, folders, .gz, '-' for stdin.

Everything is read as bytes in large blocks (see sources.logs) so a 10 GB log is streamed,
never held in memory. Errors the user can act on are InputError with a one-line message.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

from .input_spec import Input, InputError
from .. import regex_cache

LOG_SUFFIXES = (".log", ".txt", ".out", ".err", ".gz", ".jsonl", ".stdout", ".stderr", ".ipynb")
# A file named after a node (node2.log) holds all of that node's ranks: its number is no rank.
# AzureML writes one file per rank: user_logs/std_log_process_{N}.txt ('preprocess_1.log' is no rank's)
# ('nproc_8.log', a file named after a process limit, is no rank's either)
_RANK_IN_NAME = regex_cache.compile(r"(?:rank|worker|(?<![a-z])proc|(?<![a-z])process)[_-]?(\d+)", re.I)
# Ray's per-process files in /tmp/ray/session_*/logs are named by its C++ core worker after the
# worker's id (hex), its job and its pid ('worker-{worker_id}-{job_id}-{pid}.out' / '.err',
# 'python-core-worker-{worker_id}_{pid}.log', Ray 2.x): no rank in them
_RAY_WORKER_FILE = regex_cache.compile(r"^(?:python-core-)?worker-[0-9a-f]{40,}[-_]")

__all__ = ["Input", "InputError", "expand", "check_readable", "iter_blocks", "LOG_SUFFIXES"]


def _rank_hint(name: str, path: Path | None = None) -> int | None:
    if _RAY_WORKER_FILE.match(name):
        return None
    m = _RANK_IN_NAME.search(name)
    if m:
        return int(m.group(1))
    if path is not None:
        from .torchrun_logdir import rank_from_path
        return rank_from_path(path)
    return None


def _kind(p: Path) -> str:
    n = p.name[:-3] if p.name.endswith(".gz") else p.name
    return "events" if n.endswith(".jsonl") else "log"


def expand(paths: list[str]) -> list[Input]:
    """Resolve the command-line paths into inputs, in a stable order.

    Several folders (`analyze DIR1 DIR2`: one per node), or a folder of node folders, are one
    run: every file is read once, and Flight Recorder dumps from all of them are grouped into
    one input per stall/timeout (a dump is analysed together with the other ranks' dumps)."""
    from .flight_recorder import dump_rank, group_key
    out: list[Input] = []
    seen: set[Path] = set()
    dumps: dict[str, list[Path]] = {}

    def add(f: Path) -> None:
        key = f.resolve()
        if key in seen:
            return
        seen.add(key)
        if dump_rank(f) is not None:
            dumps.setdefault(group_key(f), []).append(f)
        else:
            out.append(Input(str(f), f, _kind(f), _rank_hint(f.name, f)))

    for raw in paths:
        if raw == "-":
            out.append(Input("-", None, "log", None))
            continue
        p = Path(raw)
        if not p.exists():
            raise InputError(f"{raw}: no such file or directory")
        if p.is_dir():
            all_files = sorted(f for f in p.rglob("*") if f.is_file())
            files = [f for f in all_files if _is_log_file(f) or dump_rank(f) is not None]
            from .artifacts import artifacts_in
            found = artifacts_in(p)
            if not files and not found:
                raise InputError(f"{raw}: folder contains no log files ({', '.join(LOG_SUFFIXES)}), "
                                 "TensorBoard event files, csv_monitor CSVs, trainer_state.json or error.json")
            # dsdoctor's own events and the console capture of a watched run both go in:
            # the events carry what the hooks saw, the console what the program printed.
            for f in files:
                add(f)
            for inp in found:             # TensorBoard, csv_monitor, trainer_state.json, error.json
                if inp.path is None or inp.path.resolve() not in seen:
                    if inp.path is not None:
                        seen.add(inp.path.resolve())
                    out.append(inp)
            continue
        if not os.access(p, os.R_OK):
            raise InputError(f"{raw}: permission denied")
        from .artifacts import artifact_kind
        kind = artifact_kind(p)
        if kind is not None:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                out.append(Input(str(p), p, kind, _rank_hint(p.name, p)))
        else:
            add(p)
    for key, group in sorted(dumps.items()):
        group.sort(key=lambda f: (dump_rank(f) or 0, str(f)))
        out.append(Input(f"{group[0].parent}/{key}<rank> ({len(group)} Flight Recorder dumps)", group[0],
                         "flight_recorder", None, tuple(group)))
    return out


def _is_log_file(f: Path) -> bool:
    name = f.name.lower()
    if name.startswith("."):
        return False
    if any(name.endswith(s) for s in LOG_SUFFIXES):
        return True
    return "log" in name and "." not in name    # e.g. 'stdout-log' without a suffix


def check_readable(inp: Input) -> None:
    """Fail early, with one line, on empty, unreadable or binary files. A truncated .gz is
    not refused here: the part before the cut is still evidence (see iter_blocks)."""
    if inp.path is None or inp.kind not in ("log", "events"):
        return      # folders and files with their own reader (sources.artifacts, flight_recorder)
    try:
        if inp.path.stat().st_size == 0:
            raise InputError(f"{inp.name}: empty file, nothing to analyse")
        with inp.open() as fh:
            head = _read_head(fh, 8192)
    except OSError as e:           # (gzip.BadGzipFile is one)
        raise InputError(f"{inp.name}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not head:
        raise InputError(f"{inp.name}: empty (or truncated before any data), nothing to analyse")
    if not head.strip(b"\x00"):
        head = _after_leading_nuls(inp)
        if not head:
            raise InputError(f"{inp.name}: only NUL bytes, nothing to analyse")
    if _looks_binary(head):
        raise InputError(f"{inp.name}: looks like a binary file, not a text log")
    from . import notebook
    if notebook.is_notebook(head) and not inp.name.endswith(".gz") and not notebook.has_outputs(inp.path):
        raise InputError(f"{inp.name}: a Jupyter notebook with no cell outputs (saved before it ran, or cleared), "
                         "nothing to analyse")


MAX_LEADING_NULS = 1 << 30


def _after_leading_nuls(inp: Input) -> bytes:
    """The first 8 KiB after a run of NUL bytes at the start of a log: what a writer leaves when
    its file is truncated under it (logrotate's copytruncate, `> file` while the job runs: the
    writer goes on at its old offset, and the gap reads as zeros). Judged on what follows it."""
    try:
        with inp.open() as fh:
            skipped = 0
            while skipped < MAX_LEADING_NULS:
                block = fh.read(1 << 20)
                if not block:
                    return b""
                rest = block.lstrip(b"\x00")
                if rest:
                    return (rest + fh.read(8192))[:8192]
                skipped += len(block)
    except (OSError, EOFError):     # (gzip.BadGzipFile is an OSError)
        return b""
    return b""


def _read_head(fh: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    try:
        while got < n:
            b = fh.read1(n - got) if hasattr(fh, "read1") else fh.read(n - got)
            if not b:
                break
            parts.append(b)
            got += len(b)
    except EOFError:          # truncated .gz: the head that was readable decides
        pass
    return b"".join(parts)


# Bytes that never occur in a text log (all C0 controls except tab, LF, FF, CR, ESC, BS).
_CONTROL = bytes(c for c in range(32) if c not in (8, 9, 10, 12, 13, 27))


def _looks_binary(head: bytes) -> bool:
    """NULs, or many control bytes / invalid UTF-8: an image, a checkpoint, a core dump.
    A log with a few bad bytes (a cut multi-byte char, Latin-1 text) still passes."""
    if head.count(b"\x00") > len(head) // 10:
        return True
    bad = len(head) - len(head.translate(None, _CONTROL))
    bad += head.decode("utf-8", errors="replace").count("\ufffd")
    return bad > 0.3 * len(head)


PEEK = 64 << 10     # bytes looked at before a block is read, for its last line end


def iter_blocks(fh: BinaryIO, size: int = 8 << 20) -> Iterator[bytes]:
    """Blocks of about `size` bytes. For a .gz, blocks are assembled from read1() pieces so
    that a truncated stream still yields everything decompressed before the cut, then
    raises InputError."""
    gz = sys.modules.get("gzip")       # imported by Input.open for a .gz (not at start-up)
    piecewise = gz is not None and isinstance(fh, gz.GzipFile)
    # A plain file is read in blocks that end at a line end: the end of the next block is
    # peeked at first (os.pread of its last PEEK bytes, the file position unchanged) and the
    # read stops after its last newline. The scanner then neither joins a partial line to the
    # next block nor cuts one off: each block is copied once, by the read (the two copies
    # cost ~0.2 s per GiB, a fifth of the whole Hyperscan scan).
    fd = None
    if not piecewise and hasattr(os, "pread"):          # (not on Windows)
        try:
            fd = fh.fileno() if fh.seekable() else None
        except (OSError, ValueError, AttributeError):   # a pipe, a BytesIO
            fd = None
    while True:
        parts: list[bytes] = []
        got = 0
        try:
            if piecewise:
                while got < size:
                    b = fh.read1(min(size - got, 1 << 20))
                    if not b:
                        break
                    parts.append(b)
                    got += len(b)
            else:
                n = size
                if fd is not None and size > PEEK:
                    peek = os.pread(fd, PEEK, fh.tell() + size - PEEK)
                    cut = peek.rfind(b"\n")
                    if len(peek) == PEEK and cut >= 0:   # not the file's end, and a line ends there
                        n = size - PEEK + cut + 1
                b = fh.read(n)
                if b:
                    parts.append(b)
        except EOFError:          # truncated .gz: what was read so far is still evidence
            if parts:
                yield b"".join(parts)
            raise InputError("truncated gzip stream (the file was cut short)") from None
        except OSError as e:           # (gzip.BadGzipFile is one)
            if parts:
                yield b"".join(parts)
            raise InputError(f"read error: {e}") from None
        if not parts:
            return
        yield parts[0] if len(parts) == 1 else b"".join(parts)
