"""Logs that hold several runs: the last one is diagnosed, an earlier one is history.

A training log kept across restarts (a chronicle, a Slurm output file appended to by a requeued
job, torchelastic restarting its worker group) holds runs one after the other: crash -> relaunch
-> 'successfully loaded checkpoint' -> a healthy end or a later crash. A run starts again where
its input, after training had made progress, shows

  - a start that is a resume or a restart by itself (`run_start` strong: a checkpoint loaded,
    transformers' 'Resuming training from checkpoint', torchelastic's 'will restart worker
    group', DeepSpeed loading its ZeRO partitions), or
  - after a failure with no progress before it (a paste that begins inside the failed run), a
    strong start or the paste's own words opening another attempt (`rerun`: 'attempt 2 ...'), or
  - any engine/trainer start (`run_start` weak, torch.distributed's set-up) or a step count that
    goes back, after something ended the training (an exception, a signal, an exit code, a
    scheduler's stop, a collective timeout), or when the new run resumes beyond the old one's
    first step;

and the new run then makes progress of its own. A start whose time goes back before the
training already seen is another host's or rank's log pasted after the first (one node's log
after the other), not a relaunch.

The findings whose evidence lies wholly before the last such start are about a run that is
over: `earlier_runs` turns them into info notes that say so (still listed, never the top
finding of a run that then went on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..events import Event
from ..findings import Finding, Symptom
from .base import Detector, tagged

PROGRESS = ("loss", "lr", "skipped", "throughput", "grad_norm", "step", "overflow")
ENDS = ("exception", "killed", "process_exit", "exit", "collective_timeout", "nccl_error")
NEW_RUN_STEPS = 2          # steps a new run needs before it counts
UNMARKED_RUN_STEPS = 5     # ... when no start line says so (a step count that went back): not a few buffered lines
PASTED_BACK_S = 60.0       # a start this much earlier than the training already seen: another host's log
MAX_SOURCES = 256


@dataclass
class _Start:
    seq: int
    line: int | None
    time: float | None
    strong: bool
    ended: bool                   # something ended the training before this start
    prev_time: float | None       # the last progress time before it
    prev_first: int | None        # the first step of the run before it
    after: int = 0                # distinct steps since
    first_after: int | None = None
    last_after: int | None = None
    marked: bool = True           # a start line (not only a step count that went back)
    prev_max: int | None = None   # the last step of the run before it
    from_scratch: bool = False    # the training loop's own count started over (step 1, a bar at 0%)
    last_line: int | None = None  # the line of the last loss without a step counted in `after`


@dataclass
class _Input:
    progressed: int = 0           # progress events of the current run
    last_time: float | None = None
    first_step: int | None = None
    max_step: int | None = None
    max_series: str | None = None   # the progress bar (tqdm desc|total) that counted max_step, None: a step line
    ended: bool = False           # an end event since the last progress
    rank_max: dict | None = None  # the last step of each rank (a count goes back on its own rank, not across ranks)
    cand: _Start | None = None
    boundary: _Start | None = None
    failed: bool = False          # an end event seen, with or without progress before it (a paste's cut head)


class RelaunchDetector(Detector):
    kinds = ("run_start", "phase_mark", "block_head", "rerun") + ENDS + PROGRESS

    def __init__(self) -> None:
        self.inputs: dict[str, _Input] = {}
        self.heads: dict[str, list[tuple[int, str]]] = {}     # input -> (line, name) of its block heads

    def _input(self, source: str) -> _Input | None:
        st = self.inputs.get(source)
        if st is None and len(self.inputs) < MAX_SOURCES:
            st = self.inputs[source] = _Input()
        return st

    def feed_step(self, evs: list[Event], seq: int):
        """feed() of a live step's four events: the step's, then the lr, loss and grad norm
        through feed()'s path for another event of the last step seen when it applies (it
        changes only last_time, to the same time, so it applies to all three)."""
        a = evs[0]
        got = self.feed(a, seq)
        st = self.inputs.get(a.source)
        if (st is not None and st.cand is None and not st.ended and st.max_step is not None and a.step == st.max_step
                and st.progressed):
            if a.time is not None:
                st.last_time = a.time
            return tagged(0, got) if got else ()
        out = tagged(0, got)
        for i in (1, 2, 3):
            out += tagged(i, self.feed(evs[i], seq + i))
        return out

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        st = self.inputs.get(ev.source) or self._input(ev.source)
        if st is None:
            return ()
        k = ev.kind
        if (k in PROGRESS and st.cand is None and not st.ended and st.max_step is not None
                and ev.step == st.max_step and st.progressed and not ev.data.get("summary")):
            # another event of the last step seen (a step's lr, loss and grad norm; most events):
            # below, only its time would change (`progressed` is only ever tested for > 0); a step
            # that went back may be the loop counting from its start again (_from_scratch)
            if ev.time is not None:
                st.last_time = ev.time
            return ()
        if k == "block_head":
            # another host's log pasted after this one: its start lines and steps are not a relaunch
            heads = self.heads.setdefault(ev.source, [])
            if ev.line is not None and len(heads) < 256:
                heads.append((ev.line, str(ev.data.get("name"))))
            boundary = st.boundary
            st.__init__()
            st.boundary = boundary
            return ()
        if k in PROGRESS:
            if ev.data.get("summary"):
                return ()
            if ev.step is None:          # a skipped fp16 step, a loss without its step: training went on
                st.progressed += 1
                st.ended = False
                c = st.cand
                if c is not None and c.marked and k == "loss" and ev.line is not None and ev.line != c.last_line:
                    # a start line, then losses that name no step (transformers' log dicts, a script's
                    # prints): each line one more logged step of the new run
                    c.last_line = ev.line
                    c.after += 1
                    if c.after >= NEW_RUN_STEPS:
                        if self._valid(c):
                            st.boundary = c
                        st.cand = None
                return ()
            c = st.cand
            # one rank's whole output after another's (block-buffered ranks flushed when they exit): its
            # steps are below where the other got, but its own count did not go back: no relaunch
            if st.rank_max is None:
                st.rank_max = {}
            own = st.rank_max.get(ev.rank)
            # (any(r != ev.rank for r in st.rank_max), without a generator per step: the keys are distinct)
            other_rank = ev.rank is not None and (own is None or own <= ev.step) and \
                (len(st.rank_max) > 1 or (bool(st.rank_max) and ev.rank not in st.rank_max))
            if ev.rank is not None and (own is None or ev.step > own) and len(st.rank_max) < 64:
                st.rank_max[ev.rank] = ev.step
            if c is None and st.progressed and (st.max_step is None or ev.step < st.max_step) and \
                    (st.ended or _from_scratch(st, ev)) and not other_rank:
                # training again after it ended, from a step count that went back (or the first
                # one), or the same loop counting from its start again: a new run with no start line
                c = st.cand = _Start(seq, ev.line, ev.time, False, st.ended, st.last_time, st.first_step, marked=False,
                                     prev_max=st.max_step, from_scratch=True)
            if c is not None:
                if c.last_after != ev.step:
                    c.after += 1
                    c.last_after = ev.step
                if c.first_after is None:
                    c.first_after = ev.step
                if c.after >= (NEW_RUN_STEPS if c.marked else UNMARKED_RUN_STEPS):
                    if self._valid(c):
                        st.boundary = c
                        st.first_step, st.max_step, st.progressed = c.first_after, ev.step, c.after
                    st.cand = None
            st.progressed += 1
            if st.first_step is None:
                st.first_step = ev.step
            if st.max_step is None or ev.step >= st.max_step:
                st.max_step, st.max_series = ev.step, ev.data.get("series")
            if ev.time is not None:
                st.last_time = ev.time
            st.ended = False
        elif k in ENDS:
            if k != "exit" or ev.data.get("exitcode"):
                st.ended = st.ended or st.progressed > 0
                st.failed = True
        elif k == "rerun":
            # the paste's own words opening another attempt ('attempt 2 (bf16 instead of fp16):') after a
            # failure: a start even when the failed attempt's progress was cut off the paste's head
            if st.failed and st.cand is None:
                st.cand = _Start(seq, ev.line, ev.time, False, True, st.last_time, st.first_step, prev_max=st.max_step)
        elif k in ("run_start", "phase_mark"):
            if k == "phase_mark":
                phase = ev.data.get("phase")
                if phase not in ("checkpoint_load", "dist_init"):
                    return ()
                strong = phase == "checkpoint_load"
            else:
                strong = bool(ev.data.get("strong"))
                if ev.data.get("how") == "elastic_restart":
                    st.ended = st.ended or st.progressed > 0
            # (a resume after a failure whose run's progress was cut off a paste's head is a start too)
            if (st.progressed or (strong and st.failed)) and (st.cand is None or st.cand.after == 0):
                if st.cand is None:
                    st.cand = _Start(seq, ev.line, ev.time, strong, st.ended or not st.progressed, st.last_time,
                                     st.first_step, prev_max=st.max_step)
                else:                       # the start lines of one launch: the first one, strong if any is
                    st.cand.strong = st.cand.strong or strong
                    st.cand.ended = st.cand.ended or st.ended
        return ()

    @staticmethod
    def _valid(c: _Start) -> bool:
        if c.time is not None and c.prev_time is not None and c.time < c.prev_time - PASTED_BACK_S:
            return False
        resumed = c.first_after is not None and c.prev_first is not None and c.first_after > c.prev_first
        # a start line, then the count from the start again (step 1, a bar at 0%) well below where the
        # run before it got: a relaunch from scratch, with no end line between (a log just cut off)
        again = c.first_after is not None and c.prev_first is not None and c.prev_max is not None and \
            c.first_after <= max(c.prev_first, 1) + 1 and c.prev_max >= c.first_after + UNMARKED_RUN_STEPS
        return c.strong or c.ended or resumed or again or c.from_scratch

    def boundaries(self) -> dict[str, _Start]:
        """input -> the start of its last run (inputs that hold one run are not listed)."""
        return {src: st.boundary for src, st in self.inputs.items() if st.boundary is not None}

    def annotate(self, findings: list[Finding]) -> None:
        """What the input's structure says about the findings: an earlier run's are history,
        and one host's block among several names where each happened."""
        earlier_runs(findings, self.boundaries())
        name_blocks(findings, {src: h for src, h in self.heads.items() if len(h) >= 2})


