"""One input of `analyze`: a file (or stdin), what kind it is and the rank its name tells.

Its own module so that the expansion of paths (sources/inputs.py) and the artifact readers
(sources/artifacts.py) both build inputs without importing each other.
"""
from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
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

    def open(self) -> BinaryIO:
        if self.path is None:
            return sys.stdin.buffer
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rb")   # type: ignore[return-value]
        return open(self.path, "rb")
