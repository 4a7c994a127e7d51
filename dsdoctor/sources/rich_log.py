"""Records printed by `rich.logging.RichHandler` joined again, so the recognisers read each message
on one line.

RichHandler draws every record as a table row (rich/_log_render.py LogRender: a time column
'[23:04:47]' (blank when the time repeats), the level column 8 wide, the message, the path
column 'loss_scaler.py:266' right-aligned; the columns one space apart), padded to the console
width (80 columns when the output is no terminal). A message longer than its column is
word-wrapped onto the next lines, which are blank up to the message column:

    [23:04:47] INFO     [deepspeed] OVERFLOW! Rank 0 Skipping     loss_scaler.py:266
                        step. Attempted loss scale: 16, reducing
                        to 8

so no recogniser sees 'Attempted loss scale: 16, reducing to 8'. Here the message's pieces are
joined onto the record's first line, whose path column goes; a piece continues the message when
its first word would not have fit on the line above (rich's own rule, as in rich_traceback.py),
so a message's own line breaks (a JSON dump) stay. Joined pieces leave empty lines behind: the
line numbers stay the user's. Rich's traceback boxes are rich_traceback.py's (run before this).

Written here because rich has no way back from its rendering. Only one-block inputs that hold a
RichHandler level column are touched.
"""
from __future__ import annotations

from ..lazy_regex import compile_later

# the level column right after the time column or its blank: "INFO" then spaces up to 8 + 1
MARKS = (b" INFO     ", b" WARNING  ", b" ERROR    ", b" DEBUG    ", b" CRITICAL ")
_HEAD = compile_later(r"^(?:\[[^\]\n]{1,40}\]| {3,40}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(?=\S)")
# the path column: 'file.py:123' (or 'file.py' with show_path only) at the end, after a space
_PATH = compile_later(r" ([\w.<>-]+\.py(?::\d+)?)$")


def join_records(block: bytes) -> bytes:
    """`block` with RichHandler's wrapped messages joined (unchanged without its level column)."""
    if not any(m in block for m in MARKS):
        return block
    lines = block.decode("utf-8", errors="surrogateescape").split("\n")
    if not join_lines(lines):
        return block
    return "\n".join(lines).encode("utf-8", errors="surrogateescape")


def join_lines(lines: list[str]) -> bool:
    """Join, in place, every RichHandler record's wrapped pieces; True when any was."""
    changed = False
    i = 0
    while i < len(lines):
        raw = lines[i].rstrip("\r")
        m = _HEAD.match(raw) if "  " in raw else None
        if m is None:
            i += 1
            continue
        col = m.end(1) + 1 + max(0, 8 - len(m.group(1)))      # the message column
        if m.end() != col:
            i += 1
            continue
        body = raw.rstrip()
        # the path column ends the line (rich pads the message column up to it); a line without one
        # is padded to the console's width, and that width is the message column's
        p = _PATH.search(body, col) if len(body) == len(raw) else None
        end = p.start() if p else len(body)
        width = end - col if p else len(raw) - col
        msg = body[col:end].rstrip()
        last = len(msg)
        j = i + 1
        while j < len(lines):
            nxt = lines[j].rstrip("\r")
            if len(nxt) < col or nxt[:col].strip() or nxt[col:col + 1] in (" ", "") or nxt[col] in "│╭╰":
                break
            piece = nxt[col:].rstrip()
            word = piece.split(" ", 1)[0]
            if last + 1 + len(word) <= width:      # it would have fit: a line break of the message's own
                break
            msg += " " + piece
            last = len(piece)
            lines[j] = ""
            j += 1
        if j > i + 1 or p is not None:
            lines[i] = raw[:col] + msg
            changed = True
        i = j
    return changed
