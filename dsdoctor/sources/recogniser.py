"""How a recogniser module (sources/formats/*) declares what it recognises.

`@on(literal, ...)` marks a function as the handler of the lines holding one of the literals;
`steady(...)` describes a group of steady metric lines that may be sampled. Neither records
anything anywhere: the registry (sources/registry.py) lists the format modules and builds
the scanner's tables from the marked functions and each module's `STEADY_GROUPS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from ..lazy_regex import compile_later

if TYPE_CHECKING:
    from ..events import Event
    from .lines import Line, StreamState

Handler = Callable[["Line", "StreamState"], "Iterable[Event] | Event | None"]


@dataclass(frozen=True)
class Recognises:
    """One `@on` declaration: the trigger literals and the continuation literals."""
    triggers: tuple[str, ...]
    continuation: tuple[str, ...]
    chain: bool = True
    after: tuple[str, ...] = ()


def on(*triggers: str, continuation: Iterable[str] = (), chain: bool = True,
       after: Iterable[str] = ()) -> Callable[[Handler], Handler]:
    """Mark a recogniser for lines containing any of the literal `triggers`.

    `continuation` literals (pieces of a record wrapped over several lines) are only looked
    for in the line right after a line with one of this recogniser's literals: the block
    scanner does not search for them, so a common word such as 'rate:' costs nothing
    elsewhere (a Megatron iteration line holds a dozen of them). A continued line may itself be
    continued by the next; `chain=False` hands over only the one line right after a trigger line
    (continuation literals as common as letters would otherwise run on through the log).
    `after` names other literals (another declaration's triggers or continuation literals) whose
    lines these continuation literals continue too: a record of a few different lines, each
    continuing the one before (a frame, its code line, its carets, then the exception line)."""
    def deco(fn: Handler) -> Handler:
        decl = Recognises(tuple(triggers), tuple(continuation), chain, tuple(after))
        fn.recognises = (*getattr(fn, "recognises", ()), decl)      # type: ignore[attr-defined]
        return fn
    return deco


class ReadAs(list):
    """What a recogniser returns for a line that stands for other lines (a JSON record holding a
    whole traceback, formats/json_traceback.py): those lines' texts. sources/parse.py reads them
    at the line's number, rank and time, and their events replace those every other recogniser
    read in the line itself."""


def declarations(fn: object) -> tuple[Recognises, ...]:
    """The `@on` declarations of `fn` (empty: not a recogniser)."""
    return getattr(fn, "recognises", ()) if callable(fn) else ()


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


def steady(group: str, *triggers: str, check: Callable[[bytes], bool] | None = None,
           anomalies: Iterable[tuple[bytes, int]] | None = None, anchor: str | None = None,
           block_ok: Callable[[bytes, int], bool] | None = None) -> SteadyGroup:
    """A steady metric group: lines whose only triggers are `triggers`, sampled when
    `check(raw_line)` is true (by default: when the line has no nan/inf token). A custom
    `check` needs its `anomalies` for the fast path (see above). A format module lists its
    groups in `STEADY_GROUPS`."""
    if check is None:
        check, anomalies = no_nonfinite, NONFINITE_ANOMALIES if anomalies is None else anomalies
    return SteadyGroup(group, triggers, check, tuple(anomalies) if anomalies is not None else None,
                       (anchor or triggers[0]).encode(), block_ok)


_NONFINITE = compile_later(rb"(?i)(?<![a-z])(?:nan|inf)(?![a-z])")     # the definition (tests)


_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyz")


def no_nonfinite(raw: bytes) -> bool:
    """No nan/inf token: not _NONFINITE.search(raw), which is what the hyperscan form
    (NONFINITE_ANOMALIES) says too. Asked for every steady line parsed, so it looks at each
    'nan' and 'inf' of the lower-cased line and at the bytes around it (a letter on either
    side: not a token, as the 'inf' of '[INFO]') instead of running the case-blind regex over
    the line (a Megatron record always holds 'nan': ~3x faster)."""
    low = raw.lower()
    return not (_token(low, b"nan") or _token(low, b"inf"))


def _token(low: bytes, word: bytes) -> bool:
    """`word` (3 lower-case letters) in `low` with no ASCII letter just before or after it."""
    i = low.find(word)
    while i >= 0:
        if (i == 0 or low[i - 1] not in _LETTERS) and (i + 3 >= len(low) or low[i + 3] not in _LETTERS):
            return True
        i = low.find(word, i + 1)
    return False
