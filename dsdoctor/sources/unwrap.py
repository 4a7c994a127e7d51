"""Logs copied out of a terminal come hard-wrapped: every line longer than the pane is cut into
pieces of exactly the pane's width, and a traceback's exception line or a loss record ends up
on two lines that no recogniser knows. This module finds such a width and joins the pieces again.

Written here because no library undoes terminal wrapping (textwrap only wraps). The cue is
structural: a wrapped log has a spike of lines of exactly one length W (the pieces) and none
longer, where an unwrapped log's longest lines are spread out. Line numbers stay the user's: the
joined line keeps the number of its first piece and each later piece leaves an empty line behind.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from .. import regex_cache

MIN_WIDTH = 60                # narrower panes do not hold a log line's head
SAMPLE = 64 << 10             # the width is found in the first 64 KiB (~500 lines)
MAX_INPUT = 16 << 20          # only pasted-size inputs (one block): programs do not wrap their logs
TRIAL = 256 << 10             # the recognisers read this much of both texts to choose
SHORT_PASTE = 40              # non-empty lines: a paste this short may hold one wrapped line (a traceback whose
                              # exception line, its longest, was cut: 10-40 lines with its frames)
MID_PASTE = 200               # non-empty lines: a paste this short may hold two (read twice to choose: cheap)


def wrap_width(text: str) -> int | None:
    """The width the text was hard-wrapped at, or None."""
    lines = [ln.rstrip("\r") for ln in text[:SAMPLE].split("\n") if ln.strip()]
    lengths = Counter(len(ln) for ln in lines)
    if not lengths:
        return None
    width = max(lengths)
    # rules of one character ('=' * 60 around torchelastic's error table) do not count; the same
    # message from every rank makes identical first pieces, which count (a whole line repeated is
    # told apart below: the next record starts the same way)
    spike = sum(1 for ln in lines if len(ln) == width and len(set(ln.strip())) > 1)
    if width < MIN_WIDTH or spike < 3:
        return None
    # the 20 lengths just below the width: natural lines that end near it, about as many per
    # length as the spike in an unwrapped log, far fewer in a wrapped one
    near = sum(lengths.get(n, 0) for n in range(width - 20, width)) / 20
    if spike < 4 * max(near, 0.5):
        return None
    # records printed at a fixed width (Megatron's ' iteration %8d/%8d | ...') are all as long as
    # the longest, and each is followed by the next record, which starts the same way; a piece
    # is followed by the rest of its line
    follow = same = 0
    for a, b in zip(lines, lines[1:]):
        if len(a) == width:
            follow += 1
            same += _head(a) == _head(b)
    return None if same * 2 >= follow else width


_DIGITS = str.maketrans("123456789", "000000000")


def one_cut_line_width(text: str) -> int | None:
    """A paste of a few lines with one of them cut in two (or more) by a browser or terminal (the
    longest line, then the rest of it): no spike to see, so its length is only a candidate width, and
    the recognisers decide (rejoin keeps the join only if they read more in it)."""
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    if not lines or len(lines) > MID_PASTE:
        return None
    width = max(len(ln) for ln in lines)
    at = [i for i, ln in enumerate(lines) if len(ln) == width]
    # two or three lines cut at one width, each followed by its shorter rest (the spike wrap_width
    # wants needs three; a line that is naturally as long is glued to the next only if that reads more)
    several = 2 <= len(at) <= 3 and all(i + 1 < len(lines) and len(lines[i + 1]) < width for i in at)
    if len(lines) > SHORT_PASTE:            # a longer paste (an issue's tail of a log): only that shape
        return width if width >= MIN_WIDTH and several else None
    # the pieces of one line cut several times follow each other, the last one shorter
    one_run = at == list(range(at[0], at[0] + len(at))) and at[-1] + 1 < len(lines)
    return width if width >= MIN_WIDTH and (len(at) == 1 or one_run or several) else None


_FENCE_LINE = regex_cache.compile(r"^\s*(?:>\s*)?(?:```|~~~)")
MAX_BLOCKS = 8                # fenced blocks looked at (an issue body holds a few)


def fenced_widths(text: str) -> list[tuple[int, bool]]:
    """The wrap widths of the blocks an issue body fences with ``` (at most three; True: a terminal's
    wrap, False: one line cut in two): the prose, env dumps and config around the log hide the
    log's own wrap from the whole text's count."""
    if "```" not in text and "~~~" not in text:
        return []
    blocks: list[list[str]] = []
    inside = False
    for ln in text.split("\n"):
        if _FENCE_LINE.match(ln):
            inside = not inside
            if inside:
                if len(blocks) == MAX_BLOCKS:
                    break
                blocks.append([])
        elif inside:
            blocks[-1].append(ln)
    out: dict[int, bool] = {}
    for b in blocks:
        t = "\n".join(b)
        if (w := wrap_width(t)) is not None:
            out[w] = True
        elif (w := one_cut_line_width(t)) is not None:
            out.setdefault(w, False)
    return sorted(out.items())[:3]


def _head(line: str) -> str:
    """How a line starts, digits aside ('[Rank 3] time (ms)' and '[Rank 0] time (ms)' alike)."""
    return line[:10].translate(_DIGITS)


