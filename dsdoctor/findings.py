"""Symptoms (what detectors saw) and Findings (what a rule concluded from them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .expr import ranks_text

CATEGORIES = ("oom", "host_oom", "nan_loss", "loss_scale_collapse", "comm_stall", "nccl_error",
              "straggler", "config_error", "lr_schedule", "hardware", "environment", "other")
SEVERITIES = ("critical", "error", "warning", "info")
MAX_EVIDENCE = 8          # per symptom: enough to convince, not a dump of 512 ranks


def clip(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters in its middle: a long line's decisive words sit at its
    start (the error's name) or at its end (the exit code after a launcher's whole command line,
    the message after a long prefix), rarely in between."""
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[:limit - tail] + " … " + text[-tail:]


@dataclass(slots=True)
class Evidence:
    source: str
    line: int | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "text": self.text}


@dataclass
class Symptom:
    """A detector's output: something seen, with its facts, ranks, steps and evidence.

    `key` groups symptoms that are the same thing seen on several ranks (the same OOM
    printed by 512 ranks becomes one symptom with ranks 0-511).
    """
    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    ranks: set[int] = field(default_factory=set)
    steps: list[int] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    seq: int = 0                 # order of the first event behind it (earlier = likelier cause)
    time: float | None = None
    key: tuple = ()
    count: int = 1
    # where its ranks came from (detect/worn.py rank_origin: input, rank, a worn prefix or None), for the
    # Diagnoser to drop a rank that only a prefix its input's launcher lines wore too gave
    origins: set = field(default_factory=set)

    def add_evidence(self, ev) -> None:
        if ev is None or ev.text is None:
            return
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append(Evidence(ev.source, ev.line, ev.text))

    def merge(self, other: "Symptom") -> None:
        self.ranks |= other.ranks
        for s in other.steps:
            if s not in self.steps and len(self.steps) < 64:
                self.steps.append(s)
        for e in other.evidence:
            if len(self.evidence) < MAX_EVIDENCE and e not in self.evidence:
                self.evidence.append(e)
        self.count += other.count
        if other.origins and len(self.origins) < 64:
            self.origins |= other.origins
        if other.seq < self.seq:
            self.seq, self.time = other.seq, other.time
        for k, v in other.facts.items():
            if self.facts.get(k) is None:       # a fact unknown at the first sighting is learnt later
                self.facts[k] = v

    def names(self) -> dict[str, Any]:
        """Values a rule's expressions can use, besides the run context."""
        d = dict(self.facts)
        d.update(ranks=sorted(self.ranks), ranks_text=ranks_text(self.ranks),
                 nranks=len(self.ranks), steps=sorted(self.steps),
                 first_step=min(self.steps) if self.steps else None, count=self.count)
        return d


@dataclass
class Fix:
    title: str
    config_patch: dict[str, Any] | None = None
    env: dict[str, str] | None = None
    advice: str | None = None
    complete: bool = True          # False: some values need the user's config (--config)
    validated: bool | None = None  # DeepSpeed's own config parser accepted the patched config
    validation_error: str | None = None
    diff: str | None = None        # unified diff against the user's config, when given

    def to_dict(self) -> dict[str, Any]:
        d = {"title": self.title, "config_patch": self.config_patch, "env": self.env,
             "advice": self.advice}
        if not self.complete:
            d["complete"] = False
        if self.validated is not None:
            d["validated"] = self.validated
        if self.validation_error:
            d["validation_error"] = self.validation_error
        return d


@dataclass
class Finding:
    rule: str
    category: str
    severity: str
    title: str
    summary: str
    ranks: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    seq: int = 0
    time: float | None = None
    explains: tuple[str, ...] = ()          # categories / rule ids this finding can cause
    consequence_of: str | None = None       # set when another finding explains this one
    key: str | None = None                  # dotted config key (config findings)
    source_ref: str | None = None           # where the rule's advice comes from
    fallback: bool = False                  # a generic failure finding: dropped when a specific one explains the run
    hosts: dict[int, str] = field(default_factory=dict)   # rank -> host label (multi-node runs)
    node: str | None = None                 # the host of a finding with no rank number (a Ray worker's ip)
    earlier_run: bool = False               # about a run this log restarted after: made an info note
    waited_for: tuple[int, ...] = ()        # a collective timeout's ranks the others waited for (detect/comm.py suspects)

    @property
    def ranks_text(self) -> str:
        return ranks_text(self.ranks)

    @property
    def steps_text(self) -> str:
        """'step 12' or 'steps 12..40 (5 seen)': the finding's steps as the reports (console, HTML) say them."""
        st = self.steps
        return f"step {st[0]}" if len(st) == 1 else f"steps {st[0]}..{st[-1]} ({len(st)} seen)"

    def to_dict(self) -> dict[str, Any]:
        d = {"rule": self.rule, "category": self.category, "severity": self.severity,
             "title": self.title, "summary": self.summary, "ranks": self.ranks,
             "steps": self.steps, "evidence": [e.to_dict() for e in self.evidence],
             "fixes": [f.to_dict() for f in self.fixes]}
        if self.key is not None:
            d["key"] = self.key
        if self.consequence_of:
            d["consequence_of"] = self.consequence_of
        if self.hosts:
            d["hosts"] = {str(r): h for r, h in sorted(self.hosts.items())}
        if self.node:
            d["node"] = self.node
        return d

    @property
    def hosts_text(self) -> str:
        """'vm1 (node 0): rank 0; vm2 (node 1): rank 1' — the hosts of the finding's ranks."""
        by: dict[str, list[int]] = {}
        for r, h in sorted(self.hosts.items()):
            by.setdefault(h, []).append(r)
        return "; ".join(f"{h}: rank{'s' if len(rs) > 1 else ''} {ranks_text(rs)}" for h, rs in by.items())


