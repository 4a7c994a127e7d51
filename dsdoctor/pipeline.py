"""The one pipeline: events -> detectors -> symptoms -> rules -> findings.

Every front door (log analysis, live hooks, the doctor) ends here, so a rule works the same
whatever produced the evidence. Log and live evidence comes in as events (`feed`); the
doctor's config lint and environment probe produce ready symptoms (`absorb`).
"""
from __future__ import annotations

from typing import Iterable

from .context import Context
from .detect import Detector, default_detectors
from .events import PLACED_KINDS, Event
from .findings import Finding, Symptom, order_findings
from .rules import RuleSet, make_finding
from .detect.failure import attempt_cut
from .detect.multinode import learn_hosts, line_host, tie_line_host
from .detect.progress import COUNTED_KINDS, InputProgress
from .detect.worn import WornPrefixes

HOST_KINDS = frozenset({"attach", "roll_call", "stall"})
MAX_LINE_HOSTS = 4096
# A launcher's line that names the rank whose process failed (DeepSpeed's launch.py 'exits with return
# code', torchelastic's failure record): the rank of a rank-less error above it, in the same input,
# when it names only one. The DeepSpeed launcher prints every rank's output unprefixed by default.
EXIT_KINDS = frozenset({"process_exit", "killed"})
EXIT_WHO = frozenset({"launcher", "torchelastic"})
RANK_FROM_EXIT = frozenset({"oom", "hardware"})     # errors of one process, not of the whole job


_PIPELINE_KINDS = frozenset({"context", "rerun", "rank_head", "paste_block"}) | HOST_KINDS | PLACED_KINDS | EXIT_KINDS

_BAD_DATA = (TypeError, ValueError, OverflowError, KeyError, AttributeError, IndexError)
_EVENT_FILES = (".jsonl", ".jsonl.gz")
# A live step's events as the hooks make them (hooks.expand_pending), in this order: feed_step
STEP_KINDS = ("step", "lr", "loss", "grad_norm")


def _event_index(x: tuple) -> int:
    return x[0]


