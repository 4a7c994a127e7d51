"""The one pipeline: events -> detectors -> symptoms -> rules -> findings.

Every front door (log analysis, live hooks, the doctor) ends here, so a rule works the same
whatever produced the evidence. Log and live evidence comes in as events (`feed`); the
doctor's config lint and environment probe produce ready symptoms (`absorb`).
"""
from __future__ import annotations

from typing import Iterable

from .context import Context
from .detect import Detector, default_detectors
from .events import Event
from .findings import Finding, Symptom, order_findings
from .rules import RuleSet, make_finding
from .detect.multinode import learn_hosts

HOST_KINDS = frozenset({"attach", "roll_call", "stall"})


_BAD_DATA = (TypeError, ValueError, OverflowError, KeyError, AttributeError, IndexError)
_EVENT_FILES = (".jsonl", ".jsonl.gz")


class Diagnoser:
    def __init__(self, context: Context | None = None, rules: RuleSet | None = None,
                 detectors: list[Detector] | None = None):
        self.context = context or Context()
        self.rules = rules or RuleSet.load()
        self.detectors = detectors if detectors is not None else default_detectors()
        for d in self.detectors:
            if hasattr(d, "use_context"):     # detectors that read run facts (world size) at finish()
                d.use_context(self.context)
        self._by_kind: dict[str, list[Detector]] = {}
        for d in self.detectors:
            for k in d.kinds:
                self._by_kind.setdefault(k, []).append(d)
        self.symptoms: dict[tuple, Symptom] = {}
        self.seq = 0
        self.events_seen = 0
        self.bad_events = 0              # events-file events a detector could not use
        self.hosts: dict[int, str] = {}      # rank -> host label (detect/multinode.py learn_hosts)

    def feed(self, ev: Event) -> list[Finding]:
        """Feed one event; return findings for symptoms seen for the first time."""
        self.seq = seq = self.seq + 1
        self.events_seen += 1
        kind = ev.kind
        if kind == "context":
            self.context.learn(ev.data)
        elif kind in HOST_KINDS:
            learn_hosts(ev, self.hosts)
        new: list[Finding] = []
        for det in self._by_kind.get(kind, ()):
            try:
                syms = det.feed(ev, seq)
            except _BAD_DATA:
                # An events file edited or damaged by hand ("ranks": "all", a 400-digit value):
                # that event is skipped for that detector. Only for events files, so a
                # detector bug on live or log events still shows.
                if not ev.source.endswith(_EVENT_FILES):
                    raise
                self.bad_events += 1
                continue
            for s in syms:
                f = self._absorb(s)
                if f:
                    new.append(f)
        return new

    def feed_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.feed(ev)

    def absorb(self, symptoms: Iterable[Symptom]) -> list[Finding]:
        """Take symptoms a front door found without events (the doctor's config and
        environment problems, config/diagnose.py); return findings for the new ones."""
        return [f for f in (self._absorb(s) for s in symptoms) if f]

    def _absorb(self, s: Symptom) -> Finding | None:
        k = (s.name, s.key)
        old = self.symptoms.get(k)
        if old is not None:
            old.merge(s)
            return None
        self.symptoms[k] = s
        rule = self.rules.match(s, self.context.names())
        return self._hosted(make_finding(rule, s, self.context.names())) if rule else None

    def _hosted(self, f: Finding) -> Finding:
        """Name the hosts of the finding's ranks, when the run said them (multi-node runs)."""
        if self.hosts:
            f.hosts = {r: self.hosts[r] for r in f.ranks if r in self.hosts}
        return f

    def finish(self) -> list[Finding]:
        for det in self.detectors:
            for s in det.finish():
                self._absorb(s)
        return self.findings()

    def findings(self) -> list[Finding]:
        names = self.context.names()
        out = []
        for s in self.symptoms.values():
            rule = self.rules.match(s, names)
            if rule:
                out.append(self._hosted(make_finding(rule, s, names)))
        for det in self.detectors:          # several runs or several hosts' logs in one input
            if hasattr(det, "annotate"):
                det.annotate(out)
        return order_findings(out)


def diagnose(events: Iterable[Event], context: Context | None = None,
             rules: RuleSet | None = None) -> list[Finding]:
    d = Diagnoser(context, rules)
    d.feed_all(events)
    return d.finish()
