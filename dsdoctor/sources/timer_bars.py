"""DeepSpeed's wall-clock timer records broken at their bars by a paste: deepspeed/utils/timer.py
SynchronizedWallClockTimer.log prints 'time (ms)' + ' | {name}: {ms:.2f}' per timer on one line; an
issue paste or a narrow terminal breaks it after a '| ' ('rank=0 time (ms) |' / 'forward_microstep:
812.30 | backward_microstep: 1630.80 |' / 'step_microstep: 104.70'), and the recogniser of the record
(formats/deepspeed.py timers) then reads a head with no values. This module joins the pieces again.

Done on the block, not by the recognisers: the pieces look like the next record's own fields, so
continuation literals would follow every steady timer line (and defeat their sampling). A record head
that ends with '|' is found with one regex search of the block (none in an unbroken log); the lines
after it are joined while each is a piece ('name: ms' fields) and the joined text still ends with '|'.
Line numbers stay the user's: each joined piece leaves an empty line behind (as sources/unwrap.py).
"""
from __future__ import annotations

from .. import regex_cache

MAX_INPUT = 16 << 20          # pasted-size inputs (one block)
_BROKEN_HEAD = regex_cache.compile(rb"time \(ms\) \|(?:[^\n]*\|)?[ \t\r]*\n")
_PIECE = regex_cache.compile(r"\s*[A-Za-z_][\w\- ]*?: [-+]?\d+(?:\.\d+)?(?:\s*\([^|]*\))?\s*(?:\|\s*[A-Za-z_][\w\- ]*?: "
                             r"[-+]?\d+(?:\.\d+)?(?:\s*\([^|]*\))?\s*)*\|?\s*")


def join_timer_pieces(block: bytes) -> bytes:
    """`block` with every timer record broken after its '|'s joined into one line again."""
    if len(block) > MAX_INPUT or not _BROKEN_HEAD.search(block):
        return block
    lines = block.decode("utf-8", errors="surrogateescape").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        i += 1
        if "time (ms) |" in ln and ln.rstrip().endswith("|"):
            pieces = 0
            while i < len(lines) and _PIECE.fullmatch(lines[i].rstrip("\r")) and ln.rstrip().endswith("|"):
                ln = f"{ln.rstrip()} {lines[i].strip()}"
                i += 1
                pieces += 1
            out.append(ln)
            out.extend("" for _ in range(pieces))        # the paste's line count stays
            continue
        out.append(ln)
    return "\n".join(out).encode("utf-8", errors="surrogateescape")
