"""Learning-rate schedule symptoms from `lr` and `loss` events (live or from logs).

- lr_early_spikes:        the loss jumps early in training (first EARLY_STEPS steps) while the
                          LR is already at its peak (after the warm-up, or from step 1 without
                          one): no or too short a warm-up.
- lr_diverge_after_peak:  the LR rose (a warm-up, or OneCycle's first half), and within a few
                          steps of its peak the loss blew up (non-finite or DIVERGE x its best).
- loss_diverged:          at any point of the run, the loss climbed to FAR x its best and kept
                          rising for FAR_RUN observations: a divergence that has not (yet) reached NaN.
- lr_stuck:               the LR sits at 0, or flat at a small fraction of its peak, for many
                          steps (WarmupDecayLR / WarmupCosineLR past total_num_steps).
- lr_restart:             the LR drops back to its warm-up start mid-run, jumps back up to its
                          peak in the middle of a decay, or a resumed run (first step far from 0)
                          starts at the warm-up start: a resume without the scheduler state.
- lr_warmup_unfinished:   the run finished normally (HF's summary, Lightning's or Megatron's end
                          line) while its LR was still rising: the warm-up is longer than the run.
- lr_unbounded:           the LR rose the whole run, over many steps (or over the whole log when
                          the engine's config print names LRRangeTest): an LRRangeTest scheduler
                          left on in a real run.
- lr_scheduler_param:     a config_error about a scheduler param (the TypeError DeepSpeed raises
                          for `scheduler.params`), checked with dsdoctor.config.schedulers, the
                          same code as the doctor's config lint.

One rank is followed (the first that reports an LR): the schedule is the same on every rank.
Memory is bounded: counters and short windows only.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Iterable

from ..stats import median
from ..lazy_regex import compile_later
from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from, tagged
from .worn import same_paste

EARLY_STEPS = 300         # "early in training"
SPIKE = 1.5               # a loss this many times the recent median is a spike
MIN_SPIKES = 2
SPIKE_UNDO = 1.0          # ... and by this share of the way back from the recent median to that level
                          # (all of it: a converged per-batch loss of batch 8 with label noise has single
                          # batches at 2.6x its median, most of the way back to its start: run here)
SPIKE_MIN_SHARE = 0.05    # ... and by at least this share of the run's first losses (their median)
SPIKE_NOISE_SIGMAS = 4.0  # ... and this many robust sigmas of the step-to-step changes above the recent median
DIVERGE = 3.0             # loss this many times its best so far ...
DIVERGE_RUN = 3           # ... this many times in a row (or once non-finite): diverged
POST_PEAK_STEPS = 100     # "right after the peak"
STUCK_STEPS = 20          # consecutive flat LR observations before we call it stuck ...
STUCK_MIN_READINGS = 4    # ... or this many readings spanning STUCK_STEPS steps (steps_per_print > 1 samples the LR)
STUCK_FRACTION = 0.01     # flat at <= 1% of the peak
UNBOUNDED_STEPS = 2000    # rising for this long without a peak: not a warm-up
RANGE_READINGS = 10       # LRRangeTest named in the config: rising over this many readings ...
RANGE_RISE = 2.0          # ... to this many times the first LR is the range test left on
RESUME_STEP = 100         # a run whose first step is beyond this was resumed
START_SEEN = 20           # a log whose first LR reading is at or before this step shows the run's start
FAR = 10.0                # a finite loss this many times its best ...
FAR_ABOVE = 1.0           # ... and at least this much above it (a loss near 0 may wander by x10) ...
FAR_RUN = 5               # ... for this many observations in a row, still rising: diverged without a NaN
# A language model's loss cannot reach FAR x its best (it tops out near ln(vocabulary size), ~11,
# from a best of 2-3): a climb to MID x its best that goes on for MID_RUN observations without
# coming back (none below MID_BACK of the highest so far) and ends at least MID_CLIMB x where it
# crossed is the same divergence. A spike comes back down within a few observations.
# A loss that jumps to BLOWN_UP x its first reading and stays there for DIVERGE_RUN readings has blown up
# at once (AdamW at lr 30: 0.59 at step 0, ~1e15 from step 1 on, the run going on to exit 0, run here): the
# best-so-far needs five readings, so it never sees the start, and a plateau is not "still rising"
BLOWN_UP = 1.0e4
BLOWN_UP_MIN = 1.0e3      # ... and at least this high (a first reading near 0 makes x1e4 of nothing)
# ... and one that jumps to JUMPED x its first reading and never comes back under it for JUMPED_RUN readings (HF
# Trainer + DeepSpeed, AdamW at lr 3.0, run here: 157.7 at the first log, 681 to 1,627 on every log after): the
# median of the first five already holds the jump, so the best-so-far never sees a start to be far above
JUMPED = 4.0
JUMPED_RUN = 10
JUMPED_FROM = 1.0         # ... from a first reading at least this high (one near 0 is a masked or lucky batch)
MID = 3.0
MID_RUN = 8
MID_BACK = 0.9
MID_CLIMB = 1.5

_EVAL_NAME = compile_later(r"(?i)(?:eval|val|valid|validation|test)\b|(?:eval|val|valid|validation|test)[_/ ]")
_UNEXPECTED = compile_later(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


_eval_names: dict[str, bool] = {}


def _is_eval_name(name) -> bool:
    """_EVAL_NAME.match(str(name or "")), remembered per name (a run has a few: 'loss' per step live)."""
    key = str(name or "")
    got = _eval_names.get(key)
    if got is None:
        got = _EVAL_NAME.match(key) is not None
        if len(_eval_names) < 256:
            _eval_names[key] = got
    return got


def first_float(v) -> float | None:
    """An LR or loss value as a float: the first param group's when it is a list."""
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):     # OverflowError: a 400-digit integer
        return None


