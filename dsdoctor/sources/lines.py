"""One log line as the recognisers see it (`Line`: cleaned of rank prefixes, timestamps and
ANSI colours) and the per-input state they share (`StreamState`).

Its own module so that the recognisers (sources/formats) and the reader (sources/logs.py)
both import it and neither imports the other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..events import Event
from ..findings import clip
from .. import regex_cache

MAX_EVIDENCE_TEXT = 400


# ---------------------------------------------------------------- line decorations
_ANSI = regex_cache.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PREFIXES = [
    # [rank3]: (torch 2.2+), [default3]: (torchrun --tee / log_line_prefix_template),
    # [1,3]<stderr>: (Open MPI mpirun --tag-output: [jobid,rank]<stream>:,
    # orte/mca/iof/base/iof_base_output.c; SageMaker / Horovod jobs show it as
    # [1,mpirank:3,algo-2]<stderr>:, the rank then the host)
    (regex_cache.compile(r"^\[(?:rank|default|\d+,(?:mpirank:)?)(\d+)(?:,[\w.-]+)?\](?:<std(?:out|err|diag)>)?:\s?"), "rank"),
    # srun --label / torchrun's "0: " prefix
    (_SRUN_LABEL := regex_cache.compile(r"^(\d{1,5}):\s"), "rank"),
    # kubectl logs --prefix (Kubeflow PyTorchJob pods): "[pod/{pod}/{container}] ", the pod standing for the node
    (regex_cache.compile(r"^\[pod/([\w.-]+)/[\w.-]+\]\s"), "host"),
    # Ray's driver prefixes every worker's line (ray/_private/worker.py: print_worker_logs):
    # "({actor or task name} pid={pid}, ip={ip}) ", "(pid=123) ", "(raylet, ip=10.0.0.3) ",
    # "(autoscaler +1m2s) "; ", ip=" only for another node than the driver's: that ip is the node
    (regex_cache.compile(r"^\((?:(?:[\w.<>-]+(?:\([^()]*\))? (?:rank=\d+ )?)?pid=\d+|raylet|autoscaler \+\w+|gcs_server)"
                        r"(?:, ip=([\d.]+|[\da-fA-F:]+))?\)\s"), "host"),
    # pdsh "host: " (lowercase host names with a digit, so 'ERROR: ...' is not a host)
    (regex_cache.compile(r"^([a-z][a-z0-9_.-]*\d[a-z0-9_.-]*):\s"), "host"),
    # wrappers a log picks up on its way to the user: syslog/journald ("Dec 05 10:00:00 HOST
    # python[4242]: "; moreutils' `ts` writes the time alone), and the "> " of a log quoted in a
    # GitHub issue or an e-mail
    (regex_cache.compile(r"^(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d"
                        r"(?: ([\w.-]+) [\w./-]+(?:\[\d+\])?:)? "), "host"),
    (regex_cache.compile(r"^(?:> ?)+"), None),
    # vLLM's logger (vllm/logger.py: _FORMAT "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d]
    # %(message)s", datefmt "%m-%d %H:%M:%S"; before v0.8 without the brackets: "file.py:12] "): its
    # engine's tracebacks are printed line by line under this head
    (regex_cache.compile(r"^(?:INFO|WARNING|ERROR|DEBUG|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[?[\w./-]+:\d+\] "), None),
    # containerd's CRI log format after its time: "stderr F " (F a full line, P a part of one)
    (regex_cache.compile(r"^std(?:out|err) [FP] "), None),
    # `cat -n` / `nl` line numbers (the tab tells them from srun's "0: "); they pad the number to six
    # places, so an unpadded number before cells of numbers alone is a table's first column (the HF
    # Trainer's notebook table copied out of a browser: '500\t2.311200\tNo log', formats/notebook_table.py)
    (regex_cache.compile(r"^(?: +\d+\t|\d+\t(?!(?:[-+.\deE]+|nan|inf|No [lL]og)(?:[\t ]+(?:[-+.\deE]+|nan|inf|No [lL]og))*[\t ]*$))"), None),
]
# Only the decorations that begin with '[' can match a line that does (most parsed lines:
# '[2026-..', '[rank3]:', '[Rank 0]'), so the others are not tried there: each regex tried on a
# parsed line costs ~0.5-2 us, and clean() runs for every one (tests/test_lines_clean.py checks
# that no other decoration can begin with '[').
_PREFIX_TABLE = [(rx, what, rx.pattern.startswith("^\\[")) for rx, what in _PREFIXES]
_RAY_REPEATED = regex_cache.compile(r" \[repeated \d+x across cluster\](?: \(Ray deduplicates logs by default\..*\))?$")
_LOG_LEVELS = frozenset(("INFO", "WARN", "ERRO", "DEBU", "CRIT"))
_MONTHS = frozenset(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))
_TS = [
    (regex_cache.compile(r"^\[(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[,.](\d+))?\]\s*"), "%Y-%m-%d %H:%M:%S"),
    (regex_cache.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[,.](\d+))?(?:Z|[+-]\d\d:?\d\d)?\s+"), "%Y-%m-%d %H:%M:%S"),
    # transformers' examples: logging.basicConfig(datefmt="%m/%d/%Y %H:%M:%S") then " - LEVEL - name - msg"
    (regex_cache.compile(r"^(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)(?:[,.](\d+))?\s+(?:-\s+)?"), "%m/%d/%Y %H:%M:%S"),
    # mmengine's MMLogger (mmengine/logging/logger.py: MMFormatter(datefmt='%m/%d %H:%M:%S')), no year:
    # "12/06 23:11:54 - mmengine - INFO - "; the year comes as a glog time's does
    (regex_cache.compile(r"^(\d\d/\d\d \d\d:\d\d:\d\d)\s+(?:-\s+)?"), "%m/%d %H:%M:%S"),
]
# glog heads without a year: c10's "[E1205 10:00:00.123456 1234 File.cpp:12] " and torch's Python
# logging "W1205 10:00:00.123000 1234 torch/distributed/run.py:872] " (torch/_logging/_internal.py:
# TorchLogsFormatter). Only the time is read; the head stays (its level letter is the message's).
_TS_TABLE = [(rx, fmt, rx.pattern.startswith("^\\[")) for rx, fmt in _TS]
_GLOG = regex_cache.compile(r"^\[?[IWEF](\d\d)(\d\d) (\d\d:\d\d:\d\d)\.(\d+) +\d+ ")
_YEARLESS = 1972          # the year of a glog time before the log has shown its own (a leap year: 02/29 parses)
DATED = 94694400.0       # 1973-01-01: times at or above it carry a real year
# (the last form: a JSON-lines logger's record field, {"level": "ERROR", "rank": 3, "msg": ...}; '[rank: 1] ' is
# Lightning's rank_prefixed_message, lightning_utilities/core/rank_zero.py)
# '[rank 1]': a rank a user's logging format puts in every record (f"%(asctime)s [rank {rank}] ..."); '[RANK 1]':
# accelerate's get_logger with main_process_only=False (accelerate/logging.py: f"[RANK {state.process_index}] {msg}")
_RANK_IN_MSG = regex_cache.compile(r"\[Rank (\d+)\]|\[(?:rank|RANK)(?:=|:? )?(\d+)\]|\bRank (\d+)\]|\brank=(\d+)\b|\"rank\": ?(\d+)\b")


# Where a line's rank came from (Line.rank_from, Event.rank_from): a line prefix that a launcher or a
# paste put before every line ('[rank3]: ', mpirun's '[1,3]<stderr>:'), srun's task label ('3: ', a
# node's launcher), the message's own words ('[Rank 3]', 'rank=3'), the input's file name
# (rank3.log), or a recogniser that read it from what the line says (a launcher's '--local_rank=1').
# A prefix or a label that also stands on a launcher's own lines names no rank of that input
# (detect/failure.py: _unpin_worn_ranks): every line of the paste wears it.
FROM_PREFIX, FROM_LABEL, FROM_MESSAGE, FROM_FILE, FROM_RECOGNISER = "prefix", "label", "message", "file", "recogniser"
WORN = (FROM_PREFIX, FROM_LABEL)       # the origins a whole paste or a launcher puts on every line


@dataclass
class Line:
    """One cleaned log line and where it came from."""
    text: str
    source: str
    lineno: int
    rank: int | None
    time: float | None
    host: str | None = None
    rank_from: str | None = None       # FROM_* above; None with no rank
    worn: tuple[str, int, int] | None = None   # (FROM_PREFIX or FROM_LABEL, rank, prefixes stacked) of the innermost prefix

    def with_text(self, text: str) -> "Line":
        """This line with another text (a wrapped record joined), every other field kept: what
        dataclasses.replace does, ~4x faster (per Megatron record)."""
        return Line(text, self.source, self.lineno, self.rank, self.time, self.host, self.rank_from, self.worn)

    def with_time(self, time: float | None) -> "Line":
        """This line with another time (a time the cleaner left in the text), as with_text."""
        return Line(self.text, self.source, self.lineno, self.rank, time, self.host, self.rank_from, self.worn)

    def with_rank(self, rank: int | None, rank_from: str | None) -> "Line":
        """This line told whose it is by a recogniser (a traceback lent the rank of its record)."""
        return Line(self.text, self.source, self.lineno, rank, self.time, self.host,
                    rank_from if rank is not None else None, self.worn)

    def launcher_rank(self, st: "StreamState") -> int | None:
        """The rank a launcher's own line stands for when its message names none: a prefix or a label
        on it names none of its ranks (srun's label is the node's launcher, a pasted '[rank3]: ' is
        on every line), the input's own (a file named rank1.log) is kept."""
        return st.rank_hint if self.rank_from in WORN else self.rank

    def event(self, kind: str, step: int | None = None, rank: int | None = None, **data) -> Event:
        t = self.text if len(self.text) <= MAX_EVIDENCE_TEXT else clip(self.text, MAX_EVIDENCE_TEXT)
        # (positional: ~0.4 us less per event than by keyword, ~17,000 events per GiB of log)
        if rank is None:
            if self.rank_from in WORN and ("ank" in self.text or "ANK" in self.text):
                said = _rank_in_msg(self.text)
                if said is not None:
                    # the message's own rank ('[Rank 0] OVERFLOW!', 'rank=1 step=6 loss: nan') over a prefix or
                    # a label another tool put before it (a paste's '[rank3]: ', srun's node label): a process
                    # names itself; checked per event, not per line (a paste's prefix is on every line)
                    return Event(kind, int(next(g for g in said.groups() if g is not None)), step, self.time, data,
                                 self.source, self.lineno, t, FROM_MESSAGE, self.worn)
            return Event(kind, self.rank, step, self.time, data, self.source, self.lineno, t, self.rank_from, self.worn)
        return Event(kind, rank, step, self.time, data, self.source, self.lineno, t, FROM_RECOGNISER, self.worn)


