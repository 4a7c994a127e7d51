"""One input of `analyze`: a file (or stdin), what kind it is and the rank its name tells.

Its own module so that the expansion of paths (sources/inputs.py) and the artifact readers
(sources/artifacts.py) both build inputs without importing each other.
"""
from __future__ import annotations

import codecs
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO


class InputError(Exception):
    """The input cannot be used. str() is a one-line message for the user."""


@dataclass
class Input:
    name: str                 # what evidence lines cite
    path: Path | None         # None for stdin
    kind: str                 # 'log' | 'events' | 'flight_recorder' | a kind of sources.artifacts.READERS
    rank_hint: int | None     # rank read from the file name (events-rank3.jsonl, rank3.log)
                              # or a torchrun log-dir path (attempt_0/3/stderr.log)
    group: tuple[Path, ...] = ()   # flight_recorder: every rank's dump of one stall/timeout
    # stdin's whole text once read, when it was small (an issue body piped in): read again by a
    # second pass (api.diagnose_inputs, dsdoctor/issue)
    stdin_text: bytes | None = field(default=None, repr=False)

    def open(self) -> BinaryIO:
        if self.path is None:
            return io.BytesIO(self.stdin_text) if self.stdin_text is not None else utf8_view(sys.stdin.buffer)
        if self.path.suffix == ".gz":
            import gzip                 # here: ~1 ms of every start-up, for .gz inputs only
            return utf8_view(gzip.open(self.path, "rb"))   # type: ignore[arg-type]
        return utf8_view(open(self.path, "rb"))


def utf8_view(fh: BinaryIO) -> BinaryIO:
    """`fh`, or a UTF-8 view of it when it starts with a UTF-16 byte-order mark (Windows
    PowerShell's `>` and Tee-Object write UTF-16): every reader downstream scans UTF-8 bytes."""
    try:
        head = fh.peek(258)[:258]        # type: ignore[attr-defined]
    except (AttributeError, OSError, EOFError):
        return fh
    if head[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return fh
    # the mark alone proves little (a garbled UTF-8 log may start with those bytes): UTF-16 text
    # of a log is mostly ASCII, so the high byte of most units is 0
    units = head[2:len(head) - len(head) % 2]
    high = units[1::2] if head[:2] == b"\xff\xfe" else units[0::2]
    return _Utf16AsUtf8(fh) if high and high.count(0) >= 0.7 * len(high) else fh


class _Utf16AsUtf8(io.RawIOBase):
    """Reads a UTF-16 stream as UTF-8 bytes, decoded piece by piece (the stdlib's
    codecs.StreamRecoder reads its whole input on read() without a size)."""

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self._decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
        self._left = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._left) < size:
            raw = self._fh.read(1 << 20 if size < 0 else max(2 * (size - len(self._left)), 2))
            self._left += self._decoder.decode(raw, final=not raw).encode("utf-8", "surrogatepass")
            if not raw:
                break
        out, self._left = (self._left, b"") if size < 0 else (self._left[:size], self._left[size:])
        return out

    read1 = read

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()
