"""Text logs -> events.

Speed matters (a 10 GB log at 3 a.m.), so lines are not all parsed: the block scanner
(sources/scanner.py) finds the few lines worth parsing; only those are decoded, cleaned of
decorations (rank prefixes, timestamps, ANSI colours, carriage-return progress bars) and
handed to the recognisers in sources/formats (listed in sources/registry.py).
Memory is bounded by the block size plus a little state per rank.
"""
from __future__ import annotations

import itertools
from typing import Iterable, Iterator

from .. import regex_cache
from ..events import Event, read_events
from .inputs import Input, InputError, iter_blocks
from .lines import Line, StreamState
from .parse import parse_line
from .registry import finish_stream
from .sampler import RunSampling, SteadySampler
from .scanner import BIG_BLOCK, candidate_hits, candidate_lines, keep_freed_blocks, line_triggers, matcher

# read_log hands on the events of its parsed lines in runs of this many (see there)
EVENT_BATCH = 2048

__all__ = ["Line", "StreamState", "parse_line", "read_log", "events_from_text"]


STDIN_KEEP = 4 << 20       # (below block_size: a first block this small is the whole of stdin)


def read_log(inp: Input, warnings: list[str] | None = None, sample: "bool | RunSampling" = True,
             block_size: int = 16 << 20) -> Iterator[Event]:
    """All events of one input. An unreadable tail (truncated .gz) ends the input with a
    warning; the events before it are kept. `sample`: False reads every line; True samples
    steady lines at full density; a RunSampling (one per run, shared by its inputs) at full
    density for the run's first rank log with steady lines and thinner for the others."""
    if inp.kind == "flight_recorder":        # every rank's dump at once (sources/flight_recorder.py)
        from .flight_recorder import read_dumps
        yield from read_dumps(list(inp.group), warnings)
        return
    if inp.kind not in ("log", "events"):       # TensorBoard, csv_monitor, trainer_state, error.json
        from .artifacts import read as read_artifact
        yield from read_artifact(inp, warnings)
        return
    st = StreamState(inp.name, inp.rank_hint)
    fh = inp.open()
    try:
        if inp.kind == "events":
            yield from read_events(_text_lines(iter_blocks(fh)), inp.name)
            return
        rest: Iterator[bytes] = iter(iter_blocks(fh, block_size))
        first = next(rest, None)
        if first is None and inp.path is None:   # stdin: an empty pipe is an input error, not a healthy run
            raise InputError(f"{inp.name}: nothing on stdin (empty input), nothing to analyse")
        if inp.path is None and first is not None and len(first) <= STDIN_KEEP and inp.stdin_text is None:
            inp.stdin_text = first               # all of a small stdin (a pasted issue body), for a second pass
        blocks: Iterable[bytes] = ()
        if first is not None:
            if len(first) >= BIG_BLOCK:          # (before the next block is read)
                keep_freed_blocks()
            st.year = first_year(first)
            blocks = _as_printed(first, rest)
        errors: list[InputError] = []
        sampler = None
        if sample:
            names = matcher().names
            sampler = sample.sampler(names) if isinstance(sample, RunSampling) else SteadySampler(names)
        hits = candidate_hits(_until_error(blocks, errors), sampler)
        # the events of many lines at once: the parser's code and data, then the detectors'
        # (what reads the events), each stay in the caches for a run of lines
        batch: list[Event] = []
        for lineno, raw, ids in hits:
            batch += parse_line(raw, lineno, st, line_triggers(raw, ids))
            if len(batch) >= EVENT_BATCH:
                yield from batch
                batch = []
        yield from batch
        if isinstance(sample, RunSampling):
            sample.finished(sampler)
        if errors:
            if warnings is None:
                raise errors[0]
            warnings.append(f"{inp.name}: {errors[0]}; the part before it was analysed")
        yield from finish_stream(st)
    finally:
        if inp.path is not None:
            fh.close()