def armed_within(at: int | tuple | list | None, line: Line, n: int, same_line: bool = False) -> bool:
    """Does `line` come at most `n` lines below `at`, the line that armed a recogniser?

    The idiom of every recogniser that one line arms and a line soon below it fires (a frame
    line then its TypeError, 'usage:' then argparse's error, a terminate line then its what(),
    a header then its items): the arming line leaves its number in the stream's scratch, alone or
    as the first item of a tuple/list with what it read; `at` is that (None: not armed, False).
    Line numbers never go down within an input, so the distance is 1 to `n`, or 0 to `n` with
    `same_line` (the arming line itself may fire: a line split at '\\r', or read as other lines,
    hands its number to each part). n=1: the very next line."""
    if at is None:
        return False
    d = line.lineno - (at if type(at) is int else at[0])
    return (0 <= d if same_line else 0 < d) and d <= n


_TIME_CACHE: dict[str, float | None] = {}


_DAYS_BEFORE_MONTH = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH_DAYS = 719162        # days from 0001-01-01 to 1970-01-01 (proleptic Gregorian)


def utc_seconds(text: str) -> float | None:
    """'YYYY-mm-dd HH:MM:SS' (or with a 'T') as unix seconds, read as UTC like every log timestamp
    here (only differences are used), or None.

    What `datetime(..., tzinfo=timezone.utc).timestamp()` returns, and None where it raises
    (a field that is not a number or out of range, Feb 29 of a common year), by arithmetic:
    the datetime version cost ~3 us per parsed line (lines have their own seconds, so the
    cache in _parse_time rarely holds them) and its import ~1 ms of start-up."""
    try:
        y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
        hh, mm, ss = int(text[11:13]), int(text[14:16]), int(text[17:19])
    except ValueError:
        return None
    if not (1 <= y <= 9999 and 1 <= mo <= 12 and 0 <= hh <= 23 and 0 <= mm <= 59 and 0 <= ss <= 59):
        return None
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not 1 <= d <= _DAYS_IN_MONTH[mo] + (leap and mo == 2):
        return None
    p = y - 1
    days = p * 365 + p // 4 - p // 100 + p // 400 + _DAYS_BEFORE_MONTH[mo] + (leap and mo > 2) + d - 1 - _EPOCH_DAYS
    return float(days * 86400 + hh * 3600 + mm * 60 + ss)