def _from_scratch(st: _Input, ev: Event) -> bool:
    """A step back to the count's start (step 1, tqdm's first frames) by the same counter that went
    furthest (the training bar, not an evaluation bar counting its own batches), well after it."""
    return st.first_step is not None and st.max_step is not None and ev.step <= max(st.first_step, 1) + 1 \
        and st.max_step >= ev.step + UNMARKED_RUN_STEPS and ev.data.get("series") == st.max_series


def earlier_runs(findings: list[Finding], starts: dict[str, _Start]) -> None:
    """Findings about a run that is over (all their evidence before their input's last run
    started) become info notes that say so."""
    if not starts:
        return
    for f in findings:
        if f.severity == "info" or not f.evidence:
            continue
        firsts = {e.source for e in f.evidence}
        if len(firsts) != 1:
            continue
        b = starts.get(next(iter(firsts)))
        if b is None or b.line is None or any(e.line is None or e.line >= b.line for e in f.evidence):
            continue
        f.severity, f.earlier_run = "info", True
        f.title = f"Earlier run (before the restart at line {b.line}): {f.title}"
        f.summary = (f"{f.summary} This was in an earlier run of this log: the run was started again "
                     f"at line {b.line} and went on training, so it is not what the last run is about; "
                     f"it is kept here as history.")


def name_blocks(findings: list[Finding], heads: dict[str, list[tuple[int, str]]]) -> None:
    """Several hosts' logs pasted one after the other, each under its own head line: a finding
    whose ranks name no host says in whose block its first evidence is."""
    if not heads:
        return
    for f in findings:
        if f.hosts or not f.evidence or f.severity == "info":
            continue
        e = f.evidence[0]
        hs = heads.get(e.source)
        if not hs or e.line is None:
            continue
        name = next((n for ln, n in reversed(hs) if ln < e.line), None)
        if name is None:
            continue
        # the block's host is the finding's host (JSON hosts / node) when all its evidence is in it
        if all(x.source == e.source and x.line is not None and
               next((n for ln, n in reversed(hs) if ln < x.line), None) == name for x in f.evidence):
            if f.ranks:
                f.hosts = {r: name for r in f.ranks}
            elif not f.node:
                f.node = name
        f.title = f"{f.title} (in the log of {name})"
        f.summary = f"{f.summary} Its evidence is in the log of {name} (the block under '{name}' in this input)."