_SEV_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def order_findings(findings: list[Finding]) -> list[Finding]:
    """Most likely root cause first.

    A finding whose rule `explains` another's category (an OOM explains the NCCL timeouts
    that follow it on the other ranks; an ECC error explains a later 'CUDA error: out of
    memory') is placed before it, and the other is marked as its consequence. Then by
    severity, then by what happened first.

    A fallback finding (a failure no specific rule knows, the failure-* rules) is dropped when a
    specific error-level finding stands as a root cause (that one explains how the run ended),
    or when a specific finding of any severity quotes the fallback's decisive line.
    """
    # Specific findings explain first: a generic fallback ("the run failed") explains the
    # timeouts a failure causes, but not a specific finding that names the failing rank itself.
    # A rule that names another rule in `explains` claims it before any rule that only names its category
    # (two comm_stall rules that explain each other by category: the one naming the other wins).
    for explainers in ([f for f in findings if not f.fallback], [f for f in findings if f.fallback]):
        for by_id in (True, False):
            for g in findings:
                for f in explainers:
                    if f is g or f.consequence_of or g.consequence_of:
                        continue
                    if (g.rule in f.explains or (not by_id and g.category in f.explains)) and _not_after(f, g) \
                            and _same_ranks_waited_for(f, g):
                        g.consequence_of = f.rule
    if any(f.fallback for f in findings):
        specific = [f for f in findings if not f.fallback and f.severity != "info"]
        if any(not f.consequence_of and f.severity in ("critical", "error") for f in specific):
            findings = [f for f in findings if not f.fallback]
        else:           # a specific rule that read the same line knows it better: a problem, or an
            # earlier run's problem made a note (not a note by nature: the log's end is more than a calibration)
            seen = {(e.source, e.line) for f in findings if not f.fallback and (f.severity != "info" or f.earlier_run)
                    for e in f.evidence}
            findings = [f for f in findings if not (f.fallback and f.evidence
                                                    and (f.evidence[0].source, f.evidence[0].line) in seen)]
        kept = {f.rule for f in findings}
        for f in findings:      # a consequence of a fallback dropped for quoting the same line stands alone
            if f.consequence_of and f.consequence_of not in kept:
                f.consequence_of = None
    return sorted(findings, key=lambda f: (f.consequence_of is not None,
                                           _SEV_ORDER.get(f.severity, 9), f.seq))


def _same_ranks_waited_for(f: Finding, g: Finding) -> bool:
    """A timeout that names the ranks the others waited for is explained by what happened on one
    of them, not by a finding about other ranks only (a rank slow at step 100 does not explain
    the wait for another rank that never came). Only for a slow rank (straggler): an OOM, a GPU fault or a
    crash explains the timeouts it caused even when the suspects were guessed from what a cut paste left, or
    the fault's rank is a prefix a paste put on the kernel's line."""
    return not (f.category == "straggler" and g.waited_for and f.ranks and not set(f.ranks) & set(g.waited_for))


def _not_after(f: Finding, g: Finding) -> bool:
    """f could have caused g. With timestamps on both, f must not come later; without them
    (one log file per rank, read one after the other) the input order says nothing, except
    between two findings that explain each other (a loss-scale collapse and a NaN loss) read
    from the same input: there the one written first is the cause."""
    mutual = (f.category in g.explains or f.rule in g.explains) and f.evidence and g.evidence \
        and f.evidence[0].source == g.evidence[0].source
    if f.time is not None and g.time is not None:
        # the second of slack is for clocks of other hosts; one process's lines that explain each other
        # (a collapse of the scale 40 ms before the first inf loss) are ordered by their own clock
        return (f.time, f.seq) <= (g.time, g.seq) if mutual else f.time <= g.time + 1.0
    if mutual:
        return f.seq <= g.seq
    return True


def worst_severity(findings: list[Finding]) -> str | None:
    return min((f.severity for f in findings), key=lambda s: _SEV_ORDER[s], default=None)
