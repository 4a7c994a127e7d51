"""Tracebacks printed by `rich` (rich.traceback.install(), typer's pretty exceptions, accelerate with
ACCELERATE_ENABLE_RICH=1, structlog's ConsoleRenderer) turned back into CPython's layout, so the
traceback recognisers read them as they read any other.

rich draws a box (rich/traceback.py Traceback._render_stack: a Panel titled
'[traceback.title]Traceback [dim](most recent call last)'): '╭──── Traceback (most recent call
last) ────╮', a frame as '│ /path/file.py:139 in forward   │' (rich/traceback.py _render_stack:
'{filename}:{lineno} in {name}', the function wrapped onto the next box line when the path is long),
source lines and locals panels, '╰────╯', then the exception line '{type}: {message}' word-wrapped at
the console's width (80 columns when the output is no terminal). The wrapped message is what no
recogniser reads: 'DefaultCPUAllocator:' on one line, 'can't allocate memory: you tried to allocate
... bytes' on the next. A prefix in front of every line ('[rank0]: ', a timestamp) is kept: the
state is per prefix, so two ranks' boxes interleaved line by line stay apart.

Written here because rich has no way back from its rendering. Only inputs that hold rich's box corner
'╭─' are touched.
"""
from __future__ import annotations

from ..lazy_regex import compile_later

MARK = "╭─".encode()
_HEAD = compile_later(r"^(.*?)╭─+ Traceback \(most recent call last\) ─+╮\s*$")
# '│ /path/to/file.py:139 in forward   │' (rich makes a script's path absolute; '~' not expanded)
_FRAME = compile_later(r"^│ ((?:[/~]|[A-Za-z]:\\)\S*?):(\d+) in ?(\S*)\s*│$")
_ONE_WORD = compile_later(r"^│ (\S+)\s*│$")
_ANSI = compile_later(r"\x1b\[[0-9;?]*[A-Za-z]")


def unbox(block: bytes) -> bytes:
    """`block` with rich's traceback boxes written as CPython tracebacks (unchanged without one)."""
    if MARK not in block:
        return block
    text = block.decode("utf-8", errors="surrogateescape")
    if "\x1b" in text:          # structlog's ConsoleRenderer colours its box even into a file
        text = _ANSI.sub("", text)
    return "\n".join(unbox_lines(text.split("\n"))).encode("utf-8", errors="surrogateescape")


def unbox_lines(lines: list[str]) -> list[str]:
    out = list(lines)
    # prefix -> [mode, box width, index of the exception line in `out`, length of its last piece]
    open_: dict[str, list] = {}
    i = 0
    while i < len(out):
        ln = out[i].rstrip()           # (rich.logging.RichHandler pads its message column with spaces)
        m = _HEAD.match(ln) if "╭─" in ln else None
        if m:
            prefix = m.group(1)
            open_[prefix] = ["box", len(ln) - len(prefix), None, 0]
            out[i] = _kept(prefix) + "Traceback (most recent call last):"
            i += 1
            continue
        if not open_:
            i += 1
            continue
        prefix, body = _owner(ln, open_)
        if prefix is None:
            i += 1
            continue
        st = open_[prefix]
        if st[0] == "box":
            if body.startswith("╰"):
                st[0] = "exception"
                out[i] = prefix
            elif body.startswith("│"):
                f = _FRAME.match(body)
                if f:
                    func = f.group(3)
                    if not func and i + 1 < len(out):       # the name wrapped onto the next box line
                        nxt = _ONE_WORD.match(out[i + 1].rstrip()[len(prefix):])
                        if nxt and out[i + 1].startswith(prefix):
                            func = nxt.group(1)
                            out[i + 1] = prefix
                    out[i] = f'{_kept(prefix)}  File "{f.group(1)}", line {f.group(2)}, in {func or "?"}'
        elif st[0] == "exception":               # the exception line right under the box
            st[0], st[2], st[3] = "message", i, len(body.rstrip())
            out[i] = _kept(prefix) + body.rstrip()
        else:                                    # a piece of the message rich wrapped?
            piece = body.strip()
            word = piece.split(" ", 1)[0]
            if piece and len(body.rstrip()) <= st[1] and st[3] + 1 + len(word) > st[1]:
                out[st[2]] = out[st[2]].rstrip() + " " + piece
                st[3] = len(body.rstrip())
                out[i] = prefix
            else:
                del open_[prefix]
        i += 1
    return out


def _kept(prefix: str) -> str:
    """The prefix written in front of a rewritten line: a rank's or a logger's head stays; the blank
    indent rich.logging.RichHandler gives its message column goes (CPython's layout has none)."""
    return prefix if prefix.strip() else ""


def _owner(line: str, open_: dict[str, list]) -> tuple[str | None, str]:
    """The open box's prefix `line` starts with (the longest), and the rest of the line."""
    best = None
    for p in open_:
        if line.startswith(p) and (best is None or len(p) > len(best)):
            best = p
    return (best, line[len(best):]) if best is not None else (None, line)