def _nice_steps(n: float) -> int:
    """Round a step count up to 1, 2 or 5 x 10^k (100, 200, 500, 1000 ...)."""
    n = max(10.0, n)
    mag = 10 ** math.floor(math.log10(n))
    for m in (1, 2, 5, 10):
        if m * mag >= n:
            return int(m * mag)
    return int(10 * mag)


class LRScheduleDetector(Detector):
    kinds = ("lr", "loss", "config_error", "run_end", "throughput", "context", "rank_done", "script_end",
             "exit")

    def __init__(self) -> None:
        self.rank: int | None = None
        self.rank_ev: Event | None = None       # the event that set it (detect/worn.py same_paste)
        self.first_step: int | None = None
        self.first_lr: float | None = None
        self.prev_lr: float | None = None
        self.prev_step: int | None = None
        self.fall_rate: float | None = None    # LR lost per step between the last two readings, while falling
        self.peak_lr = 0.0
        self.peak_step: int | None = None
        self.peak_ev: Event | None = None
        self.peaked = False              # the LR rose and then stopped rising
        self.rise_steps = 0              # consecutive observations with a rising LR
        self.decreasing = 0              # consecutive observations with a falling LR
        self.flat_run = 0
        self.flat_from: int | None = None
        self.flat_since: int | None = None
        self.flat_ev: Event | None = None
        self.decayed_before_flat = False
        self.last_step: int | None = None
        self.lr_now: float | None = None
        self.warmup_steps: int | None = None   # steps from the first LR to the peak
        self.recent_loss: deque[float] = deque(maxlen=9)
        self.start_loss: float | None = None
        self.loss_steps_seen: deque[tuple] = deque(maxlen=8)    # (step, name) of the latest losses
        self.series_src: dict[str, tuple] = {}      # kind -> (the input it is read from, its highest step)
        self.noise_window: deque[float] = deque(maxlen=32)
        self.best_loss = math.inf
        self.spikes: list[tuple[int | None, float, float]] = []
        self.spike_ev: Event | None = None
        self.early_done = False
        self.high_run = 0
        self.far: list[tuple[int | None, float]] = []   # the current run of (step, loss) far above the best
        self.far_ev: Event | None = None
        self.first_loss: float | None = None     # the first training loss read (BLOWN_UP is x this)
        self.blown: list[Event] = []             # the current run of losses BLOWN_UP x above it
        self.jumped: list[Event] = []            # the current run of losses JUMPED x above it
        self.mid: list[tuple[int | None, float]] = []   # the current climb above MID x the best
        self.reported: set[str] = set()
        self.ended: Event | None = None     # the training loop said it finished (run_end, HF's summary)
        self.rise_run = 0                   # LR readings in a row, up to the latest, that rose
        self.lr_seen = 0
        self.first_lr_ev: Event | None = None
        self.last_lr_ev: Event | None = None
        self.ever_fell = False
        self.emitted: list[Symptom] = []     # their last_step is brought up to date in finish()
        self.client_sched_ev: Event | None = None    # 'DeepSpeed using client LR scheduler'
        self.config_sched_ev: Event | None = None    # the engine's config print naming a scheduler type

    # ------------------------------------------------------------------ lr
    def _lr(self, ev: Event, seq: int) -> list[Symptom]:
        lr = ev.data.get("value")
        if type(lr) is not float:        # (a float is first_float's answer already: one call less per step)
            lr = first_float(lr)
        if lr is None or not math.isfinite(lr):
            return []
        out: list[Symptom] = []
        step = ev.step
        if step is not None and step == self.prev_step:
            return []                     # the same step's LR again (DeepSpeed's line and the script's own)
        if self.first_lr is None:         # (HF's metric dicts carry no step: the first LR is still the first)
            self.first_step, self.first_lr = step, lr
            self.first_lr_ev = ev
        self.last_lr_ev = ev
        prev = self.prev_lr

        self.lr_seen += 1
        if prev is not None:
            self.rise_run = self.rise_run + 1 if lr > prev * (1 + 1e-9) else 0
            if lr > prev * (1 + 1e-9):
                # back up near the peak in one jump, in the middle of a decay (not from the bottom of a
                # cycle, as cosine-with-restarts does): the schedule started over without its warm-up
                if (self.decreasing >= 3 and self.peak_lr > 0 and lr >= 0.8 * self.peak_lr and lr >= 1.15 * prev
                        and prev >= 0.1 * self.peak_lr):
                    out += self._once("lr_restart", ev, seq, restart_step=step, lr_before=prev, lr_after=lr,
                                      how="jumped", lr_peak=self.peak_lr)
                self.rise_steps += 1
                self.decreasing = 0
            elif lr < prev * (1 - 1e-9):
                self.decreasing += 1
                self.ever_fell = True
                # a fall to the warm-up start mid-run: the schedule restarted (not a fall at the pace the
                # LR was already falling: OneCycle's second half, read every steps_per_print steps)
                if (self.first_lr is not None and self.peak_lr >= 5 * max(self.first_lr, 1e-12)
                        and lr <= max(2 * self.first_lr, 1e-12) and prev >= 0.5 * self.peak_lr
                        and not self._falls_on_course(lr, prev, step)):
                    out += self._once("lr_restart", ev, seq, restart_step=step, lr_before=prev, lr_after=lr,
                                      how="dropped")
                self.rise_steps = 0
        if lr > self.peak_lr:
            self.peak_lr, self.peak_step, self.peak_ev = lr, step, ev
        if (not self.peaked and prev is not None and lr <= prev and self.first_lr is not None
                and self.peak_lr >= 2 * max(self.first_lr, 1e-12)):
            self.peaked = True
            if self.peak_step is not None and self.first_step is not None:
                self.warmup_steps = self.peak_step - self.first_step
        # flat at 0 or at a small fraction of the peak
        flat_low = lr <= 1e-12 or (self.peak_lr > 0 and lr <= STUCK_FRACTION * self.peak_lr)
        if flat_low and prev is not None and abs(lr - prev) <= 1e-9 * max(prev, 1e-12):
            if self.flat_run == 0:
                self.flat_from, self.flat_ev = step, ev
                self.flat_since = self.prev_step      # the first reading at the flat value
                self.decayed_before_flat = self.decreasing > 0 or (self.peak_lr > 0 and self.peaked)
            self.flat_run += 1
            spans = (step is not None and self.flat_since is not None and self.flat_run >= STUCK_MIN_READINGS
                     and step - self.flat_since >= STUCK_STEPS)
            if (self.flat_run >= STUCK_STEPS or spans) and (self.peak_lr > 0 or lr <= 1e-12):
                out += self._once("lr_stuck", self.flat_ev or ev, seq, stuck_value=lr, stuck_from_step=self.flat_from,
                                  peak_lr=self.peak_lr, decayed=self.decayed_before_flat,
                                  resumed=bool(self.first_step and self.first_step > RESUME_STEP))
        elif not flat_low or (prev is not None and abs(lr - prev) > 1e-9 * max(prev, 1e-12)):
            self.flat_run = 0
        # a resumed run that starts at the warm-up start
        if (prev is not None and self.first_step is not None and self.first_step > RESUME_STEP
                and self.rise_steps >= 5 and self.first_lr is not None and lr >= 4 * max(self.first_lr, 1e-12)
                and step is not None and step - self.first_step < 1000):
            out += self._once("lr_restart", ev, seq, restart_step=self.first_step, lr_before=None,
                              lr_after=self.first_lr, how="resumed")
        if (self.rise_steps >= UNBOUNDED_STEPS and self.first_lr is not None and lr >= 10 * max(self.first_lr, 1e-12)):
            out += self._once("lr_unbounded", ev, seq, rising_steps=self.rise_steps, lr_first=self.first_lr,
                              lr_now=lr, linear=True)
        if prev is not None and lr < prev and step is not None and self.prev_step is not None and step > self.prev_step:
            self.fall_rate = (prev - lr) / (step - self.prev_step)
        elif prev is not None and lr >= prev:
            self.fall_rate = None
        self.prev_lr, self.prev_step, self.lr_now = lr, step, lr
        if step is not None:
            self.last_step = step if self.last_step is None else max(self.last_step, step)
        return out

    def _falls_on_course(self, lr: float, prev: float, step) -> bool:
        """The LR fell from `prev` to `lr` no faster than it was already falling per step (with
        room for a readings' gap): a linear decay read sparsely, not a schedule that started over."""
        if self.fall_rate is None or step is None or self.prev_step is None or step <= self.prev_step:
            return False
        return prev - lr <= 1.5 * self.fall_rate * (step - self.prev_step)

    # ---------------------------------------------------------------- loss
    def _loss(self, ev: Event, seq: int) -> list[Symptom]:
        v = ev.data.get("value")
        if type(v) is not float:
            v = first_float(v)
        if v is None:
            return []
        out: list[Symptom] = []
        step = ev.step
        seen = (step, ev.data.get("name"))
        if step is not None and seen in self.loss_steps_seen:
            return []        # the same step's loss again: a live hook's and the console's, or two copies of a line
        self.loss_steps_seen.append(seen)
        finite = math.isfinite(v)
        # divergence shortly after the LR peak (a warm-up or a cycle that climbed too high)
        if (self.peaked and self.peak_step is not None and step is not None and self.warmup_steps
                and 0 <= step - self.peak_step <= max(POST_PEAK_STEPS, self.warmup_steps)
                and math.isfinite(self.best_loss)):
            # diverged: non-finite, or DIVERGE x the best for DIVERGE_RUN losses in a row (a spike recovers)
            high = not finite or v > DIVERGE * self.best_loss
            self.high_run = self.high_run + 1 if high else 0
            if not finite or self.high_run >= DIVERGE_RUN:
                out += self._once("lr_diverge_after_peak", ev, seq, lr_peak=self.peak_lr, peak_step=self.peak_step,
                                  diverge_step=step, loss=v if finite else str(v), best_loss=self.best_loss,
                                  warmup_steps=self.warmup_steps, lr_suggested=float(f"{self.peak_lr / 2:.2g}"))
        if not finite:
            return out
        if not _is_eval_name(ev.data.get("name")):
            out += self._far_above_best(ev, seq, v)
        early = (self.first_step is None or self.first_step <= RESUME_STEP) and step is not None and step <= EARLY_STEPS
        if early and len(self.recent_loss) >= 5:
            med = median(self.recent_loss)
            # only spikes while the LR is at its peak count: during a warm-up they are the warm-up's business
            # (a flat LR is "no warm-up" only when the log shows the run's start: a paste that begins at
            # step 78 of a converged run may have cut a warm-up off, and its loss's start with it)
            at_peak = self.peaked or (self.first_lr is not None and self.peak_lr <= 1.05 * self.first_lr
                                      and (self.first_step is None or self.first_step <= START_SEEN))
            # above the window's own noise too: a script's per-batch loss of a small batch scatters by
            # more than SPIKE x its median without anything wrong (HF's logged loss is a mean over steps)
            # (sigma from the steps between readings, median |diff| / (0.6745 x sqrt 2): a falling loss's
            # trend does not count as noise, and 32 steps are a steadier bound than nine values)
            noise = SPIKE_NOISE_SIGMAS * 1.0484 * median(self.noise_window) if self.noise_window else 0.0
            # and by a share of where the loss started: near 0 (an easy task, leaked labels) x1.5 is nothing
            floor = SPIKE_MIN_SHARE * (self.start_loss or 0.0)
            # once the loss has come down, a spike undoes all of that progress: a converged
            # loss's unlucky batches (x3 of a tiny median, still far below the start) are not instability
            if self.start_loss is not None and self.start_loss > med:
                floor = max(floor, SPIKE_UNDO * (self.start_loss - med))
            if med > 0 and v > SPIKE * med and v > med + max(noise, floor) and at_peak:
                self.spikes.append((step, v, med))
                if self.spike_ev is None:
                    self.spike_ev = ev
        if not early and not self.early_done and step is not None and step > EARLY_STEPS:
            self.early_done = True
            out += self._early_verdict(seq)
        if self.recent_loss:
            self.noise_window.append(abs(v - self.recent_loss[-1]))
        self.recent_loss.append(v)
        if self.start_loss is None and len(self.recent_loss) >= 5:
            # the median of the first five: one lucky batch among them must not set it (a loss that blew up
            # from step 2 on sets it high, and then no spike counts: loss_diverged is that run's finding)
            self.start_loss = median(self.recent_loss)
        # best loss so far, on a median of the window so one lucky batch does not set it
        if len(self.recent_loss) >= 5:
            self.best_loss = min(self.best_loss, median(self.recent_loss))
        return out

    def _far_above_best(self, ev: Event, seq: int, v: float) -> list[Symptom]:
        """A finite divergence: FAR_RUN losses in a row far above the best so far, each the
        highest of the run (a spike comes back down; a divergence does not)."""
        if self.first_loss is None:
            self.first_loss = v
        elif self.first_loss > 0 and v >= BLOWN_UP * self.first_loss and v >= BLOWN_UP_MIN:
            self.blown.append(ev)
            if len(self.blown) >= DIVERGE_RUN and "lr_diverge_after_peak" not in self.reported:
                return self._jumped(self.blown[0], ev, seq, v)
        else:
            self.blown.clear()
        if self.first_loss is not None and self.first_loss >= JUMPED_FROM and v >= JUMPED * self.first_loss \
                and v - self.first_loss >= FAR_ABOVE:
            self.jumped.append(ev)
            if len(self.jumped) >= JUMPED_RUN and "lr_diverge_after_peak" not in self.reported:
                return self._jumped(self.jumped[0], ev, seq, v)
            if len(self.jumped) > JUMPED_RUN:
                del self.jumped[1:-1]           # bounded: its first reading is what the finding names
        elif self.first_loss is not None:
            self.jumped.clear()
        best = self.best_loss
        climb = self._climb(ev, v, best)
        if not (math.isfinite(best) and best > 0 and v >= FAR * best and v - best >= FAR_ABOVE):
            self.far.clear()
            return self._diverged(climb[0][1], ev, seq, v, best, climb[0][0]) if climb else []
        if self.far and v < self.far[-1][1]:
            self.far.clear()             # it came down: restart the run here
        if not self.far:
            self.far_ev = ev
        self.far.append((ev.step, v))
        if len(self.far) < FAR_RUN or "lr_diverge_after_peak" in self.reported:
            return self._diverged(climb[0][1], ev, seq, v, best, climb[0][0]) if climb else []
        return self._diverged(self.far_ev or ev, ev, seq, v, best, self.far[0][0])

    def _jumped(self, first_ev: Event, ev: Event, seq: int, v: float) -> list[Symptom]:
        """loss_diverged of a loss that jumped above its first reading at once and stayed there."""
        out = self._once("loss_diverged", first_ev, seq, best_loss=round(self.first_loss, 4), loss=v,
                         ratio=float(f"{v / self.first_loss:.3g}"), first_step=first_ev.step, lr=self.lr_now, jumped=True)
        for sym in out:
            sym.add_evidence(ev)
        return out

    def _climb(self, ev: Event, v: float, best: float) -> list | None:
        """The climb above MID x the best, when it is long and steep enough to be a divergence:
        [(first step, first event), ...] (its first entry names where it started), else None."""
        if not (math.isfinite(best) and best > 0 and v >= MID * best and v - best >= FAR_ABOVE):
            self.mid.clear()
            return None
        if self.mid and v < MID_BACK * max(x for _, x, _ in self.mid):
            self.mid.clear()             # it came back down: a spike, restart here
        self.mid.append((ev.step, v, ev))
        if len(self.mid) > 4 * MID_RUN:
            del self.mid[1:MID_RUN]      # bounded: the start and the recent climb are what count
        if len(self.mid) < MID_RUN or v < MID_CLIMB * self.mid[0][1] or "lr_diverge_after_peak" in self.reported:
            return None
        return [(self.mid[0][0], self.mid[0][2])]

    def _diverged(self, first_ev: Event, ev: Event, seq: int, v: float, best: float, first_step) -> list[Symptom]:
        out = self._once("loss_diverged", first_ev, seq, best_loss=round(best, 4), loss=v,
                         ratio=round(v / best, 1), first_step=first_step, lr=self.lr_now)
        for sym in out:
            sym.add_evidence(ev)
        return out

    def _early_verdict(self, seq: int) -> list[Symptom]:
        if len(self.spikes) < MIN_SPIKES or self.spike_ev is None or "lr_diverge_after_peak" in self.reported:
            return []          # a divergence after the peak is the finding; its spikes are part of it
        first = self.spikes[0][0] or 0
        last = self.spikes[-1][0] or first
        # warm-up seen so far: 0 when the LR was at its peak from the start
        warm = self.warmup_steps
        if warm is None and self.first_lr is not None and self.peak_lr <= 1.05 * self.first_lr:
            warm = 0
        return self._once("lr_early_spikes", self.spike_ev, seq, spikes=len(self.spikes), first_spike_step=first,
                          last_spike_step=last, worst_ratio=round(max(s[1] / s[2] for s in self.spikes), 2),
                          warmup_steps=warm, lr_peak=self.peak_lr or None,
                          suggested_warmup=_nice_steps(max(100, 2 * (warm or 0), 5 * first)))

    # -------------------------------------------------------- config errors
    def _config_error(self, ev: Event, seq: int) -> list[Symptom]:
        d = ev.data
        msg = str(d.get("message") or ev.text or "")
        key = str(d.get("key") or "")
        m = _UNEXPECTED.search(msg)
        stype, param = (m.group(1), m.group(2)) if m else (None, None)
        if param is None and key.startswith("scheduler.params."):
            param, stype = key.rsplit(".", 1)[1], d.get("scheduler_type")
        if not stype or not param:
            return []
        from ..config import schedulers          # the doctor's lint: one implementation
        allowed = schedulers.scheduler_params(stype)
        if allowed is None:
            return []                            # an optimizer's or model's kwargs, not a scheduler's
        # every param of the other DeepSpeed schedulers that this one lacks, with its name here
        others = {k for t in schedulers.DEEPSPEED_SCHEDULERS for k in (schedulers.scheduler_params(t) or {})}
        others = sorted((others | {param}) - set(allowed) - {"last_batch_iteration"})
        problems = {p.facts.get("param"): p.facts for p in
                    schedulers.check_scheduler_block({"type": stype, "params": dict.fromkeys(others)})
                    if p.name == "scheduler_unknown_param"}
        if param not in problems:
            return []
        f = problems[param]
        owners = [t for t in schedulers.DEEPSPEED_SCHEDULERS if param in (schedulers.scheduler_params(t) or {})]
        return [symptom_from(ev, seq, "lr_scheduler_param", key=(stype, param), param=param, scheduler_type=stype,
                             suggestion=f.get("suggestion"), allowed=f.get("allowed"), owners=owners,
                             foreign={k: v.get("suggestion") for k, v in problems.items()},
                             key_path=f"scheduler.params.{param}")]

    # --------------------------------------------------------------- plumbing
    def _once(self, name: str, ev: Event, seq: int, **facts) -> list[Symptom]:
        if name in self.reported:
            return []
        self.reported.add(name)
        facts["last_step"] = self.last_step if self.last_step is not None else ev.step
        sym = symptom_from(ev, seq, name, **facts)
        self.emitted.append(sym)
        return [sym]

    def _context(self, ev: Event, seq: int) -> list[Symptom]:
        """A scheduler passed to deepspeed.initialize() AND a `scheduler` section in the config:
        DeepSpeed uses the client's and drops the config's without a word (engine.py
        _configure_lr_scheduler). The config print comes after the 'client' line."""
        if ev.data.get("lr_scheduler_source") == "client":
            self.client_sched_ev = self.client_sched_ev or ev
        elif ev.data.get("scheduler"):
            self.config_sched_ev = self.config_sched_ev or ev
        if self.client_sched_ev is None or self.config_sched_ev is None:
            return []
        if self.client_sched_ev.source != self.config_sched_ev.source and \
                self.client_sched_ev.rank != self.config_sched_ev.rank:
            return []
        got = self._once("lr_config_scheduler_ignored", self.config_sched_ev, seq,
                         config_scheduler=self.config_sched_ev.data.get("scheduler"))
        for sym in got:
            sym.add_evidence(self.client_sched_ev)
        return got

    def feed_step(self, evs: list[Event], seq: int):
        """feed() of the step's lr, then of its loss: one rank test for both (one rank, input
        and prefix), no dispatch on the kind."""
        b, c = evs[1], evs[2]
        if self.rank is None:
            self.rank, self.rank_ev = b.rank, b
        if b.rank != self.rank and self.rank is not None and b.rank is not None \
                and not same_paste(b, self.rank_ev):
            return ()          # another rank's copy
        got = () if self._replayed(b) else self._lr(b, seq + 1)
        more = () if self._replayed(c) else self._loss(c, seq + 2)
        return tagged(1, got) + tagged(2, more) if got or more else ()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if ev.kind == "context":
            return self._context(ev, seq)
        if ev.kind == "config_error":
            return self._config_error(ev, seq)
        if ev.kind == "exit":
            if ev.data.get("exitcode") == 0:      # `dsdoctor run`: the command returned 0
                self.ended = ev
            return ()
        if ev.kind in ("run_end", "throughput", "rank_done", "script_end"):
            # (rank_done: the DeepSpeed launcher's 'Process N exits successfully': the script returned;
            # script_end: the script's own 'training done' under torchrun or python, which print no end)
            if ev.kind != "throughput" or ev.data.get("summary"):
                self.ended = ev
            return ()
        if self.rank is None and ev.kind == "lr":
            self.rank, self.rank_ev = ev.rank, ev
        if ev.rank != self.rank and self.rank is not None and ev.rank is not None \
                and not same_paste(ev, self.rank_ev):
            return ()          # another rank's copy; a line without a rank (HF's metric dicts) is the run's
        if self._replayed(ev):
            return ()
        return self._lr(ev, seq) if ev.kind == "lr" else self._loss(ev, seq)

    def _range_test_whole_log(self) -> list[Symptom]:
        """The engine's config print names LRRangeTest and the LR rose on (nearly) every reading of
        the log, to RANGE_RISE x its first: the range test ran as the training schedule. (Without the
        name, only UNBOUNDED_STEPS of rise tell it from a long warm-up.)"""
        sched = self.config_sched_ev.data.get("scheduler") if self.config_sched_ev is not None else None
        if (sched != "LRRangeTest" or self.first_lr is None or self.lr_now is None or self.ever_fell
                or self.lr_seen < RANGE_READINGS or self.rise_run < 0.8 * (self.lr_seen - 1)
                or self.lr_now < RANGE_RISE * max(self.first_lr, 1e-12)):
            return []
        span = (self.last_step - self.first_step) if self.last_step is not None and self.first_step is not None \
            else self.rise_steps
        got = self._once("lr_unbounded", self.last_lr_ev or self.config_sched_ev, 0, rising_steps=span,
                         lr_first=self.first_lr, lr_now=self.lr_now, linear=True, scheduler=sched)
        for sym in got:
            for e in (self.config_sched_ev, self.first_lr_ev):
                if e is not None:
                    sym.add_evidence(e)
        return got

    def _replayed(self, ev: Event) -> bool:
        """A second input's view of steps another input already gave (a watched run's console and
        its hooks' events-rank<N>.jsonl): read as a series, it would start over at step 0. A later
        input that goes on past them (the log of a resumed run) is read on."""
        if ev.step is None:
            return False
        src, top = self.series_src.get(ev.kind, (None, None))
        if src is not None and ev.source != src and top is not None and ev.step <= top:
            return True
        self.series_src[ev.kind] = (ev.source, ev.step if top is None else max(top, ev.step))
        return False

    def finish(self) -> Iterable[Symptom]:
        out: list[Symptom] = []
        if not self.early_done:
            self.early_done = True
            out += self._early_verdict(0)
        out += self._range_test_whole_log()      # (first: a range test also rises to the end)
        # the run finished normally while its LR was still rising: the warm-up outlasted the training
        # (rising up to the last reading, over most of the run: a warm-up that ended in a constant LR is fine)
        if (self.ended is not None and self.lr_now is not None and self.first_lr is not None and not self.ever_fell
                and self.rise_run >= 5 and self.rise_run >= 0.8 * (self.lr_seen - 1)
                and self.lr_now >= 2 * max(self.first_lr, 1e-12)
                and "lr_unbounded" not in self.reported):
            got = self._once("lr_warmup_unfinished", self.last_lr_ev or self.ended, 0, lr_first=self.first_lr,
                             lr_now=self.lr_now, first_step=self.first_step, end_step=self.last_step,
                             rising=self.rise_run)
            for sym in got:
                for e in (self.first_lr_ev, self.ended):
                    if e is not None:
                        sym.add_evidence(e)
            out += got
        out += self._zero_whole_run()
        for sym in self.emitted:
            if self.last_step is not None:
                sym.facts["last_step"] = self.last_step
        return out

    def _zero_whole_run(self) -> list[Symptom]:
        """The run finished normally with an LR of 0 at every reading (an optimizer lr of 0, a
        schedule whose bounds are 0): a whole run shorter than STUCK_STEPS readings is still a run
        that never trained. Only with the run's own end seen: a log cut after a warm-up's first
        readings at 0 is no whole run."""
        if (self.ended is None or self.lr_seen < STUCK_MIN_READINGS or self.peak_lr != 0.0
                or self.first_lr_ev is None or "lr_stuck" in self.reported):
            return []
        got = self._once("lr_stuck", self.first_lr_ev, 0, stuck_value=0.0, stuck_from_step=self.first_step,
                         peak_lr=0.0, decayed=False, resumed=False, whole_run=True)
        for sym in got:
            sym.add_evidence(self.ended)
        return got