def _parse_time(m: re.Match, fmt: str, year: int | None = None) -> float | None:
    # Called for almost every candidate line: parse the fixed-width 'YYYY-mm-dd HH:MM:SS'
    # by slicing (strptime costs ~25 us) and cache the whole seconds (lines share them).
    # `fmt` is the layout the regex guarantees; kept for the table in _TS.
    key = m.group(1)
    if fmt[1] == "m":                       # '%m/%d/%Y ...' -> 'YYYY-mm-dd ...'
        if "Y" in fmt:
            key = f"{key[6:10]}-{key[0:2]}-{key[3:5]} {key[11:]}"
        else:                               # '%m/%d ...': the year as a glog time gets it
            key = f"{year or _YEARLESS}-{key[0:2]}-{key[3:5]} {key[6:]}"
    base = _TIME_CACHE.get(key, False)
    if base is False:
        base = utc_seconds(key)
        if len(_TIME_CACHE) > 4096:
            _TIME_CACHE.clear()
        _TIME_CACHE[key] = base
    if base is None:
        return None
    frac = m.group(2) if m.re.groups > 1 else None
    return base + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _may_start(s: str) -> bool:
    """Can a decoration (_PREFIXES, _TS) start `s`? Most log lines start with something else
    (a space, a capital, '{', '[INFO]', '[Rank 0]'), and then no regex needs to run."""
    c = s[:1]
    if c == "[":                      # [rank3]: [default3]: [2024-...] [E1205 ... [pod/...]
        n = s[1:2]
        return n == "r" or n == "d" or n == "p" or n.isdecimal() or (n in "IWEF" and s[2:3].isdecimal())
    if c in "IWEDC" and s[:4] in _LOG_LEVELS:   # vLLM's "INFO 12-05 10:00:00 [file.py:12] "
        return True
    return c == "(" or c.isdecimal() or "a" <= c <= "z" or (c in "IWEF" and s[1:2].isdecimal()) or c == ">" \
        or (s[3:4] == " " and s[:3] in _MONTHS) or (c == " " and "\t" in s[:8])