class Diagnoser:
    def __init__(self, context: Context | None = None, rules: RuleSet | None = None,
                 detectors: list[Detector] | None = None):
        self.context = context or Context()
        self.rules = rules or RuleSet.load()
        self.detectors = detectors if detectors is not None else default_detectors()
        # each input's progress, fed before the detectors that ask whether an input went on after an error
        self.progress = InputProgress()
        # prefixes the launchers' own lines wore: no rank (detect/worn.py); noted here, read by the Diagnoser
        # at finish() and by the detectors that tie lines by rank (failure, comm)
        self.worn = WornPrefixes()
        for d in self.detectors:               # the run facts (world size) some read at finish()
            d.use_context(self.context, self.progress, self.worn)
        self._by_kind: dict[str, list[Detector]] = {}
        for d in self.detectors:
            for k in d.kinds:
                self._by_kind.setdefault(k, []).append(d)
        # kind -> the bound feed methods of its detectors: feed() runs for every event (17,000 per
        # GiB of log, 4 per step live), so no attribute lookup per detector per event
        self._feeds: dict[str, tuple] = {k: tuple(d.feed for d in ds) for k, ds in self._by_kind.items()}
        for k in COUNTED_KINDS:
            self._feeds[k] = (self.progress.feed,) + self._feeds.get(k, ())
        # feed_step: the detectors that take any of a live step's kinds, in detector order
        self._step_feeds = tuple(d.feed_step for d in self.detectors if any(k in d.kinds for k in STEP_KINDS))
        self.symptoms: dict[tuple, Symptom] = {}
        self.seq = 0
        self.events_seen = 0
        self.bad_events = 0              # events-file events a detector could not use
        self.hosts: dict[int, str] = {}      # rank -> host label (detect/multinode.py learn_hosts)
        self.line_hosts: dict[tuple[str, int | None], str] = {}   # (source, line) of a failure -> its host
        self.failed_ranks: dict[str, dict[int, int | None]] = {}  # input -> rank a launcher said failed -> line
        self.reruns: list[int] = []          # seqs of a paste's prose opening a later attempt
        self.head_ranks: dict[str, set[int | None]] = {}   # input -> ranks its front-end's start-up lines named
        self.pasted: list[str] = []          # inputs with pasted prose around the log (an issue body: dsdoctor/issue)

    def feed(self, ev: Event) -> list[Finding]:
        """Feed one event; return findings for symptoms seen for the first time."""
        self.seq = seq = self.seq + 1
        self.events_seen += 1
        kind = ev.kind
        if kind in _PIPELINE_KINDS:          # the few kinds the pipeline itself reads (not the metrics)
            self._learn(ev, kind, seq)
        new: list[Finding] = []
        for feed in self._feeds.get(kind, ()):
            try:
                syms = feed(ev, seq)
            except _BAD_DATA:
                # An events file edited or damaged by hand ("ranks": "all", a 400-digit value):
                # that event is skipped for that detector. Only for events files, so a
                # detector bug on live or log events still shows.
                if not ev.source.endswith(_EVENT_FILES):
                    raise
                self.bad_events += 1
                continue
            if syms:                         # nearly always () or []
                for s in syms:
                    f = self._absorb(s)
                    if f:
                        new.append(f)
        return new

    def feed_step(self, evs: list[Event]) -> list[Finding]:
        """feed() of each of one live step's events (step, lr, loss, grad norm: STEP_KINDS, all of
        one input, rank, step, line, time and rank origin, none an end-of-run summary), with the same results:
        each detector takes the step in one call (Detector.feed_step) instead of one call per
        event through feed(), and the symptoms are absorbed in the order feed() would have made
        them (event, then detector). Four events per step live: the Diagnoser's dispatch was a
        third of its CPU per step (tests/test_detector_step_path.py compares the two paths).
        Any other list is fed event by event."""
        if len(evs) != 4:
            return [f for ev in evs for f in self.feed(ev)]
        a, b, c, d = evs
        step, src, rank, line, t = a.step, a.source, a.rank, a.line, a.time
        if not (a.kind == "step" and b.kind == "lr" and c.kind == "loss" and d.kind == "grad_norm"
                and step is not None and b.step == step and c.step == step and d.step == step
                and b.source == src and c.source == src and d.source == src
                and b.rank == rank and c.rank == rank and d.rank == rank
                and b.line == line and c.line == line and d.line == line
                and b.time == t and c.time == t and d.time == t
                and a.worn == b.worn == c.worn == d.worn and a.rank_from == b.rank_from == c.rank_from == d.rank_from
                and "summary" not in a.data and "summary" not in b.data and "summary" not in c.data
                and "summary" not in d.data and not src.endswith(_EVENT_FILES)):
            return [f for ev in evs for f in self.feed(ev)]
        return self.feed_usual_step(evs)

    def feed_usual_step(self, evs: list[Event]) -> list[Finding]:
        """feed_step() without its checks, for a caller that made the events in that shape (the
        live writer's usual step: live/session.py Prewritten.usual)."""
        seq = self.seq + 1
        self.seq += 4
        self.events_seen += 4
        self.progress.feed(evs[0], seq)      # the other three: the same input and step, no rise
        found = None
        for feed in self._step_feeds:
            got = feed(evs, seq)
            if got:                          # nearly always ()
                if found is None:
                    found = []
                found += got
        if found is None:
            return []
        # by event; within one event in detector order, as feed() makes them (the sort is stable and
        # the detectors' symptoms were added in detector order)
        found.sort(key=_event_index)
        new = []
        for _, s in found:
            f = self._absorb(s)
            if f:
                new.append(f)
        return new

    def _learn(self, ev: Event, kind: str, seq: int) -> None:
        """What the pipeline keeps from an event besides its detectors: run facts, hosts, the
        starts of a paste's later attempts, the rank a launcher said failed."""
        if kind == "context":
            self.context.learn(ev.data)
        elif kind in HOST_KINDS:
            learn_hosts(ev, self.hosts)
        elif kind in PLACED_KINDS and (host := line_host(ev)):
            # the failures whose events carry the host their line was printed under: tied to the
            # rank, and a finding with no host for its ranks is placed by it (_hosted)
            tie_line_host(ev, host, self.hosts)
            if len(self.line_hosts) < MAX_LINE_HOSTS:
                self.line_hosts[(ev.source, ev.line)] = host
        elif kind == "rerun":
            self.reruns.append(seq)
        elif kind == "paste_block":
            if ev.source not in self.pasted:
                self.pasted.append(ev.source)
        elif kind == "rank_head" and len(self.head_ranks) < MAX_LINE_HOSTS:
            heads = self.head_ranks.setdefault(ev.source, set())
            if len(heads) < 2:
                heads.add(ev.data.get("head_rank"))
        if kind == "exception" and self.worn:
            self.worn.rank_line(ev)
        if kind in EXIT_KINDS:
            if ev.worn is not None:
                self.worn.note(ev)
            if ev.rank is not None and ev.data.get("who") in EXIT_WHO:
                self._failed_rank(ev)

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
        if not f.hosts and self.line_hosts:
            # no rank number (a Ray actor's line, a pod's), or ranks whose hosts the log never tied to
            # them (a rank's CUDA error beside its node's Xid in dmesg): the one host its evidence was printed on
            found = {self.line_hosts.get((e.source, e.line)) for e in f.evidence} - {None}
            if len(found) == 1:
                f.node = found.pop()
        return f

    def _failed_rank(self, ev: Event) -> None:
        d = ev.data
        code, sig = d.get("exitcode"), d.get("signal")
        own = (sig is None and isinstance(code, int) and code > 0) or sig not in (None, 1, 2, 15)
        if own and len(self.failed_ranks) < MAX_LINE_HOSTS:
            ranks = self.failed_ranks.setdefault(ev.source, {})
            if len(ranks) < 64:
                ranks.setdefault(int(ev.rank), ev.line)

    def _rank_from_exit(self, s: Symptom) -> None:
        """The one rank a launcher said failed, for a rank-less error printed above its line."""
        e = s.evidence[0]
        failed = self.failed_ranks.get(e.source)
        if failed and len(failed) == 1:
            rank, line = next(iter(failed.items()))
            if e.line is None or line is None or line > e.line:
                s.ranks.add(rank)

    def _rank_from_head(self, s: Symptom) -> None:
        """The rank a front-end's start-up line named (sources/formats/rank_head.py), for a rank-less
        finding of an input that is that one rank's output (one distinct head, and it proves a rank)."""
        heads = self.head_ranks.get(s.evidence[0].source)
        if heads and len(heads) == 1:
            rank = next(iter(heads))
            if rank is not None:
                s.ranks.add(rank)

    def finish(self) -> list[Finding]:
        for det in self.detectors:
            for s in det.finish():
                self._absorb(s)
        return self.findings()

    def log_end(self) -> dict | None:
        """How the logs' training ended (detect/failure.py FailureDetector.log_end), or None."""
        return next((e for d in self.detectors if hasattr(d, "log_end") and (e := d.log_end()) is not None), None)

    def findings(self) -> list[Finding]:
        names = self.context.names()
        out = []
        for s in self.symptoms.values():
            rule = self.rules.match(s, names)
            if rule:
                if s.origins and self.worn:      # a rank only a launcher-worn prefix gave is none (detect/worn.py)
                    s.ranks = self.worn.unpinned(s.ranks, s.origins)
                if not s.ranks and s.evidence and self.failed_ranks and rule.category in RANK_FROM_EXIT:
                    self._rank_from_exit(s)
                if not s.ranks and s.evidence and self.head_ranks:
                    self._rank_from_head(s)
                f = self._hosted(make_finding(rule, s, names))
                if not f.ranks and rule.category == "oom" and s.facts.get("device_label"):
                    # no rank: the device the allocator named ('GPU 3', 'NPU 3'; detect/memory.py)
                    f.title += f" ({s.facts['device_label']})"
                out.append(f)
        for det in self.detectors:          # several runs or several hosts' logs in one input
            if hasattr(det, "annotate"):
                det.annotate(out)
        ordered = order_findings(out)
        if self.reruns and attempt_cut(self.reruns, _failed(ordered)) is None:
            # order_findings dropped the later attempt's fallback (an unknown failure) for the earlier
            # attempt's specific finding: each attempt is a run of its own, ordered on its own
            cut = attempt_cut(self.reruns, [f.seq for f in out if f.severity in ("critical", "error")])
            if cut is not None:
                for f in out:
                    f.consequence_of = None      # set across the attempts by the first ordering
                return order_findings([f for f in out if f.seq > cut]) + order_findings([f for f in out if f.seq < cut])
        return last_attempt_first(ordered, self.reruns)


def _failed(findings: list[Finding]) -> list[int]:
    return [f.seq for f in findings if not f.consequence_of and f.severity in ("critical", "error")]


def last_attempt_first(findings: list[Finding], reruns: list[int]) -> list[Finding]:
    """A paste of two attempts ('after I changed X I now get'): the failures after the last such
    prose that has a failure on both sides come first (the earlier attempt's problem is the one the
    user already worked on); the order within each attempt stays."""
    cut = attempt_cut(reruns, _failed(findings))
    if cut is None:
        return findings
    return sorted(findings, key=lambda f: f.seq < cut)      # stable: the order within each part stays


def diagnose(events: Iterable[Event], context: Context | None = None,
             rules: RuleSet | None = None) -> list[Finding]:
    d = Diagnoser(context, rules)
    d.feed_all(events)
    return d.finish()
