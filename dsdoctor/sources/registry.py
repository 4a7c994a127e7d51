"""What the log scanner looks for: recognisers keyed by trigger literals, and the steady
metric groups whose lines may be sampled.

The recognisers in sources/formats register themselves here when imported (`on`, `steady`);
the scanner (sources/scanner.py) compiles the literals and the groups' anomaly patterns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from ..events import Event
    from .logs import Line, StreamState

Handler = Callable[["Line", "StreamState"], "Iterable[Event] | Event | None"]
HANDLERS: dict[str, list[Handler]] = {}
TRIGGERS: set[str] = set()
# continuation literal -> the literals whose lines it may continue (see `on`)
CONTINUES: dict[str, set[str]] = {}


def on(*triggers: str, continuation: Iterable[str] = ()) -> Callable[[Handler], Handler]:
    """Register a recogniser for lines containing any of the literal `triggers`.

    `continuation` literals (pieces of a record wrapped over several lines) are only looked
    for in the line right after a line with one of this recogniser's literals: the block
    scanner does not search for them, so a common word such as 'rate:' costs nothing
    elsewhere (a Megatron iteration line holds a dozen of them)."""
    def deco(fn: Handler) -> Handler:
        for t in triggers:
            HANDLERS.setdefault(t, []).append(fn)
            TRIGGERS.add(t)
        for t in continuation:
            HANDLERS.setdefault(t, []).append(fn)
            CONTINUES.setdefault(t, set()).update(triggers, continuation)
        return fn
    return deco


# ---------------------------------------------------------------- steady metric groups
# Steady metric lines (per-step timers, step/throughput lines, healthy Megatron iteration
# lines, HF metric dicts) are most of a big log. After the first STEADY_KEEP_ALL lines of a
# group they are sampled with a stride that doubles every STEADY_PER_DOUBLING kept lines
# (STEADY_KEEP_ALL + STEADY_PER_DOUBLING * log2(n / STEADY_PER_DOUBLING) lines parsed of n:
# ~370 of 100,000; parsing one costs ~30 us, so this is what bounds the Python part of a big
# `analyze` per rank log and group), so trends and baselines survive, and the last
# steady line of each group before any other candidate line is parsed too, so state such as
# the current step is exact when an error comes. Anything unusual is always parsed.
# `--all-lines` turns sampling off.
#
# "Unusual" is said twice, once per scanning path (sources/scanner.py):
#   check      a Python test on one raw line: True = steady. Used where lines are looked at
#              one by one (no hyperscan, or a block the fast path declined).
#   anomalies  hyperscan patterns matching the lines `check` rejects. On the fast path the
#              group's lines never reach Python unless sampled or matched by one of these,
#              so they must cover everything `check` catches.
#   block_ok   an optional test (block, number of anchors in it) for what no pattern can say
#              (a field that is missing); False sends the block down the line-by-line path.
#   anchor     a literal printed exactly once per line of the group: counted per block to
#              size the sample, and searched for to find the sampled lines.
STEADY_KEEP_ALL = 100
STEADY_PER_DOUBLING = 25

HS_CASELESS, HS_MULTILINE = 1, 4          # hyperscan's flag values (no import needed here)

# A nan/inf token: the hyperscan form of `no_nonfinite` (multiline: `$` is a line end, and no
# class crosses a newline, so a match's end lies on its own line). The patterns of all groups
# are searched in every line, so each must be specific: Megatron prints 'number of nan
# iterations' on every line, which is not a NaN.
NONFINITE_ANOMALIES = ((rb"(?:^|[^a-z\n])inf(?:[^a-z\n]|$)", HS_CASELESS | HS_MULTILINE),
                       (rb"(?:^|[^a-z\n])nan(?:[^a-z \n]|$| [^i\n]| $)", HS_CASELESS | HS_MULTILINE))


@dataclass(frozen=True)
class SteadyGroup:
    name: str
    triggers: tuple[str, ...]
    check: Callable[[bytes], bool]
    anomalies: tuple[tuple[bytes, int], ...] | None     # None: no fast path for this group
    anchor: bytes
    block_ok: Callable[[bytes, int], bool] | None = None


STEADY: dict[str, SteadyGroup] = {}      # trigger literal -> its group


def steady(group: str, *triggers: str, check: Callable[[bytes], bool] | None = None,
           anomalies: Iterable[tuple[bytes, int]] | None = None, anchor: str | None = None,
           block_ok: Callable[[bytes, int], bool] | None = None) -> None:
    """Declare lines whose only triggers are `triggers` as a steady metric group (sampled
    when `check(raw_line)` is true; by default: when the line has no nan/inf token). A custom
    `check` needs its `anomalies` for the fast path (see above)."""
    if check is None:
        check, anomalies = no_nonfinite, NONFINITE_ANOMALIES if anomalies is None else anomalies
    g = SteadyGroup(group, triggers, check, tuple(anomalies) if anomalies is not None else None,
                    (anchor or triggers[0]).encode(), block_ok)
    for t in triggers:
        STEADY[t] = g


_NONFINITE = re.compile(rb"(?i)(?<![a-z])(?:nan|inf)(?![a-z])")


def no_nonfinite(raw: bytes) -> bool:
    """No nan/inf token. Plain `in`s on the lower-cased line come first (two searches instead
    of one per spelling); the regex runs only on lines that contain 'nan' or 'inf' in any
    case ('info', as in '[INFO]', is not a token)."""
    low = raw.lower()
    if b"nan" in low or (b"inf" in low and b"inf" in low.replace(b"info", b"")):
        return not _NONFINITE.search(raw)
    return True