def _glog_time(m: re.Match, year: int | None) -> float | None:
    base = utc_seconds(f"{year or _YEARLESS}-{m.group(1)}-{m.group(2)} {m.group(3)}")
    return None if base is None else base + int(m.group(4)) / 10 ** len(m.group(4))


def clean(raw: str, year: int | None = None) -> tuple[str, int | None, float | None, str | None]:
    """Strip decorations; return (text, rank, time, host). `year` completes a glog time (which has
    none); without it such a time is only good for differences within the input."""
    return clean_line(raw, year)[:4]


def clean_line(raw: str, year: int | None = None) \
        -> tuple[str, int | None, float | None, str | None, str | None, tuple[str, int, int] | None]:
    """clean(), and where the rank came from: (text, rank, time, host, rank_from, worn), rank_from one
    of FROM_PREFIX, FROM_LABEL, FROM_MESSAGE (None with no rank), `worn` (FROM_PREFIX or FROM_LABEL, rank, prefixes stacked)
    of the innermost prefix or label, even where the message's own rank won."""
    s = (_ANSI.sub("", raw) if "\x1b" in raw else raw).rstrip("\r\n")
    rank = host = None
    t = None
    label = False                           # the rank is srun's task label ("0: ") alone
    depth = 0                               # rank prefixes and labels stacked on the line
    for _ in range(4):                      # prefixes stack: "host: [rank3]:[2024-..] ..."
        if not _may_start(s):
            break
        changed = False
        for rx, what, bracket in _PREFIX_TABLE:
            if not bracket and s[:1] == "[":
                continue
            m = rx.match(s)
            if m:
                if what == "rank":          # the innermost wins: srun's "0: " is the task (a node's
                    rank = int(m.group(1))  # torchrun), the "[rank5]: " behind it the process's own
                    label = rx is _SRUN_LABEL
                    depth += 1
                elif what == "host":
                    host = m.group(1) or host
                s = s[m.end():]
                changed = True
        if t is None:                       # (the first time found is kept)
            for rx, fmt, bracket in _TS_TABLE:
                if not bracket and s[:1] == "[":
                    continue
                m = rx.match(s)
                if m:
                    t = _parse_time(m, fmt, year)
                    s = s[m.end():]
                    changed = True
                    break
        if not changed:
            if t is None and s[:1] in "[IWEF" and s[:2] != "[r":
                m = _GLOG.match(s)
                if m:
                    t = _glog_time(m, year)
            break
    if s[-1:] in "])" and "x across cluster]" in s:
        # Ray's log deduplication (ray/_private/ray_logging: LogDeduplicator) ends a line that
        # several workers printed with " [repeated 7x across cluster]" (and, once, a note)
        s = _RAY_REPEATED.sub("", s)
    rank_from = None if rank is None else FROM_LABEL if label else FROM_PREFIX
    # (how many stacked: a paste's '[default2]:' alone on the launcher's lines is not the '[rank2]:' under it)
    worn = None if rank is None else (rank_from, rank, depth)
    if label and s[:1] in "[rR":
        # a message that opens with its rank ('rank=1 step=0 loss: ...', '[Rank 1] ...') says whose it
        # is; srun's label only which task printed it (a node's torchrun prints all its ranks' lines)
        m = _RANK_IN_MSG.match(s)
        if m:
            rank = int(next(g for g in m.groups() if g is not None))
            rank_from = FROM_MESSAGE
    if rank is None and ("ank" in s or "ANK" in s):      # every _RANK_IN_MSG form has one; the regex is slow
        m = _rank_in_msg(s)
        if m:
            rank = int(next(g for g in m.groups() if g is not None))
            rank_from = FROM_MESSAGE
    return s, rank, t, host, rank_from, worn


