"""The rank a line prefix put on a line, when a launcher's own line wears the same prefix: no rank.

srun --label puts the task number before every line of a node's launcher and of all its ranks; a
paste may put '[rank3]: ' (or its own decoration) before every line. The launcher is no rank, so a
prefix its own lines wear (sources/lines.py: Event.worn, Event.rank_from) says which task or paste
printed a line, not which rank: a traceback whose only rank is that prefix is some rank's. Rank
numbers the message itself gave ('[Rank 1]', a launcher's '--local_rank=1', a file named rank1.log)
stay. Used by the detectors that tie lines by rank (detect/failure.py, detect/comm.py).
"""
from __future__ import annotations

from ..events import Event
from ..sources.lines import WORN

# the launchers whose own lines a node's label or a paste's prefix may wear (sources/formats/launcher.py)
LAUNCHERS = ("launcher", "torchelastic")
KINDS = ("process_exit", "killed")      # the launchers' events that carry the prefix their line wore


class WornPrefixes:
    """(input, rank) of the prefixes the launchers' own lines wore."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, tuple[str, int]]] = set()   # (input, (FROM_PREFIX or FROM_LABEL, rank))

    def note(self, ev: Event) -> None:
        if ev.worn is not None and ev.kind in KINDS and ev.data.get("who") in LAUNCHERS and len(self.seen) < 64:
            self.seen.add((ev.source, ev.worn))

    def names_no_rank(self, ev: Event) -> bool:
        """Is `ev`'s rank only the prefix its input's launcher lines wore too?"""
        return ev.rank is not None and ev.rank_from in WORN and (ev.source, (ev.rank_from, ev.rank)) in self.seen

    def __bool__(self) -> bool:
        return bool(self.seen)