def rejoin(block: bytes, read: Callable[[str], list]) -> bytes:
    """`block` with its hard-wrapped lines joined again (unchanged if it was not wrapped).

    The shape alone also fits logs whose longest lines are records of one template (the same
    timeout message from every rank, HF metric dicts): so the joined text is kept only when the
    recognisers read more in it than in the text as it came (a wrap cut records the recognisers
    know; joining natural lines glues records together and reads fewer). `read` turns a text
    into its events (sources/logs.py: events_from_text)."""
    if len(block) > MAX_INPUT:
        return block
    head = block[:SAMPLE].decode("utf-8", errors="surrogateescape")
    width = wrap_width(head)
    # one cut line: a time alone does not count (a whole untimed line after the longest timed one,
    # 'Using DIR as PyTorch extensions root...' after DeepSpeed's dated line, reads the same
    # events joined, each then with the first line's time)
    if width is not None:
        widths = [(width, True)]
    else:
        one = one_cut_line_width(head)
        widths = [(one, False)] if one else fenced_widths(head)
    if not widths:
        return block
    text = block.decode("utf-8", errors="surrogateescape")
    trial = slice(0, TRIAL)
    before: dict[bool, int] = {}
    best, best_score = block, -1
    for width, timed in widths:
        if timed not in before:
            before[timed] = _read_score(block[trial], read, timed)
        joined = _joined(text, width)
        after = _read_score(joined[trial], read, timed)
        # a tie under a real wrap (the spike) joins: the line-by-line reading may follow a record's
        # pieces, but the sampled reading decides on whole lines (a Megatron record whose 'grad norm:
        # nan' went to its third piece was sampled away as a steady line)
        # an untimed tie joins when each cut line's rest lacks the paste's decoration
        tie = after == before[timed] and (timed or _rests_undecorated(head, width))
        if (after > before[timed] or tie) and after > best_score:
            best, best_score = joined, after
    return best


def _rests_undecorated(text: str, width: int) -> bool:
    """Each line cut at `width` has the head of the line above it ('[rank0]:   File ...' in a paste where
    every line has it) and the line after it does not ('global_norm'): that line is the cut line's rest,
    not a line of its own (a tie between the two readings, a frame cut inside its function's name, then joins)."""
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    cut = [i for i, ln in enumerate(lines) if len(ln) == width]
    h = lambda ln: _head(ln)[:8]        # noqa: E731  (a decoration's width: '[rank0]:', '[2026-12-')
    return bool(cut) and all(0 < i < len(lines) - 1 and h(lines[i - 1]) == h(lines[i]) != h(lines[i + 1])
                             and not _OWN_HEAD.match(lines[i + 1]) and not _LINE_START.match(lines[i + 1])
                             # a word cut in two: no space on either side of the cut
                             and not lines[i][-1:].isspace() and not lines[i + 1][:1].isspace() for i in cut)


# a line with a head of its own ('srun: error: ...', 'node2: ...', 'W1206 ...'): a line, not a rest
_OWN_HEAD = regex_cache.compile(r"\S+: |[IWEF]\d{4} |\[")


def _read_score(data: bytes, read: Callable[[str], list], timed: bool = True) -> int:
    """How much the recognisers read in a text: events, and the facts and times they carry (a
    record cut in two loses its time or its loss to the piece no recogniser knows)."""
    # (an event read twice alike counts once: two lines that differ only in a cut-off tail, Slurm's
    # 'STEP ... DUE TO TIME LIM' and 'JOB ... DUE TO TIME LIM', are one observation, which the joined
    # text reads once, with the facts the tail held)
    seen: set = set()
    score = 0
    for ev in read(data.decode("utf-8", errors="replace")):
        key = (ev.kind, ev.rank, ev.step, ev.time, repr(ev.data))
        if key not in seen:
            seen.add(key)
            score += 1 + (timed and ev.time is not None) + sum(v is not None for v in ev.data.values())
    return score


# what only the start of a line looks like: a line of exactly the pane's width before one of
# these was a whole line, not a piece
# (an exception's name then ':' or the line's end: a piece of a JSON record may begin inside one, 'ileNotFoundError", ...')
_LINE_START = regex_cache.compile(r"(?:\d{1,9}[:-]| *\d+\t)?(?:Traceback \(most recent call last\)|\s*File \"|[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)(?::|\s*$)"
                                 r"|\[(?:rank|default)\d+\]:|\[?\d{4}-\d\d-\d\d[ T]\d\d:|\s*\d{1,3}%\|)")
# (behind grep -n's 'N:' or 'N-' too: a paste's grep prefixes are taken off after the wrap is undone; and
# behind `cat -n`'s number)
# (a tqdm bar starts with its percentage: a command line exactly as wide as the pane before the first
# bar was whole, and gluing the bar to it lost the bar's anchor of the run's start)


def _joined(text: str, width: int) -> bytes:
    out: list[str] = []
    pending: list[str] = []         # the pieces of one wrapped line so far
    lines = text.split("\n")
    for i, ln in enumerate(lines):
        piece = ln.rstrip("\r")
        if len(piece) == width and i + 1 < len(lines) and not _LINE_START.match(lines[i + 1]):
            pending.append(piece)
            continue                # cut at the pane's edge: the next line goes on
        pending.append(ln)
        out.append("".join(pending))
        out.extend("" for _ in range(len(pending) - 1))      # keep the line count
        pending = []
    return "\n".join(out).encode("utf-8", errors="surrogateescape")