def _rank_in_msg(s: str) -> re.Match | None:
    """_RANK_IN_MSG.search(s), found from the 'ank' every form holds (2 characters in for
    '[Rank'/'[rank', 1 for 'Rank'/'rank'; 'ANK' for accelerate's '[RANK 1]'): `search` tries its
    alternatives at every position of the line (~3 us), this two `match`es per 'ank' (~0.4 us).
    The first match is the leftmost, as search's: the 'ank's (and 'ANK's) are tried in the order
    they stand and cannot overlap."""
    at = [p for w in (("ank", "ANK") if "ANK" in s else ("ank",)) for p in _positions(s, w)]
    for p in sorted(at) if len(at) > 1 else at:
        if p >= 2:
            m = _RANK_IN_MSG.match(s, p - 2)
            if m:
                return m
        if p >= 1:
            m = _RANK_IN_MSG.match(s, p - 1)
            if m:
                return m
    return None


def _positions(s: str, word: str) -> list[int]:
    """Where `word` starts in `s`, in order."""
    out, p = [], s.find(word)
    while p >= 0:
        out.append(p)
        p = s.find(word, p + 1)
    return out


@dataclass
class StreamState:
    """Per-input state the recognisers share: last step per rank, open tracebacks, ..."""
    source: str
    rank_hint: int | None
    last_step: dict[int | None, int] = field(default_factory=dict)
    frames: dict[int | None, list[str]] = field(default_factory=dict)   # open traceback frames
    scratch: dict[str, object] = field(default_factory=dict)            # per-recogniser state
    year: int | None = None           # of the input's first dated timestamp: completes glog times

    def step_of(self, rank: int | None) -> int | None:
        return self.last_step.get(rank, self.last_step.get(None))

    def once(self, key: tuple) -> bool:
        """True the first time `key` is seen in this input: a message every rank prints (or a
        launcher repeats) becomes one event. At most 100,000 keys are remembered."""
        seen = self.scratch.setdefault("once.seen", set())
        if key in seen:
            return False
        if len(seen) < 100_000:
            seen.add(key)
        return True
