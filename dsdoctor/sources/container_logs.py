"""Logs as a container runtime stores them: Docker's json-file driver writes one JSON object per
line, `{"log": "<the line>\\n", "stream": "stderr", "time": "2026-12-05T10:00:00.123456789Z"}`
(moby daemon/logger/jsonfilelog). A user who copies such a file from a node pastes escaped text
(`File \\"train.py\\"`) that no recogniser reads. This turns it back into the lines the program
printed, each behind its time, one line for one line so line numbers stay the file's.

(containerd's CRI format, `<time> stderr F <the line>`, needs no decoding: sources/lines.py strips
its head like a timestamp.)
"""
from __future__ import annotations

import itertools
import json
from typing import Iterable, Iterator

_HEAD = b'{"log":'


def is_docker_json(block: bytes) -> bool:
    return block.lstrip()[:len(_HEAD)] == _HEAD


def decode(block: bytes) -> bytes:
    """The program's own lines of a json-file block; lines that are not such objects stay as they are."""
    recs: list[bytes | tuple[str | None, str]] = []
    for raw in block.split(b"\n"):
        if not raw.startswith(_HEAD):
            recs.append(raw)
            continue
        try:
            rec = json.loads(raw)
            text = rec["log"].rstrip("\n").replace("\n", " ")
        except (ValueError, KeyError, TypeError, AttributeError):
            recs.append(raw)            # cut in the middle of an object (a truncated file)
            continue
        stamp = rec.get("time")
        recs.append((stamp if isinstance(stamp, str) and stamp[:4].isdigit() else None, text))
    untimed = _untimed(recs)
    out = []
    for r in recs:
        if type(r) is bytes:
            out.append(r)
            continue
        stamp, text = r
        line = text if untimed or stamp is None else f"{stamp} {text}"
        out.append(line.encode("utf-8", errors="surrogateescape"))
    return b"\n".join(out)


def _untimed(recs: list, sample: int = 2000) -> bool:
    """Docker's times have nanoseconds: a block of lines all behind one and the same time was not
    timed as printed (rewritten by a tool), and a time that never advances tells nothing (a hang
    would read as 0 s long): such a block is read as the program printed it, with its own times."""
    stamps = [r[0] for r in itertools.islice((r for r in recs if type(r) is tuple), sample)]
    return len(stamps) >= 5 and len(set(stamps)) == 1


def decode_blocks(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """decode() over blocks cut at any byte: each block is decoded up to its last newline and the
    rest goes with the next one (a JSON object cut in two decodes as nothing)."""
    tail = b""
    for b in blocks:
        buf = tail + b
        cut = buf.rfind(b"\n") + 1
        tail = buf[cut:]
        if cut:
            yield decode(buf[:cut])
    if tail:
        yield decode(tail)
