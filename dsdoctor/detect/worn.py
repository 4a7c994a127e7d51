"""The rank a line prefix put on a line, when a launcher's own line wears the same prefix: no rank.

srun --label puts the task number before every line of a node's launcher and of all its ranks; a
paste may put '[rank3]: ' (or its own decoration) before every line. The launcher is no rank, so a
prefix its own lines wear (sources/lines.py: Event.worn, Event.rank_from) says which task or paste
printed a line, not which rank: a traceback whose only rank is that prefix is some rank's. Rank
numbers the message itself gave ('[Rank 1]', a launcher's '--local_rank=1', a file named rank1.log)
stay. Used by the detectors that tie lines by rank (detect/failure.py, detect/comm.py) and, for every
other detector's symptoms (NaN, loss scale, OOM, stragglers: the ranks `symptom_from` took from an
event, Symptom.origins), by the Diagnoser (pipeline.py), which keeps the one WornPrefixes of a run: it
notes the launchers' lines and hands it to the detectors (Detector.use_context).
"""
from __future__ import annotations

from ..events import Event
from ..sources.lines import WORN

# the launchers whose own lines a node's label or a paste's prefix may wear (sources/formats/launcher.py)
LAUNCHERS = ("launcher", "torchelastic")
KINDS = ("process_exit", "killed")      # the launchers' events that carry the prefix their line wore


def rank_origin(ev: Event) -> tuple[str, int, tuple | None]:
    """Where `ev`'s rank came from, as WornPrefixes.unpinned reads it: (input, rank, the prefix or label
    that gave it (Event.worn), or None for the message's own words, a file name, a recogniser)."""
    return ev.source, ev.rank, ev.worn if _from_worn(ev) else None


def _from_worn(ev: Event) -> bool:
    """Is `ev`'s rank the one its innermost prefix or label put on its line?"""
    return ev.rank_from in WORN and ev.worn is not None and ev.worn[0] == ev.rank_from and ev.worn[1] == ev.rank


def same_paste(ev: Event, followed: Event) -> bool:
    """Is `ev`, whose rank differs from the `followed` event's, on a line whose only rank is the prefix the
    followed one's line wore too (one input)? A paste's '[rank3]: ' before a whole log gives 3 to the
    lines that name no rank and the message's own rank to those that do ('[Rank 0] step=1, ... lr='):
    the same process's lines, or none can tell, so a series keeps them (detect/lr.py)."""
    # (the rank as the prefix's: a recogniser that passes its line's rank on gives the prefix's too)
    return (ev.source == followed.source and ev.worn is not None and ev.worn == followed.worn
            and ev.rank == ev.worn[1] and followed.rank != followed.worn[1])


class WornPrefixes:
    """(input, rank) of the prefixes the launchers' own lines wore."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, tuple]] = set()   # (input, Event.worn)
        self.lines: dict[tuple[str, int | None], tuple[str, tuple]] = {}   # (input, line) -> what it noted

    def note(self, ev: Event) -> None:
        if ev.worn is not None and ev.kind in KINDS and ev.data.get("who") in LAUNCHERS and len(self.seen) < 64:
            self.seen.add((ev.source, ev.worn))
            self.lines[(ev.source, ev.line)] = (ev.source, ev.worn)

    def rank_line(self, ev: Event) -> None:
        """`ev` (a rank's exception) stands on a line a launcher's event was read from too: no launcher's own
        line (a paste's hard-wrap guess, sources/unwrap.py, that joined the launcher's next line to it)."""
        noted = self.lines.pop((ev.source, ev.line), None)
        if noted is not None and noted not in self.lines.values():
            self.seen.discard(noted)

    def unpinned(self, ranks: set[int], origins: set[tuple[str, int, tuple | None]]) -> set[int]:
        """`ranks` without those whose every origin (rank_origin: input, rank, the prefix that gave it or
        None) is a prefix its input's launcher lines wore; a rank with no origin kept (a detector that
        added it from something else)."""
        out = set(ranks)
        for r in ranks:
            said = [(src, w) for src, r2, w in origins if r2 == r]
            if said and all(w is not None and (src, w) in self.seen for src, w in said):
                out.discard(r)
        return out

    def names_no_rank(self, ev: Event) -> bool:
        """Is `ev`'s rank only the prefix its input's launcher lines wore too?"""
        return ev.rank is not None and _from_worn(ev) and (ev.source, ev.worn) in self.seen

    def __bool__(self) -> bool:
        return bool(self.seen)