def _as_printed(first: bytes, it: Iterator[bytes]) -> Iterator[bytes]:
    """The lines as the program printed them, from an input's first block and the blocks after
    it: a container runtime's json-file log is decoded (sources/container_logs.py), a notebook's
    outputs unwrapped (sources/notebook.py), both with rich's traceback boxes undone; a log that
    fits in one block may have been copied out of a terminal, hard-wrapped (sources/unwrap.py),
    and may hold rich's traceback boxes (sources/rich_traceback.py) and RichHandler's wrapped records
    (sources/rich_log.py); a longer one was written by a
    program (a rich box in it is read as it is: its exception line's first piece still names the error)."""
    try:
        second = next(it, None)
    except InputError:
        yield first                 # a truncated .gz: what came before the cut is kept
        raise
    from . import container_logs
    from .rich_traceback import unbox
    if container_logs.is_docker_json(first):
        rest = [first] if second is None else [first, second]
        decoded = map(unbox, container_logs.decode_blocks(itertools.chain(rest, it)))
        if second is None:          # a pasted export: it may hold grep -n's output, as a terminal's paste
            from .ungrep import ungrep
            decoded = map(ungrep, decoded)
        yield from decoded
        return
    from . import notebook
    if notebook.is_notebook(first):       # a Jupyter notebook: its cells' outputs, in order
        yield from map(unbox, notebook.decode_blocks(itertools.chain([first] if second is None else [first, second], it)))
        return
    if second is None:
        # grep -n's prefixes came first, then the terminal's wrap: undone in the other order; rich's
        # traceback boxes (sources/rich_traceback.py) were drawn before either
        from .timer_bars import join_timer_pieces
        from .ungrep import ungrep, ungrep_text
        from .unwrap import rejoin
        from .rich_log import join_records
        yield join_timer_pieces(join_records(unbox(ungrep(rejoin(first, lambda text: events_from_text(ungrep_text(text)))))))
        return
    yield first
    yield second
    yield from it


# The year of the first dated timestamp of an input ('2026-12-05 10:00:00', '12/05/2026 10:00:00'),
# looked up in its first block before parsing: glog heads (c10 '[E1205 ...', torch's 'W1205 ...')
# carry no year, and those printed before the first dated line would otherwise keep a placeholder
# year (lines.clean), far from every later time of the same input.
_DATED = regex_cache.compile(rb"\b((?:19|20)\d\d)-[01]\d-[0-3]\d[ T][0-2]\d:[0-5]\d:[0-5]\d|\b[01]\d/[0-3]\d/((?:19|20)\d\d) [0-2]\d:[0-5]\d:[0-5]\d")


def first_year(block: bytes) -> int | None:
    m = _DATED.search(block, 0, 1 << 20)     # the first MiB: a log shows its first date early or never
    return int(m.group(1) or m.group(2)) if m else None


def _until_error(blocks: Iterable[bytes], errors: list[InputError]) -> Iterator[bytes]:
    """End the blocks quietly at a read error (truncated .gz) so the scanner still sees the
    last, unterminated line before the cut; the error is kept in `errors`."""
    try:
        yield from blocks
    except InputError as e:
        errors.append(e)


def _text_lines(blocks: Iterable[bytes]) -> Iterator[str]:
    tail = b""
    for b in blocks:
        buf = tail + b
        lines = buf.split(b"\n")
        tail = lines.pop()
        for ln in lines:
            yield ln.decode("utf-8", errors="replace")
    if tail:
        yield tail.decode("utf-8", errors="replace")


def events_from_text(text: str, source: str = "<example>") -> list[Event]:
    """Parse a log held in a string (rule examples, tests)."""
    st = StreamState(source, None)
    data = text.encode()
    st.year = first_year(data)
    out: list[Event] = []
    for lineno, raw in candidate_lines([data]):
        out.extend(parse_line(raw, lineno, st))
    out.extend(finish_stream(st))
    return out
