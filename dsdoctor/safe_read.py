"""Read a small input file (a config, a rule file, a CSV head) with bounded work.

A FIFO given as `--config` blocked `dsdoctor doctor` for good and `/dev/zero` grew its memory
without bound: every file read whole goes through here, which opens without blocking,
refuses what is not a regular file (checked on the open descriptor, so a path swapped after
the check cannot slip through) and reads at most `limit` bytes.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path


class ReadError(ValueError):
    """The file cannot be read as asked. str() is one line: 'path: problem'."""


def open_regular(path: str | Path, what: str = "file"):
    """A binary file object for a regular file, or ReadError (missing, a folder, a FIFO, a device)."""
    p = str(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ReadError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ReadError(f"{p}: is a directory, expected a {what}") from None
    except OSError as e:
        raise ReadError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ReadError(f"{p}: is a directory, expected a {what}")
        if not stat.S_ISREG(st.st_mode):
            m = st.st_mode
            kind = ("a FIFO" if stat.S_ISFIFO(m) else "a device" if stat.S_ISCHR(m) or stat.S_ISBLK(m)
                    else "a socket" if stat.S_ISSOCK(m) else "a special file")
            raise ReadError(f"{p}: is {kind}, expected a {what} (a regular file)")
        try:                        # back to blocking reads: a regular file never blocks anyway
            os.set_blocking(fd, True)
        except OSError:
            pass
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The whole file, or ReadError if it is larger than `limit` bytes or not a regular file."""
    with open_regular(path, what) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as e:
            raise ReadError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > limit:
        raise ReadError(f"{path}: larger than {_human(limit)}; this is not a {what}")
    return data


def read_regular_text(path: str | Path, limit: int, what: str = "file") -> str:
    data = read_regular(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ReadError(f"{path}: not UTF-8 text") from None


def _human(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
