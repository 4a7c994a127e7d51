"""How a run ended: a failed run is never reported healthy.

Evidence of a failure is generic: the exception line that ends a Python traceback (any type),
a launcher's exit and kill lines, a signal, a non-zero exit code. At the end of the input this
detector picks the decisive piece and says what it knows:

  failure         the decisive exception (causes before consequences: the one rank that raised a
                  ValueError, not the seven that then lost their NCCL peer; the first of a chain
                  that 'During handling ...' piles up, the last of one that 'raise ... from' wraps),
                  its family (detect/families.py), rank, phase and step; or, without a traceback,
                  the signal or exit code. Rules named failure-* (rules/other.yaml and each category's file) turn it into a finding that
                  is shown only when no specific rule explains the run (Finding.fallback).
  (none)          when dsdoctor's watchdog ended the run (--on-stall abort: a `stall` event with
                  abort, every rank exiting with WATCHDOG_EXIT_CODE), the exit codes it caused, the
                  command's code that repeats them and the launcher's wrapper errors
                  (ChildFailedError, accelerate's CalledProcessError) are not a failure of their own:
                  the stall finding is what ended the run, and the launcher stopping the other
                  ranks is not a rank that vanished. A real cause stays (an exception of the
                  script, a SIGKILL, another exit code).
  host_oom        a rank killed by SIGKILL (or vanished without any traceback), weighed: what the
                  run was doing (checkpoint load, ZeRO-Offload partitions, model load), DeepSpeed's
                  host-memory readings, kernel OOM lines; `confidence` and `why` say how sure.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

from ..events import Event
from ..sources.lines import DATED
from ..findings import Evidence, Finding, Symptom
from .base import Detector
from .families import CKPT_MISSING, DEVICE_ASSERT, Family, classify
from .ds_misuse import zero3_empty_checkpoint
from .zero3_misuse import grad_read_family, missing_keys_only
from .quiet_end import Waits, quiet_end
from .early_exit import all_spawned_done, local_peer_returned, rank_left_early
from .rank_waits import ranks_away, ranks_wait_apart
from .sdpa_refusal import SdpaRefusals, refusal_facts
from .progress import SURVIVED_STEPS

MAX_GROUPS = 2000           # distinct exception chains kept (first ones); a crash loop beyond that adds nothing
HEAVY_PHASES = {"model_load": "while loading the model weights (every rank holds a full copy in host RAM)",
                "checkpoint_load": "while loading a checkpoint (optimizer states are read into host RAM on every rank)",
                "zero_init": "while DeepSpeed built the ZeRO partitions (with offload: fp32 master weights and "
                             "optimizer states are allocated in host RAM)",
                "optimizer_init": "while the optimizer states were allocated",
                "checkpoint_convert": "while zero_to_fp32 rebuilt the fp32 model from a ZeRO checkpoint (in host RAM, "
                                      "outside training)"}
PHASE_TEXT = {**HEAVY_PHASES, "init_done": "after DeepSpeed's initialisation, before the first logged step",
              "op_build": "while building a DeepSpeed op", "init": "during deepspeed.initialize",
              "dist_init": "while torch.distributed was set up (the process group's rendezvous and first collectives), "
                           "before the model and optimizer were built",
              "forward": "in the forward pass", "backward": "in the backward pass", "step": "in the optimizer step",
              "zero3_fetch": "while ZeRO-3 gathered parameters", "checkpoint_save": "while saving a checkpoint",
              "eval": "during evaluation", "generate": "while generating text (model.generate)", "inference_init": "while DeepSpeed-Inference placed the model on the GPUs",
              "vllm_engine": "inside the vLLM engine (generation, not the DeepSpeed-trained model)"}
SIGNALS = {1: "SIGHUP", 2: "SIGINT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL",
           11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"}
EXTERNAL = {1, 2, 15}       # stop requests from outside (a user, the scheduler's time limit)
WATCHDOG_EXIT_CODE = 86     # dsdoctor/live/watchdog.py STALL_EXIT_CODE: --on-stall abort ended the rank
# A run stopped from outside after this long without progress (and at least HUNG_INTERVALS of its
# own step intervals) was hung: the stop is what a person or the scheduler did about it.
HUNG_MIN_S = 600.0
HUNG_INTERVALS = 20
# With no progress line at all, a stop this long after the last start-up mark (phases.py), with
# nothing after it, is a hang at start-up: longer than torch's default process-group timeout.
HUNG_START_S = 1800.0
# A progress bar with no time of its own (tqdm, Lightning) is placed in time by its elapsed
# counter from the last time the log stated before its first frame (a `date` echoed by the job
# script, a timestamped start-up line): the bar may have started up to this much later (model
# load, data set-up), so a hang is only called when the silence is this much longer too.
BAR_START_ALLOWANCE_S = 1800.0
PROGRESS_KINDS = frozenset(("step", "loss", "throughput", "timers", "skipped", "grad_norm", "lr"))


def attempt_cut(reruns: list[int], failed: list[int]) -> int | None:
    """Where a paste's last attempt starts: the last prose opening another attempt ('after I
    changed X I now get', sources/formats/paste.py) with a failure on both sides of it (both given
    as event sequence numbers), or None. The failure detector keeps the exceptions after it; the
    pipeline (pipeline.last_attempt_first) ranks the findings after it first."""
    return next((r for r in reversed(reruns) if any(s < r for s in failed) and any(s > r for s in failed)), None)


CUDA_HEAD_CUT = "(CUDA error, its first line cut)"     # formats/traceback.py cuda_error_without_its_line


def _told(groups: list["_Group"]) -> set[tuple]:
    """(type, message) of the groups whose decisive exception has a known family."""
    return {(ev.data.get("type"), ev.data.get("message")) for ev, fam in (g.decisive() for g in groups)
            if fam.name != "other"}


def _bare_echo(g: "_Group", told: set[tuple]) -> bool:
    """An exception line without its frames (a paste cut inside that rank's traceback, 'AssertionError')
    that another rank raised alike with frames that name its family (`told`, from _told: that group is
    never `g`, whose family is unknown): the same failure, told there."""
    ev, fam = g.decisive()
    if fam.name != "other" or ev.data.get("frames"):
        return False
    if ev.data.get("type") == CUDA_HEAD_CUT:
        # torch's CUDA advice lines whose 'CUDA error: ...' line was cut (one rank's traceback cut at the
        # paste's top): the CUDA error another rank printed whole is that failure
        return any(str(m or "").startswith("CUDA error") or "CUDA error: " in str(m or "") for _, m in told)
    return (ev.data.get("type"), ev.data.get("message")) in told


def _short_name(data: dict) -> str:
    """An exception's short name: a log's traceback gives `name`; a live hook's event has only
    `type` (live/hooks.py), which was listed as 'None' beside the log's names."""
    return str(data.get("name") or str(data.get("type") or "?").rsplit(".", 1)[-1])


@dataclass
class _Group:
    """One exception chain on one rank of one input."""
    seq: int
    rank: int | None
    members: list[tuple[Event, Family]] = field(default_factory=list)
    link: str | None = None       # 'cause' (raise from), 'context' (during handling), 'group' (PEP 654)
    advances_at: int = 0          # steps its input had made when it was raised
    lines_at: int | None = None   # progress lines its input had printed then (None: cut off, placed later)
    details: list[Event] = field(default_factory=list)   # exception_detail: the lines its message went on with

    def decisive(self) -> tuple[Event, Family]:
        # 'raise X from e': the last names what failed, the first why; keep the one whose family
        # says more (a known family over 'other'), else the last. 'During handling': the first.
        if len(self.members) > 1 and self.members[-1][1].name == "interrupt":
            # Ctrl-C while the script was handling an error: the error is what failed, unless it is
            # itself a consequence (a lost peer: the Ctrl-C stopped a hang, detect/comm.py reads it)
            rest = _Group(self.seq, self.rank, self.members[:-1], self.link).decisive()
            if rest[1].weight >= self.members[-1][1].weight:
                return rest
        if self.link == "group":
            # an exception group: its sub-exceptions say what failed, the first of the best-known family
            subs = self.members[1:] or self.members
            return max(subs, key=lambda m: (m[1].weight, m is subs[0]))
        if self.link == "context":
            return max(self.members[:1] + self.members[1:], key=lambda m: (m[1].weight, m is self.members[0]))
        known = [m for m in self.members if m[1].name != "other"]
        return (known or self.members)[-1]

    @property
    def weight(self) -> int:
        return max(f.weight for _, f in self.members)


def _error_line_family(message: str) -> tuple[str, str | None]:
    """The family an error line's words name, and why (a rule may know it: libgomp's 'Thread creation
    failed' is the same limit as CPython's "can't start new thread"); 'other' when they name none."""
    fam = classify("error_line", message)
    return ("other", None) if fam.category == "other" else (fam.name, fam.why)


def _evidence(ev: Event, text: str | None = None) -> Evidence:
    t = ev.text if ev.text is not None else text
    return Evidence(ev.source, ev.line, t or "")


class FailureDetector(Detector):
    kinds = ("exception", "killed", "process_exit", "exit", "phase_mark", "memory", "step", "loss",
             "throughput", "timers", "skipped", "grad_norm", "lr", "error_line", "stall", "node_exit",
             "collective_timeout", "nccl_error", "run_end", "rerun", "clock", "hang_said", "op_load", "store_wait", "nccl_warn",
             "exception_detail", "connect_retry", "nccl_init", "stop_ignored", "rank_done", "cuda_error",
             "sdpa_refusal", "run_start")

    def __init__(self) -> None:
        self.groups: dict[tuple, _Group] = {}
        self.detail_of: dict[tuple, _Group] = {}          # (source, line of an exception) -> its group
        self.ckpt_absent: Event | None = None     # DeepSpeed's 'Unable to find latest file at ...' (nothing resumed)
        self.kills: list[tuple[int, Event]] = []          # SIGKILL seen (any source)
        self.signals: list[tuple[int, Event]] = []        # other deaths by signal
        # a Windows faulthandler report ('Windows fatal exception: access violation') is printed for an exception
        # a later handler may still catch: a death only if its input made no progress after it
        self.maybe_handled: list[tuple[int, Event, int, int]] = []
        self.progress_lines: dict[str, int] = {}          # progress lines per input (HF's dicts carry no step)
        self.progress_line_at: dict[str, int | None] = {}
        self.exits: list[tuple[int, Event]] = []          # exit codes > 0
        self.killing: list[tuple[int, Event]] = []        # the launcher stopping its ranks
        self.kernel = False                               # the kernel / cgroup / Slurm said OOM
        # dsdoctor run's reading of the kernel's OOM-kill counters (live/oom_counter.py): True the
        # OOM killer acted during the run, False every counter unchanged, None not read
        self.oom_rose: bool | None = None
        self.oom_counted: tuple[int, Event] | None = None
        self.phase: tuple[str, int, str | None, Event] | None = None   # (phase, seq, detail, event)
        self.last_step: int | None = None
        self.step_seq = 0
        self.step_at: tuple[str, int | None] | None = None   # (source, line) of the last step
        self.host_percent: float | None = None
        self.host_percent_max: float | None = None
        self.error_lines: dict[str, tuple[int, Event, int, int]] = {}   # per input: its last error-level line
        self.ended: set[str] = set()                      # inputs whose run printed its normal end (train_runtime, ...)
        self.end_event: Event | None = None               # the last of those ends
        self.watchdog_abort = False                       # a stall verdict with --on-stall abort
        self.watchdog_timeouts = False                    # ProcessGroupNCCL's watchdog reported a timeout
        self.terminated: set[int | None] = set()          # ranks whose C++ exception called std::terminate
        self.progress_times: list[float] = []             # times of the last progress events (distinct)
        self.last_progress: Event | None = None           # the last progress event, timed or not
        self.launcher_named_first = False                 # mpirun/pdsh/srun named the rank that ended first
        self.aborts_echoed = False                        # a SIGABRT dropped as the echo of std::terminate
        # a paste's prose opening a later attempt: (seq, source, line)
        self.reruns: list[tuple[int, str | None, int | None]] = []
        # what a hang leaves when no error does (detect/quiet_end.py): a person's word, a wait at start-up
        self.hang_said: tuple[int, Event] | None = None
        self.op_wait: tuple[int, Event] | None = None     # 'Using DIR as PyTorch extensions root...' not yet loaded
        self.store_wait: tuple[int, Event] | None = None  # torch's store-based barrier still waiting
        self.connect_wait: tuple[int, Event] | None = None   # the c10d client still retrying the store
        # per process: the first and the last NCCL set-up line (seq, event) since its last 'Init COMPLETE'
        self.nccl_connecting: dict[str | None, tuple[tuple[int, Event], tuple[int, Event]]] = {}
        self.peer_lost: tuple[int, Event] | None = None   # NCCL's last warning that a peer closed the connection
        # workers that outlived a stop request (torchrun's 'Unable to shutdown process N via 2'): blocked in native code
        self.stop_ignored: list[tuple[int, Event]] = []
        self.rank_done: list[tuple[int, Event]] = []      # ranks the launcher saw return 0 (detect/early_exit.py)
        self.alone_exit: tuple[int, Event] | None = None  # torchrun's root cause, no other worker failed
        self.bus_error = False                            # a rank ended by SIGBUS (a launcher's exit code -7)
        # per input: the first CUDA kernel assert line ('... Assertion `srcIndex < srcSelectDimSize` failed.')
        self.kernel_asserts: dict[str, tuple[int, Event]] = {}
        self.sdpa = SdpaRefusals()                        # why scaled_dot_product_attention refused its kernels
        self.mark_seq = 0                                 # seq of the last progress or start-up mark
        self.first_timeout_seq: int | None = None         # the first watchdog timeout of the input(s)
        self.last_dated: float | None = None              # the last time the log stated (any event seen)
        # the last untimed progress bar: [series, anchor time, first elapsed, last elapsed, frames, start seen mid-run]
        self.bar: list | None = None
        # a scheduler's stop (seq) -> the last progress event and progress times before it (a log
        # that holds a later run goes on after the stop)
        self.progress_before: dict[int, tuple[Event | None, list[float]]] = {}

    def log_end(self) -> dict | None:
        """How the training in the logs ended, for a report that found nothing wrong: the last
        progress (step, where) and whether the run printed its own normal end after it. None
        when the logs hold no training progress at all."""
        last = self.last_progress
        if last is None:
            if self.phase is None:
                return None
            phase, _, detail, ev = self.phase          # start-up reached a phase, then no step came
            return dict(last_step=None, normal_end=False, phase=phase,
                        at=f"{ev.source}:{ev.line}" if ev.line else ev.source, text=detail)
        end = self.end_event
        normal = end is not None and end.source in self.ended
        if not normal:
            end = self._launcher_saw_all_done()
            normal = end is not None
        at = end if normal else last
        return dict(last_step=self.last_step, normal_end=normal,
                    at=f"{at.source}:{at.line}" if at.line else at.source, text=(at.text or "")[:200] or None)

    def _launcher_saw_all_done(self) -> Event | None:
        """The DeepSpeed launcher's last 'Process N exits successfully.' when every process it
        started on that host returned 0 after the last progress: the run's normal end, in the
        launcher's words (a script that prints no end of its own ends this way)."""
        done = [(seq, e) for seq, e in self.rank_done if seq > self.mark_seq]
        return done[-1][1] if done and all_spawned_done(done) else None

    # ------------------------------------------------------------ feeding
    def _progress(self, ev: Event, k: str, seq: int) -> tuple:
        """feed() for the progress kinds (nearly every event: 4 per step live), the same
        bookkeeping without the other kinds' tests."""
        step, d = ev.step, ev.data
        self.mark_seq = seq
        if step is not None:
            if self.last_step is None or step >= self.last_step:
                self.last_step = step
                self.step_seq = seq
                self.step_at = (ev.source, ev.line)
        if not d.get("summary"):
            self.last_progress = ev
            if self.ended:
                self.ended.discard(ev.source)             # progress after an end: the next run in one log
        elif len(self.ended) < 4096:
            self.ended.add(ev.source)
            self.end_event = ev
        t = ev.time
        if t is not None:
            if t >= DATED:
                self.last_dated = t
            pt = self.progress_times
            if not pt or t > pt[-1]:
                pt.append(t)
                if len(pt) > 64:
                    del pt[:32]
        if k == "throughput" and (t is None or t < DATED) and d.get("elapsed_s") is not None:
            el, b = d["elapsed_s"], self.bar
            if b is None or b[0] != d.get("series") or el < b[3]:
                self.bar = [d.get("series"), self.last_dated, el, el, 1, None]
            else:
                b[3], b[4] = el, b[4] + 1
        return ()

    def feed_step(self, evs: list[Event], seq: int) -> tuple:
        """feed() of a live step's four progress events: the first one's line counted, then
        _progress of the first and the last (the lr's and the loss's marks are overwritten by
        the grad norm's: the same input, step and time, no summary)."""
        a = evs[0]
        if a.line != self.progress_line_at.get(a.source):
            self.progress_line_at[a.source] = a.line
            self.progress_lines[a.source] = self.progress_lines.get(a.source, 0) + 1
        self._progress(a, "step", seq)
        # _progress of the grad norm (seq + 3), what it changes after the step's
        step, last = a.step, evs[3]
        self.mark_seq = seq + 3
        if step is not None and (self.last_step is None or step >= self.last_step):
            self.step_seq, self.step_at = seq + 3, (a.source, a.line)
        self.last_progress = last
        return ()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        k = ev.kind
        if k in PROGRESS_KINDS:
            if ev.line != self.progress_line_at.get(ev.source):      # one HF dict line: loss, grad_norm, lr
                self.progress_line_at[ev.source] = ev.line
                self.progress_lines[ev.source] = self.progress_lines.get(ev.source, 0) + 1
            return self._progress(ev, k, seq)
        if ev.step is not None and k not in ("exception", "killed", "process_exit", "exit"):
            if self.last_step is None or ev.step >= self.last_step:
                self.last_step = ev.step
                self.step_seq = seq
                self.step_at = (ev.source, ev.line)
        if k == "run_end" and len(self.ended) < 4096:   # (HF's summary is a progress kind: _progress)
            self.ended.add(ev.source)
            self.end_event = ev
        if ev.time is not None and ev.time >= DATED:
            self.last_dated = ev.time
            if self.bar is not None and k == "clock" and ev.data.get("mid_run"):
                self.bar[5] = ev.time - self.bar[3]    # a time stated while the bar runs: where it started
        if k == "phase_mark":
            self.mark_seq = seq
        if k == "rerun":
            self.reruns.append((seq, ev.source, ev.line))
        elif k == "hang_said":
            if self.hang_said is None:
                self.hang_said = (seq, ev)
        elif k == "op_load":
            self.op_wait = (seq, ev) if ev.data.get("state") == "wait" else None
        elif k == "store_wait":
            self.store_wait = (seq, ev)
        elif k == "connect_retry":
            self.connect_wait = (seq, ev)
        elif k == "nccl_init":
            proc, open_ = ev.data.get("proc"), self.nccl_connecting
            if ev.data.get("state") == "complete":
                open_.pop(proc, None)
            elif proc in open_:
                open_[proc] = (open_[proc][0], (seq, ev))
            elif len(open_) < 4096:
                open_[proc] = ((seq, ev), (seq, ev))
        elif k == "nccl_warn":
            if ev.data.get("cause") == "remote_exit":
                self.peer_lost = (seq, ev)
        elif k == "rank_done":
            self._keep(self.rank_done, seq, ev)
        elif k == "run_start":
            if ev.data.get("how") == "launcher_start" and self.rank_done:
                # a launcher starting again in the same input: the ranks its earlier launch saw return 0
                # ended that launch, they did not leave this one early (detect/early_exit.py)
                self.rank_done = [(s, e) for s, e in self.rank_done if e.source != ev.source]
        elif k == "stop_ignored":
            if ev.data.get("signal") in EXTERNAL:
                self._keep(self.stop_ignored, seq, ev)
        elif k == "node_exit" and ev.data.get("first"):
            self.launcher_named_first = True
        elif k == "error_line":
            # an error-level line after the run's own normal end is a complaint at shutdown (a logger,
            # a process group torn down), not how the run ended; a fatal one still is
            if ev.source in self.ended and ev.data.get("level") == "error":
                return ()
            if len(self.error_lines) < 4096 or ev.source in self.error_lines:
                self.error_lines[ev.source] = (seq, ev, self.progress.advances(ev.source),
                                               self.progress_lines.get(ev.source, 0))
        elif k == "exception":
            self._exception(ev, seq)
        elif k == "cuda_error":
            if ev.data.get("via") == "kernel_assert" and ev.source not in self.kernel_asserts \
                    and len(self.kernel_asserts) < 4096:
                self.kernel_asserts[ev.source] = (seq, ev)
        elif k == "sdpa_refusal":
            self.sdpa.note(ev, seq)
        elif k == "exception_detail":
            g = self.detail_of.get((ev.source, ev.data.get("of")))
            if g is not None and len(g.details) < 3:
                g.details.append(ev)
        elif k == "collective_timeout":
            # ProcessGroupNCCL's watchdog takes a timed-out rank down with std::terminate (torch
            # ProcessGroupNCCL.cpp: 'To avoid data inconsistency, we are taking the entire process
            # down'): that rank's SIGABRT (exit code -6) echoes the timeout even when the terminate lines
            # did not make it into the log; torch_npu's ProcessGroupHCCL the same ('[PTA]:To avoid data
            # inconsistency, we are taking the entire process down.', strings of libtorch_npu.so 2.14)
            if (ev.data.get("backend") or "nccl") in ("nccl", "hccl") and not ev.data.get("blocking"):
                self.terminated.add(ev.rank)
                self.watchdog_timeouts = True
                if self.first_timeout_seq is None:
                    self.first_timeout_seq = seq
        elif k == "nccl_error":
            # ProcessGroupNCCL's heartbeat monitor ends a rank whose watchdog hung the same way
            # (HeartbeatMonitor::runLoop -> terminateProcess, a LOG(FATAL) that aborts): SIGABRT
            if ev.data.get("cause") == "watchdog_hang":
                self.terminated.add(ev.rank)
                self.watchdog_timeouts = True
        elif k == "killed":
            sig = ev.data.get("signal")
            if ev.data.get("who") in ("kernel", "slurm", "ray_memory_monitor") or ev.data.get("memcg"):
                self.kernel = True
            if sig == 9:
                self._keep(self.kills, seq, ev)
            elif sig not in (7, None):
                self._keep(self.signals, seq, ev)
            elif sig == 7:
                self.bus_error = True       # detect/memory.py's /dev/shm finding says why: nothing vanished
        elif k == "process_exit":
            d = ev.data
            if d.get("reason") and len(self.progress_before) < 64:
                self.progress_before[seq] = (self.last_progress, self.progress_times[-16:])
            if d.get("signal") == 9:
                self._keep(self.kills, seq, ev)
            elif d.get("maybe_handled"):
                if len(self.maybe_handled) < 64:
                    self.maybe_handled.append((seq, ev, self.progress.advances(ev.source),
                                               self.progress_lines.get(ev.source, 0)))
            elif d.get("signal") is not None:
                self._keep(self.signals, seq, ev)
            elif d.get("exitcode"):
                self._keep(self.exits, seq, ev)
                if d.get("alone") and self.alone_exit is None:
                    self.alone_exit = (seq, ev)
            elif d.get("killing"):
                self._keep(self.killing, seq, ev)
        elif k == "exit":
            code = ev.data.get("exitcode")
            if isinstance(ev.data.get("oom_rose"), bool):
                self.oom_rose, self.oom_counted = ev.data["oom_rose"], (seq, ev)
            if isinstance(code, int) and code != 0:
                sig = -code if code < 0 else (code - 128 if 128 < code < 160 and code - 128 in SIGNALS else None)
                if isinstance(ev.data.get("signal"), int):
                    # dsdoctor run passed a stop on (a Ctrl-C, a scheduler's SIGTERM): whatever code the
                    # command ended with, even its own SIGKILL at a second Ctrl-C, it was stopped from outside
                    self._keep(self.signals, seq, ev)
                elif sig == 9:
                    self._keep(self.kills, seq, ev)
                elif sig is not None:
                    self._keep(self.signals, seq, ev)
                else:
                    self._keep(self.exits, seq, ev)
        elif k == "stall":
            if ev.data.get("abort"):
                self.watchdog_abort = True
        elif k == "phase_mark":
            if ev.data.get("absent") and self.ckpt_absent is None:
                self.ckpt_absent = ev
            if ev.data.get("phase"):
                self.phase = (ev.data["phase"], seq, ev.data.get("detail"), ev)
        elif k == "memory":
            p = ev.data.get("host_percent")
            if isinstance(p, (int, float)):
                self.host_percent = float(p)
                self.host_percent_max = max(self.host_percent_max or 0.0, float(p))
        return ()

    @staticmethod
    def _keep(lst: list, seq: int, ev: Event) -> None:
        if len(lst) < 64:
            lst.append((seq, ev))

    def _exception(self, ev: Event, seq: int) -> None:
        d = ev.data
        fam = classify(str(d.get("type") or ""), str(d.get("message") or ""), d.get("raise_site"), d.get("frames"))
        if d.get("aborted"):
            self.terminated.add(ev.rank)
        key = (ev.source, d.get("chain_of") if d.get("chain_of") is not None else ("seq", seq), ev.rank)
        if key not in self.groups and ev.rank is not None and d.get("chained"):
            # libstdc++'s what() names the rank its terminate line did not, or another than the prefix both
            # lines wore (a paste's '[rank3]: ' before '  what():  [Rank 0] Watchdog caught ...') or the
            # log's file name gave it ('rank0'): the chain that starts on that line is the one
            chain = (ev.source, d.get("chain_of"))
            key = next((k for k in self.groups if k[:2] == chain), key)
        g = self.groups.get(key)
        if g is None:
            if len(self.groups) >= MAX_GROUPS:
                return
            g = self.groups[key] = _Group(self._seq_in_text(ev, seq) if d.get("truncated") else seq, ev.rank,
                                          advances_at=self.progress.advances_before(ev.source, d.get("chain_of"))
                                          if d.get("truncated") else self.progress.advances(ev.source),
                                          lines_at=None if d.get("truncated") else self.progress_lines.get(ev.source, 0))
        if d.get("chained") and g.link is None:
            g.link = d["chained"]
        if g.rank is None:
            g.rank = ev.rank
        if len(g.members) < 6:
            g.members.append((ev, fam))
            if ev.line is not None and len(self.detail_of) < MAX_GROUPS:
                self.detail_of[(ev.source, ev.line)] = g     # its message's further lines (exception_detail)

    def _seq_in_text(self, ev: Event, seq: int) -> int:
        """A traceback cut off before its exception line is reported at the end of its input
        (formats/traceback.finish) but stands where its 'Traceback' line does: before a paste's
        prose that opens a later attempt (or follows the log: 'EDIT: I also tried ...'), it
        belongs to the attempt above that prose, not to a later one."""
        later = [s for s, src, line in self.reruns
                 if src == ev.source and line is not None and ev.line is not None and line > ev.line]
        return min(later) - 1 if later else seq

    # ------------------------------------------------------------ the verdict
    def finish(self) -> Iterable[Symptom]:
        out: list[Symptom] = []
        fatal = [(seq, ev) for seq, ev, at, lines in self.maybe_handled
                 if not self.progress.went_on(ev.source, at)
                 and self.progress_lines.get(ev.source, 0) - lines < SURVIVED_STEPS]
        if fatal:
            self.signals = sorted(self.signals + fatal, key=lambda x: x[0])
        if self.watchdog_abort:
            self._drop_watchdog_exits()
        if self.terminated:
            self._drop_terminate_aborts()
        if self.worn:
            self._unpin_worn_ranks()
        decisive = self._decisive_group()
        if (self.watchdog_abort or self.watchdog_timeouts) and decisive is not None and decisive.weight == 0 \
                and not (self.exits or self.signals or self.kills):
            decisive = None           # the launcher re-reporting the watchdog's exit code
        primary = decisive if decisive is not None and decisive.weight >= 2 else None
        stop = self._scheduler_stop()
        # (deaths in this run only: a requeued job's log holds its earlier runs' stops, and the tasks
        # those stops terminated: srun's 'task 0: Terminated' after them)
        since = max((sq for sq, e in self.signals if e.data.get("reason") and stop is not None and sq < stop[0]),
                    default=-1)
        # (a script's own word that it got a stop signal is that stop's echo, not a death)
        died_first = [sq for sq, e in self.kills + self.signals if not e.data.get("reason") and sq > since
                      and not (since >= 0 and e.data.get("signal") == 15) and e.data.get("who") != "script"]
        if stop is not None and stop[1].data.get("reason") == "scancel" and died_first and min(died_first) < stop[0]:
            # a task SIGKILLed (or crashed: 'task 3: Segmentation fault') before its step was cancelled:
            # srun tore the step down because that task died (srun's 'Terminating StepId'), so the death is the cause
            stop = None
        if stop is not None and (primary is None or primary.seq > stop[0]):
            # Slurm ended the job (time limit, preemption, scancel): the SIGKILLs after its
            # SIGTERM are its echo, not the kernel's OOM killer
            out.append(self._signal_symptom(decisive, stop))
            return out
        if self.kills and self._killed_from_outside():
            # a SIGKILL while the kernel's OOM-kill counters stood still: a scheduler, a person, a watchdog
            out.append(self._signal_symptom(decisive, self.kills[0]))
            if primary is None:
                return out
        elif self.kills or (primary is None and not self.watchdog_abort and self._vanished()):
            out.append(self._host_oom(primary))
            if primary is None:
                return out
        # exits that only echo a lost peer (a rank that raised a communication error, then exited)
        # do not outrank that error: the peer that died first is on another node's log
        echo_exits = bool(self.exits) and decisive is not None and decisive.weight == 1 and not self._own_exits()
        if decisive is not None and (primary is not None or not (self.exits or self.signals) or
                                     (echo_exits and not self.signals)):
            out.append(self._exception_symptom(decisive))
        elif self.signals:
            out.append(self._signal_symptom(decisive))
        elif self.exits and not self.launcher_named_first:
            # (a bare exit code the launcher already tied to its rank and node: the node_exit rules say it)
            out.append(self._exit_symptom(decisive))
        elif decisive is None and (last := self._last_words()) is not None:
            out.append(self._error_line_symptom(*last))
        failure = decisive.decisive()[0] if decisive is not None else None
        early = rank_left_early(self.rank_done, failure,
                                decisive.weight if decisive is not None else 0, bool(self.ended) or bool(self.kills),
                                self._stopped_after_done(), self.last_step)
        if early is None and not self.rank_done and not self.kills and not self.signals:
            early = local_peer_returned(self.alone_exit, failure, self.last_step)
        if early is not None:
            out.insert(0, early)
        apart = ranks_wait_apart(self._rank_waits(), self.last_step)
        if apart is not None:
            out.insert(0, apart)
        if not out and decisive is None and not self.kills:
            phase, phase_text = self._phase()
            end = self.end_event
            waits = Waits(said=self.hang_said, op_lock=self.op_wait, store=self.store_wait, connect=self.connect_wait,
                          nccl_connecting=max(self.nccl_connecting.values(), key=lambda fl: fl[1][0], default=None),
                          peer_lost=self.peer_lost)
            hang = quiet_end(waits, last_seq=self.mark_seq, last_step=self.last_step if phase == "training" else None,
                             phase=phase, phase_text=phase_text,
                             last_event=self.last_progress or (self.phase[3] if self.phase else None),
                             normal_end=end is not None and end.source in self.ended)
            if hang is not None:
                out.append(hang)
        return out

    def _last_words(self) -> tuple[int, Event] | None:
        """The last error-level line after which its input made no progress: the only trace a
        run may leave when nothing else says how it ended."""
        fatal = [(seq, ev) for seq, ev, at, lines in self.error_lines.values()
                 if not self._went_on(ev.source, at, lines)]
        return max(fatal, key=lambda x: x[0]) if fatal else None

    def _error_line_symptom(self, seq: int, ev: Event) -> Symptom:
        phase, phase_text = self._phase()
        d = ev.data
        family, family_why = _error_line_family(d.get("message") or "")
        s = Symptom(name="failure", seq=seq, time=ev.time, key=("error_line",),
                    facts=dict(how="error_line", level=d.get("level"), message=d.get("message"),
                               family=family, family_why=family_why,
                               rank=ev.rank, phase=phase, phase_text=phase_text, last_step=self.last_step,
                               at=f"{ev.source}:{ev.line}" if ev.line else ev.source))
        self._add(s, ev)
        return s

    def _stopped_after_done(self) -> bool:
        """Another rank exited non-zero or by a signal, and not before the launcher's first 'exits
        successfully' in the same input: the launcher tears every rank down at a failure
        (launch.py sigkill_handler), so a rank that returns 0 after it in its console is a later
        launch's (a relaunch after a crash), not a rank that left the failed run early."""
        if not self.rank_done:
            return False
        first_seq, first = self.rank_done[0]
        return any(seq > first_seq or e.source != first.source for seq, e in self.exits + self.signals + self.killing)

    def _scheduler_stop(self) -> tuple[int, Event] | None:
        """The scheduler's own word that it ended the run (slurmstepd's CANCELLED line): the last
        one (a requeued job's log holds the stops of its earlier runs too), the first line of it
        (slurmstepd says it for the step and for the job)."""
        stops = [(seq, ev) for seq, ev in self.signals if ev.data.get("reason")]
        if not stops:
            return None
        def run(ev: Event) -> tuple:      # a requeued job's runs share its id: the stop's time tells them apart
            return ev.data.get("job"), ev.data.get("at_time")
        last = run(stops[-1][1])
        return next(x for x in stops if run(x[1]) == last) if last[0] is not None else stops[-1]

    def _drop_watchdog_exits(self) -> None:
        """The exit codes of a run the watchdog ended: the ranks' WATCHDOG_EXIT_CODE and, when
        that was all the ranks exited with, the command's own code (torchrun turns a worker's
        86 into its own 1)."""
        kept = [(s, e) for s, e in self.exits if e.data.get("exitcode") != WATCHDOG_EXIT_CODE]
        if len(kept) < len(self.exits) and all(e.kind == "exit" for _, e in kept):
            kept = []
        self.exits = kept

    def _drop_terminate_aborts(self) -> None:
        """SIGABRT of a rank whose C++ exception reached std::terminate: abort() is how terminate
        ends the process, so the signal (faulthandler's 'Fatal Python error: Aborted', the
        launcher's exit code -6) echoes that exception, which says why."""
        def echo(seq: int, ev: Event) -> bool:
            sig = ev.data.get("signal")
            if sig is None:
                code = ev.data.get("exitcode")
                sig = -code if isinstance(code, int) and code < 0 else None
            rank = ev.data.get("rank", ev.rank)
            if sig != 6:
                return False
            # srun names a node's tasks as one range ('tasks 0-7: Aborted'): an echo when any of them
            # was taken down (a pasted tail may hold the timeouts of only some of them)
            tasks = _task_ranks(ev.data.get("tasks"))
            # a task that aborted after the watchdog timed out (srun reports each task as it
            # exits): the watchdog took it down too, though its own timeout line was not pasted
            late = self.first_timeout_seq is not None and seq > self.first_timeout_seq
            return rank is None or None in self.terminated or rank in self.terminated or bool(tasks & self.terminated) \
                or late
        kept = [(s, e) for s, e in self.signals if not echo(s, e)]
        self.aborts_echoed = len(kept) < len(self.signals)
        self.signals = kept

    def _went_on(self, src: str | None, steps_at: int, lines_at: int | None) -> bool:
        """Did `src` go on training after an error (its steps then: `steps_at`, its progress lines:
        `lines_at`)? An input whose progress names no step (transformers' log dicts, a script's
        'loss 2.31') counts SURVIVED_STEPS progress lines instead of steps."""
        if self.progress.went_on(src, steps_at):
            return True
        return lines_at is not None and self.progress.advances(src) == 0 \
            and self.progress_lines.get(src, 0) - lines_at >= SURVIVED_STEPS

    def _decisive_group(self) -> _Group | None:
        # an exception after which its input went on training (a caught error printed with its
        # traceback, a retried download) did not end the run
        fatal = [g for g in self.groups.values()
                 if not self._went_on(g.members[0][0].source, g.advances_at, g.lines_at)]
        if not fatal:
            return None
        # two attempts pasted one after the other ('after I changed X I now get'): the last one's
        # exceptions decide (sources/formats/paste.py reads the prose between them)
        cut = attempt_cut([s for s, _, _ in self.reruns], [g.seq for g in fatal])
        if cut is not None:
            fatal = [g for g in fatal if g.seq > cut]
        told = _told(fatal)
        return min(fatal, key=lambda g: (-g.weight, _bare_echo(g, told), g.seq))

    def _vanished(self) -> bool:
        """Ranks stopped by the launcher with no exit code, signal or traceback anywhere (a SIGABRT
        that echoed the NCCL watchdog is an exit code that says why: nothing vanished)."""
        return bool(self.killing) and not self.exits and not self.signals and not self.aborts_echoed \
            and not self.bus_error and self._decisive_group() is None

    def _phase_current(self) -> bool:
        """The last start-up mark came after the last step, or is that step's own line (the
        'Loading checkpoint shards: 67%|...| 2/3' bar counts shards, not training steps)."""
        ph = self.phase[3]
        return self.phase[1] > self.step_seq or (ph.source, ph.line) == self.step_at

    def _phase(self) -> tuple[str | None, str | None]:
        """(phase, text) of what the run was doing at its end."""
        if self.phase is not None and self._phase_current():
            p = self.phase[0]
            return p, PHASE_TEXT.get(p, p)
        if self.last_step is not None:
            return "training", f"at training step {self.last_step}"
        if self.phase is not None:
            return self.phase[0], PHASE_TEXT.get(self.phase[0], self.phase[0])
        return None, None

    def annotate(self, findings: list[Finding]) -> None:
        """detect/memory.py reports every SIGKILL as host_oom when its line is read; a kill the kernel's
        OOM-kill counters say was not the OOM killer's is reported here as a stop from outside instead."""
        if self.kills and self._killed_from_outside():
            findings[:] = [f for f in findings if not f.rule.startswith("host-oom-killed")]

    def _killed_from_outside(self) -> bool:
        """dsdoctor run read the kernel's OOM-kill counters before and after the run, they did not move,
        and no line of the log says the kernel, a cgroup or Slurm killed for memory."""
        return self.oom_rose is False and not self.kernel

    def _host_oom(self, primary: _Group | None) -> Symptom:
        phase, phase_text = self._phase()
        why: list[str] = []
        if self.kills:
            seq, ev = self.kills[0]
            how, conf = "killed", "medium"
            why.append("SIGKILL is the signal of the kernel's OOM killer (a scheduler or a person can send it too)")
        else:
            seq, ev = self.killing[0]
            how, conf = "vanished", "low"
            why.append("the notebook's kernel died and left no traceback, exit code or signal in this log: a kernel "
                       "that dies silently was most often killed by the OOM killer" if ev.data.get("who") == "jupyter"
                       else "the launcher stopped the ranks and no rank left a traceback, an exit code or a signal "
                       "in this log: a rank that dies silently was most often killed by the OOM killer")
        strong = []
        if self.oom_rose:
            strong.append("the kernel's OOM-kill counter went up during the run (read by dsdoctor run)")
        elif self.kernel:
            strong.append("the kernel (or the job's memory cgroup) reported an out-of-memory kill")
        if phase in HEAVY_PHASES:
            strong.append(f"it died {HEAVY_PHASES[phase]}")
        if self.host_percent_max is not None and self.host_percent_max >= 90:
            strong.append(f"DeepSpeed's last host-memory reading was {self.host_percent:g}% "
                          f"(peak {self.host_percent_max:g}%)")
        if strong:
            why += strong
            conf = "high" if how == "killed" or len(strong) > 1 else "medium"
        if self.host_percent_max is not None and self.host_percent_max < 60 and not self.kernel:
            why.append(f"but host memory was only at {self.host_percent_max:g}% in DeepSpeed's last reading")
            conf = {"high": "medium", "medium": "low"}.get(conf, conf)
        if primary is not None:
            pev, _ = primary.decisive()
            if primary.seq < seq:
                why.append(f"but a rank raised {pev.data.get('name')} before the kill")
                conf = "low"
            else:
                why.append(f"a rank also raised {pev.data.get('name')} (after the kill: likely a consequence)")
        s = Symptom(name="host_oom", seq=seq, time=ev.time, key=(how,),
                    facts=dict(how=how, confidence=conf, why="; ".join(why), phase=phase, phase_text=phase_text,
                               last_step=self.last_step, host_percent=self.host_percent,
                               host_percent_max=self.host_percent_max, kernel_oom=self.kernel or bool(self.oom_rose), oom_counted=bool(self.oom_rose),
                               signal=9 if how == "killed" else None,
                               who=ev.data.get("who") or ("dsdoctor run" if ev.kind == "exit" else None),
                               exitcode=ev.data.get("exitcode"), local_rank=ev.data.get("local_rank"),
                               host=ev.data.get("host"), killed_what=ev.data.get("what"),
                               memory_used=ev.data.get("used"), memory_total=ev.data.get("total"),
                               threshold=ev.data.get("threshold")))
        # Slurm's memory enforcement names the node over its limit ('slurmstepd-node2: error: StepId=12.0
        # exceeded memory limit'); srun's 'task N: Killed' on the other nodes is the step torn down after it
        over = {e.data.get("node") for _, e in self.kills if e.data.get("memcg") and e.data.get("node")}
        # the kernel's 'Killed process N' line chosen before the rest of its OOM report (formats/launcher.py)
        for _, e in sorted((self.kills or self.killing)[:6], key=lambda k: bool(k[1].data.get("oom_report")))[:4]:
            if over and e.data.get("node") and e.data.get("node") not in over:
                ev_ = _evidence(e)
                if ev_.text and len(s.evidence) < 8 and ev_ not in s.evidence:
                    s.evidence.append(ev_)
                continue
            self._add(s, e)
        if self.oom_rose and self.oom_counted is not None:
            self._add(s, self.oom_counted[1])
        if self.phase is not None and phase == self.phase[0]:
            s.evidence.append(_evidence(self.phase[3]))
        return s

    def _exception_symptom(self, g: _Group) -> Symptom:
        ev, fam = g.decisive()
        d = ev.data
        absent = None
        if fam.name == "other" and self.ckpt_absent is not None and "NoneType" in str(d.get("message")):
            # DeepSpeed's load_checkpoint found no `latest` and returned (None, None); the script then read
            # the client state or the path it returned ('NoneType' object is not subscriptable)
            fam, absent = CKPT_MISSING, self.ckpt_absent
        if fam.name == "other" and not d.get("message"):   # a message that starts on the next line
            more = " ".join(str(x.data.get("text") or "") for x in g.details if x.data.get("of") == ev.line)
            fam = classify(str(d.get("type") or ""), more, d.get("raise_site"), d.get("frames")) if more else fam
        if fam.name == "state_dict_mismatch":        # its mismatch lines are the message's further lines
            lines = [str(t) for _, t in (d.get("detail") or [])]
            lines += [str(x.data.get("text") or x.text) for x in g.details if x.data.get("of") == ev.line]
            fam = zero3_empty_checkpoint(lines) or missing_keys_only(lines, d.get("frames")) or fam
        if fam.name == "other" and d.get("detail"):   # the script's line that read a parameter's .grad
            fam = grad_read_family(str(d.get("name") or ""), [str(t) for _, t in d["detail"]]) or fam
        broke = self._context_broken_by(g, fam)
        if broke is not None:
            fam = DEVICE_ASSERT
        same = [x for x in self.groups.values()
                if x.decisive()[0].data.get("type") == d.get("type")
                and str(x.decisive()[0].data.get("message"))[:80] == str(d.get("message"))[:80]]
        others = sorted({_short_name(x.decisive()[0].data) for x in self.groups.values() if x not in same})
        phase = d.get("phase")
        if phase is None:
            phase = self._phase()[0] if self.phase is not None and self._phase_current() else None
        chain = [f"{m.data.get('type')}: {str(m.data.get('message'))[:120]}" for m, _ in g.members if m is not ev]
        s = Symptom(name="failure", seq=g.seq, time=ev.time, key=("exception",),
                    facts=dict(how="exception", type=d.get("type"), name=d.get("name"), message=str(d.get("message"))[:300],
                               family=fam.name, family_category=fam.category, family_why=fam.why,
                               rank=ev.rank, host=d.get("host"), phase=phase,
                               phase_text=PHASE_TEXT.get(phase, phase) if phase else None,
                               raise_site=d.get("raise_site"), at=f"{ev.source}:{ev.line}" if ev.line else ev.source,
                               chain=chain, others=others, last_step=self.last_step if ev.step is None else ev.step,
                               exitcode=self._exitcode()))
        if fam.name == "interrupt":
            s.facts.update(self._hung(ev.time, g))
            if s.facts.get("hung_from") == "start-up":
                self._add(s, self.phase[3])
        for x in same:
            if x.rank is not None:
                s.ranks.add(x.rank)
        s.evidence.append(_evidence(ev, f"{d.get('type')}: {d.get('message')}"))
        if broke is not None:
            s.evidence.append(_evidence(broke))
            s.facts["after_kernel_assert"] = True
        if fam.name == "sdpa_no_kernel":              # the reasons torch printed above it: the cause, named
            refused = self.sdpa.before(ev.source, g.seq)
            s.facts.update(refusal_facts(refused))
            for r in refused[-3:]:
                s.evidence.append(_evidence(r, str(r.data.get("reason") or r.text)))
        # what a bare message leaves out: the source line of a bare assert, the mismatch lines
        # under torch's 'Error(s) in loading state_dict' (sources/formats/traceback.py)
        for at, text in (d.get("detail") or [])[:2]:
            s.evidence.append(Evidence(ev.source, at, str(text)))
        for x in g.details:
            if x.data.get("of") == ev.line:
                s.evidence.append(Evidence(x.source, x.line, str(x.data.get("text") or x.text)))
        if absent is not None:
            s.evidence.append(_evidence(absent))
        for m, _ in g.members:
            if m is not ev:
                self._add(s, m, f"{m.data.get('type')}: {m.data.get('message')}")
        # the launcher names the rank whose exit it saw first (deepspeed/launcher/launch.py
        # sigkill_handler '[... --local_rank=1 ...] exits with return code = 1'): often a peer that
        # died of the cause's echo; a rank that raised something else is evidence, not a rank of this
        echoes = {x.rank for x in self.groups.values() if x not in same and x.rank is not None} - s.ranks
        for _, e in (self.exits + self.signals)[:2]:
            if e.rank in echoes:
                e = replace(e, rank=None)
            self._add(s, e)
        if fam.name == "interrupt":
            self._add_unresponsive(s)
            if s.facts.get("away_ranks"):
                s.ranks = set(s.facts["away_ranks"])     # the ranks the others waited for, not every stopped one
        if ev.step is not None:
            s.steps.append(ev.step)
        return s

    def _signal_symptom(self, g: _Group | None, chosen: tuple[int, Event] | None = None) -> Symptom:
        seq, ev = chosen or self.signals[0]
        sig = ev.data.get("signal")
        if sig is None:
            code = ev.data.get("exitcode") or 0
            sig = -code if code < 0 else code - 128
        outside_kill = sig == 9 and self._killed_from_outside()
        external = sig in EXTERNAL or outside_kill
        phase, phase_text = self._phase()
        s = Symptom(name="failure", seq=seq, time=ev.time, key=("signal",),
                    facts=dict(how="signal", signal=sig,
                               signal_name=ev.data.get("signal_name") or SIGNALS.get(sig, f"signal {sig}"),
                               external=external, who=ev.data.get("who") or ("dsdoctor run" if ev.kind == "exit" else None),
                               rank=ev.data.get("rank", ev.rank), phase=phase, phase_text=phase_text,
                               last_step=self.last_step, family="interrupt" if external else "crash",
                               at=f"{ev.source}:{ev.line}" if ev.line else ev.source, exitcode=ev.data.get("exitcode"),
                               reason=ev.data.get("reason"), host=ev.data.get("node"),
                               local_rank=ev.data.get("local_rank"), oom_unmoved=outside_kill))
        before = self.progress_before.get(seq, (self.last_progress, self.progress_times))
        if external:
            # (a SIGKILL leaves no stack of the killed rank: its peers' errors after it, waiting in a
            # collective for it, are its echo, not a hang before the stop)
            s.facts.update(self._hung(ev.time or ev.data.get("at_time"), None if outside_kill else g, before[1]))
        self._add(s, ev)
        if outside_kill and self.oom_counted is not None:
            self._add(s, self.oom_counted[1])
        if external:
            self._add_unresponsive(s)
        if s.facts.get("hung_from") == "start-up":
            self._add(s, self.phase[3])           # the last line before the silence
        elif (s.facts.get("progress_untimed") or s.facts.get("hung_from") == "progress_bar") and before[0] is not None:
            # where the training was when it was stopped, for the reader to judge (its rank is
            # not the stopped one; a later run's progress in the same log is not this stop's)
            e = _evidence(before[0], None)
            if e.text and len(s.evidence) < 8 and e not in s.evidence:
                s.evidence.append(e)
        for _, e in (self.signals[:4] + self.kills[:2] if chosen else self.signals[:4]):
            if s.facts["reason"] == "node failure" and e is not ev:
                # the tasks Slurm ended on the nodes still up: evidence, not the failed node's ranks
                e_ = _evidence(e)
                if e_.text and len(s.evidence) < 8 and e_ not in s.evidence:
                    s.evidence.append(e_)
                continue
            self._add(s, e)
        if g is not None:
            gev, _ = g.decisive()
            if g.weight == 1 and (not external or outside_kill) and g.rank not in s.ranks:
                # a peer's lost connection (srun's 'task 1: Segmentation fault', rank 0's gloo
                # 'Connection reset by peer'): evidence, not a second crashed rank
                e = _evidence(gev, f"{gev.data.get('type')}: {gev.data.get('message')}")
                if e.text and len(s.evidence) < 8 and e not in s.evidence:
                    s.evidence.append(e)
            else:
                self._add(s, gev, f"{gev.data.get('type')}: {gev.data.get('message')}")
        if s.facts.get("away_ranks"):
            s.ranks = set(s.facts["away_ranks"])     # the ranks the others waited for, not every stopped one
        return s

    def _hung(self, stop_time: float | None, g: "_Group | None", pt: list[float] | None = None) -> dict:
        """Was the run hung when it was stopped from outside? From the time since its last progress
        (timestamped logs) and from where the interrupted stack waited (a KeyboardInterrupt's frames)."""
        hung_s, hung_from = None, None
        pt = self.progress_times if pt is None else pt
        if stop_time is not None and (stop_time >= DATED) != (pt[-1] >= DATED if pt else stop_time >= DATED):
            stop_time = None     # a year-less glog time against a dated one (sources/lines.py): no gap to read
        if stop_time is not None and len(pt) >= 2 and stop_time > pt[-1]:     # a cadence to compare with
            gaps = sorted(b - a for a, b in zip(pt, pt[1:]))
            typical = gaps[len(gaps) // 2] if gaps else 0.0
            gap = stop_time - pt[-1]
            if gap >= max(HUNG_MIN_S, HUNG_INTERVALS * typical):
                hung_s, hung_from = int(gap), "progress"
        elif stop_time is not None and len(pt) < 2 and (est := self._bar_silence(stop_time)) is not None:
            hung_s, hung_from = est, "progress_bar"
        elif (stop_time is not None and not pt and self.phase is not None and self.phase[3].time is not None
              and (self.phase[3].time >= DATED) == (stop_time >= DATED)):
            gap = stop_time - self.phase[3].time
            if gap >= HUNG_START_S:
                hung_s, hung_from = int(gap), "start-up"
        elif (not pt and self.last_progress is None and self.bar is None and self.phase is not None
              and self._phase_current() and (stop_time is None or self.phase[3].time is None)):
            # stopped from outside before any progress, its last word a start-up line, and no time
            # says how long it sat there: a start-up that was moving is rarely stopped, a hung one
            # is (its length unknown: hung_s stays None)
            hung_from = "start-up"
        waiting = next((m for m, _ in g.members if m.data.get("waits_in")), None) if g is not None else None
        if waiting is None or waiting.data["waits_in"] != "op_lock":
            # every rank's interrupted stack, when they print at once and interleave: one that waits
            # for an op build's lock says why all of them waited (the others wait for it too)
            waiting = next((m for gr in self.groups.values() for m, _ in gr.members
                            if m.data.get("waits_in") == "op_lock"), waiting)
        # the interrupted ranks whose stacks waited nowhere while another rank's waited in a collective:
        # the ranks it waited for (the stopped rank itself may be either)
        waits = self._rank_waits()
        interrupted = {gr.rank: m for gr in self.groups.values() if gr.rank is not None
                       for m, f in gr.members if f.name == "interrupt"}
        away = ranks_away(waits, interrupted)
        if away and waiting is None:
            waiting = next(ev for _, ev in waits.values() if ev.data.get("waits_in") == "collective")
        stuck_in = waiting.data["waits_in"] if waiting is not None else None
        stuck_call = waiting.data.get("wait_frame") if waiting is not None else None
        if stuck_in is None and self.stop_ignored:
            # no stack says where, but a worker sat 30 s in one native call after the stop signal
            # (a training step returns to Python within milliseconds): it waited for a peer
            stuck_in = "unresponsive"
        # progress lines without a time (tqdm, Lightning bars, HF dicts): a hang cannot be told apart
        untimed = hung_s is None and stuck_in is None and len(pt) < 2 and hung_from is None
        return dict(hung_s=hung_s, hung_text=_duration(hung_s) if hung_s else None, hung_from=hung_from,
                    progress_untimed=untimed, stuck_in=stuck_in,
                    stuck_call=stuck_call, unresponsive=None, away_ranks=away,
                    away_text=", ".join(map(str, away)) if away else None)

    def _rank_waits(self) -> dict[int, tuple[int, Event]]:
        """Per rank, the first exception of its tracebacks that waited in a collective or its DataLoader."""
        out: dict[int, tuple[int, Event]] = {}
        for g in sorted(self.groups.values(), key=lambda g: g.seq):
            for m, _ in g.members:
                if m.rank is not None and m.rank not in out and m.data.get("waits_in") in ("collective", "dataloader"):
                    out[m.rank] = (g.seq, m)
        return out

    def _add_unresponsive(self, s: Symptom) -> None:
        """The launcher's lines that its workers outlived the stop signal, as evidence (and how many):
        with a stack that waits, they say which other ranks were stuck too."""
        if not self.stop_ignored or not (s.facts.get("hung_s") or s.facts.get("stuck_in")):
            return
        s.facts["unresponsive"] = len({e.data.get("pid") for _, e in self.stop_ignored})
        for _, e in self.stop_ignored[:2]:
            ev_ = _evidence(e)
            if ev_.text and len(s.evidence) < 8 and ev_ not in s.evidence:
                s.evidence.append(ev_)

    def _bar_silence(self, stop_time: float) -> int | None:
        """Seconds an untimed progress bar had been still when the run was stopped, counted
        from its own elapsed time and the time the log stated before its first frame; None
        when that cannot tell a hang (see BAR_START_ALLOWANCE_S)."""
        b = self.bar
        if b is None or b[1] is None or b[4] < 3 or stop_time < DATED:
            return None
        _, anchor, first, last, frames, started = b
        interval = (last - first) / (frames - 1)
        if started is not None:       # placed by a time stated while it ran: no start-up to allow for
            gap = stop_time - (started + last)
        else:
            gap = stop_time - (anchor + (last - first)) - BAR_START_ALLOWANCE_S
        return int(gap) if gap >= max(HUNG_MIN_S, HUNG_INTERVALS * interval) else None

    def _context_broken_by(self, g: _Group, fam: Family) -> Event | None:
        """The kernel assert that broke the CUDA context of the rank whose cuBLAS then could not start
        (families.py cublas_init): printed above that error in its input, the assert is the cause (an
        index out of range), the cuBLAS error its echo at the next CUDA call."""
        if fam.name != "cublas_init":
            return None
        ka = self.kernel_asserts.get(g.members[0][0].source)
        return ka[1] if ka is not None and ka[0] < g.seq else None

    def _unpin_worn_ranks(self) -> None:
        """A traceback whose only rank is the prefix (or srun label) its input's launcher lines wore
        too is some rank's, not that rank's: a paste with '[rank3]: ' before every line, or srun
        --label's task number before a node's launcher and all its ranks. Its rank is then unknown,
        as in the same paste without the prefix (a rank the message or a file name gave stays)."""
        for g in self.groups.values():
            ev = g.members[0][0]
            if g.rank is None or g.rank != ev.rank or not self.worn.names_no_rank(ev):
                continue
            g.rank = None
            g.members = [(replace(m, rank=None, rank_from=None), f) if self.worn.names_no_rank(m) else (m, f)
                         for m, f in g.members]
            self.terminated.discard(ev.rank)

    def _rank_of(self, ev: Event) -> int | None:
        """The rank of an exit line; torchelastic names it only in its summary, so a line with
        just the pid takes the rank another line of the same input gave that pid."""
        r = ev.data.get("rank", ev.rank)
        if r is None and ev.data.get("pid") is not None:
            for _, e in self.exits:
                if e.source == ev.source and e.data.get("pid") == ev.data.get("pid") \
                        and e.data.get("rank", e.rank) is not None:
                    return e.data.get("rank", e.rank)
        return r

    def _causal_exits(self) -> list[tuple[int, Event]]:
        """The exits that started the end, first. Read one node's log after the other, input
        order says nothing: a rank that raised a communication error (it lost its peer) and then
        exited is an echo of the rank that exited without one; the command's own code comes last."""
        return self._own_exits() or sorted(self.exits, key=lambda x: (x[1].kind == "exit", x[0]))

    def _own_exits(self) -> list[tuple[int, Event]]:
        echo = {g.rank for g in self.groups.values() if g.rank is not None and g.weight == 1}
        # a communication error printed without a rank prefix may be any rank's: an exit code 1 (the
        # Python exception's own exit) is then its echo, not a failure of its own
        anon = any(g.rank is None and g.weight == 1 for g in self.groups.values())
        # likewise an exit code 1 that names only a local rank (torchelastic's 'failed (exitcode: 1)
        # local_rank: 1' on another node than rank 0) when every rank that raised lost a peer
        echoes_only = bool(echo) and all(g.weight <= 1 for g in self.groups.values())
        return [(s, e) for s, e in self.exits if e.kind != "exit" and self._rank_of(e) not in echo
                and not ((anon or echoes_only and self._rank_of(e) is None) and e.data.get("exitcode") == 1)]

    def _exit_symptom(self, g: _Group | None) -> Symptom:
        exits = self._causal_exits()
        seq, ev = exits[0]
        d = ev.data
        phase, phase_text = self._phase()
        s = Symptom(name="failure", seq=seq, time=ev.time, key=("exit",),
                    facts=dict(how="exit", exitcode=d.get("exitcode"), who=d.get("who") or
                               ("dsdoctor run" if ev.kind == "exit" else None),
                               rank=self._rank_of(ev), host=d.get("host") or d.get("node"), phase=phase,
                               phase_text=phase_text, last_step=self.last_step, family="other",
                               at=f"{ev.source}:{ev.line}" if ev.line else ev.source,
                               wrapper=g.decisive()[0].data.get("type") if g is not None else None))
        for _, e in exits[:4]:
            self._add(s, e)
            r = self._rank_of(e)
            if r is not None and e.kind != "exit":
                s.ranks.add(r)
        if g is not None:
            gev, _ = g.decisive()
            if g.weight == 1 and g.rank not in s.ranks:   # a peer's lost connection: evidence, not a culprit
                e = _evidence(gev, f"{gev.data.get('type')}: {gev.data.get('message')}")
                if e.text and len(s.evidence) < 8:
                    s.evidence.append(e)
            else:
                self._add(s, gev, f"{gev.data.get('type')}: {gev.data.get('message')}")
        elif (last := self._last_words()) is not None and len(s.evidence) < 8 and \
                not any((e.source, e.line) == (last[1].source, last[1].line) for _, e in exits):
            # no exception: the last error-level line before the exit (not the exit's own report) is the
            # nearest thing to a cause (a launcher refusing to start: 'srun: error: Invalid MPI type ...')
            s.evidence.append(_evidence(last[1]))
            s.facts["last_error"] = last[1].data.get("message")
        return s

    def _exitcode(self) -> int | None:
        for _, e in self.exits:
            return e.data.get("exitcode")
        return None

    @staticmethod
    def _add(s: Symptom, ev: Event, text: str | None = None) -> None:
        if ev.rank is not None and ev.kind != "exit":
            s.ranks.add(ev.rank)
        if ev.kind == "exit" and ev.text is None:
            code = ev.data.get("exitcode")
            text = f"the command exited with code {code}" + (
                f" ({SIGNALS[code - 128]})" if isinstance(code, int) and code - 128 in SIGNALS else "")
        e = _evidence(ev, text)
        if e.text and len(s.evidence) < 8 and e not in s.evidence:
            s.evidence.append(e)




def _duration(seconds: int) -> str:
    """'2 h 10 min', '45 min', '90 s'."""
    h, rest = divmod(int(seconds), 3600)
    m = rest // 60
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{m} min" if m else f"{int(seconds)} s"


def _task_ranks(tasks) -> set[int]:
    """srun's task list ('0-7', '3', '0,2,4-5') as ranks; empty when there is none."""
    out: set[int] = set()
    for part in str(tasks or "").split(","):
        a, _, b = part.partition("-")
        if a.strip().isdigit() and (not b or b.strip().isdigit()):
            lo, hi = int(a), int(b or a)
            out.update(range(lo, min(hi, lo + 4096) + 1))
    return out
