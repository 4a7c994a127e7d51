"""The pipeline over a log text, for tests of recognisers and detectors together: its events,
its findings (the built-in rules, loaded once), and its top problem."""
from __future__ import annotations

from dsdoctor.events import Event
from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()


def events(text: str, kind: str | None = None) -> list[Event]:
    return [e for e in events_from_text(text) if kind is None or e.kind == kind]


def findings(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return d.finish()


def top(text: str):
    """The first finding above info, or None (healthy)."""
    fs = [f for f in findings(text) if f.severity != "info"]
    return fs[0] if fs else None
