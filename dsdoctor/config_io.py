"""Read and write ds_config files the way DeepSpeed does (a path is parsed with hjson), and
create output files without ever replacing one the user did not name for replacement."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError, OutputError

__all__ = ["ConfigError", "OutputError", "load_config", "check_output", "create_output", "write_config"]


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a ds_config as DeepSpeed would (hjson), with one-line errors (file:line:col) and
    duplicate keys refused: the same reader as `dsdoctor doctor`."""
    from .config.loader import read_config
    return read_config(path)[0]


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(out: str | Path, inputs: Iterable[str | Path | None] = (), force: bool = False) -> Path:
    """Refuse, before any work is done, an output path that is an input (the same file by
    device and inode: a hardlink or a symlink to it counts), that exists (unless force), or
    that is not a regular file (a FIFO would block the writer, a device would take the bytes)."""
    p = Path(out)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if not p.parent.is_dir():
            raise OutputError(f"{p}: cannot write: the folder {p.parent} does not exist") from None
        return p
    except OSError as e:
        raise OutputError(f"{p}: cannot write: {e.strerror or e}") from None
    for src in inputs:
        if src is None:
            continue
        try:
            if _same_file(st, os.stat(src)):
                raise OutputError(f"{p}: is the same file as the input {src}; refusing to overwrite it "
                                  "(choose another file)")
        except OSError:
            continue
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{p}: cannot write: is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{p}: cannot write: exists and is not a regular file (a FIFO or device); refusing to write to it")
    if not force:
        raise OutputError(f"{p}: already exists; refusing to replace it (pass --force, or choose another file)")
    return p


def create_output(out: str | Path, data: bytes | str, inputs: Iterable[str | Path | None] = (),
                  force: bool = False) -> Path:
    """Write `data` to a new file `out`, created exclusively (O_EXCL: a file that appears
    meanwhile is not replaced). With force an existing regular file is replaced atomically
    (a temporary file in the same folder, then rename), so a full disk never leaves half a
    config. Never writes to a file that is one of `inputs`."""
    inputs = list(inputs)
    p = check_output(out, inputs, force)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if p.exists():                          # force, checked above
        import tempfile          # only when writing (tempfile imports shutil, random: ~2 ms)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=str(p.parent))
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
            os.replace(tmp, p)
        except BaseException:
            _unlink(tmp)
            raise
        return p
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise OutputError(f"{p}: already exists; refusing to replace it (pass --force, or choose another file)") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
    except BaseException:
        _unlink(p)                          # no half-written file left behind
        raise
    return p


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_config(cfg: dict[str, Any], out: str | Path, source: str | Path | None = None,
                 force: bool = False) -> Path:
    """The config as JSON in a new file (see create_output); OutputError (a ConfigError) or
    OSError with the reason."""
    if source is not None:
        cfg = _as_written(cfg, _plain_json(source))
    return create_output(out, json.dumps(cfg, indent=2) + "\n", [source], force)


def _plain_json(path: str | Path) -> Any:
    """The source read as strict JSON (None when it is not): json keeps `1.0` a float where hjson, which
    DeepSpeed reads configs with, makes it the int 1."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _as_written(cfg: Any, literal: Any) -> Any:
    """`cfg` with each value that equals the source's own (1 == 1.0) written as the source wrote it, so a
    patched copy differs from its input only where a fix changed it."""
    if isinstance(cfg, dict) and isinstance(literal, dict):
        return {k: _as_written(v, literal.get(k)) for k, v in cfg.items()}
    if isinstance(cfg, list) and isinstance(literal, list) and len(cfg) == len(literal):
        return [_as_written(a, b) for a, b in zip(cfg, literal)]
    if type(cfg) in (int, float) and type(literal) in (int, float) and cfg == literal:
        return literal
    return cfg
