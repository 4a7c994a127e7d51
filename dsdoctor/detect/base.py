"""What every detector is: `Detector` (kinds, feed, finish), `symptom_from` and `symptom_at_end`.

Its own module so that the detectors import it and the list of detectors
(detect/__init__.py) imports them, without a cycle.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ..events import Event
from ..findings import Evidence, Symptom
from .worn import rank_origin


class Detector:
    kinds: tuple[str, ...] = ()
    context = None        # the run's Context, given by the Diagnoser (use_context)
    progress = None       # each input's step advances (detect/progress.py InputProgress), the same
    worn = None           # the prefixes the launchers' own lines wore (detect/worn.py WornPrefixes), the same

    def use_context(self, context, progress=None, worn=None) -> None:
        """The run context the Diagnoser keeps (--world-size, --config, the log's context lines), and
        the progress counter and worn prefixes it feeds before its detectors."""
        self.context = context
        self.progress = progress
        self.worn = worn

    def known_world_size(self) -> int | None:
        """The run's world size as the context knows it at this point (None: not said)."""
        ws = self.context.facts.get("world_size") if self.context is not None else None
        return ws if isinstance(ws, int) and ws > 0 else None

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        return ()

    def feed_step(self, evs: list[Event], seq: int) -> Sequence[tuple[int, Symptom]]:
        """One live step's events at once (Diagnoser.feed_step: step, lr, loss, grad norm of one
        input, rank, step, line and time; the i-th has seq + i): what feed() of each event of
        this detector's kinds would do, its symptoms as (i, symptom). Detectors on the live
        step path override it with fewer calls (the same state after, tests/test_detector_step_path.py)."""
        out: list[tuple[int, Symptom]] = []
        kinds = self.kinds
        for i, ev in enumerate(evs):
            if ev.kind in kinds:
                syms = self.feed(ev, seq + i)
                if syms:
                    out += [(i, s) for s in syms]
        return out

    def finish(self) -> Iterable[Symptom]:
        return ()


def tagged(i: int, syms: Iterable[Symptom]) -> list[tuple[int, Symptom]]:
    """feed()'s symptoms of a step's i-th event, as feed_step returns them."""
    return [(i, s) for s in syms] if syms else []


def symptom_from(ev: Event, seq: int, name: str, /, key: tuple = (), **facts) -> Symptom:
    # positional-only: an event's data may hold a 'name' fact (loss name)
    s = Symptom(name=name, facts=facts, seq=seq, time=ev.time, key=key)
    if ev.rank is not None:
        s.ranks.add(ev.rank)
        s.origins.add(rank_origin(ev))
    if ev.step is not None:
        s.steps.append(ev.step)
    s.add_evidence(ev)
    return s


def symptom_at_end(first: tuple[int, Event], name: str, ranks: Iterable[int], evidence: Iterable[Evidence],
                   last_step: int | None, /, **facts) -> Symptom:
    """A symptom read from several events once the input is read (a rank that left early, ranks that
    wait apart, a hang the log cannot show): dated by `first` (seq, event), keyed by its name alone,
    at the last step the run reached. Not `symptom_from`: that one takes the event's own rank, step
    and line, where these take the ranks and lines of all their events and the run's last step."""
    seq, ev = first
    s = Symptom(name=name, facts=facts, seq=seq, time=ev.time, key=(name,))
    s.ranks.update(ranks)
    s.evidence.extend(evidence)
    if last_step is not None:
        s.steps.append(last_step)
    return s
