"""Non-finite training: a NaN/Inf loss (and what came before it), and bf16 steps skipped
because the gradients were non-finite.

Works on events from logs and from live hooks alike: `loss`, `grad_norm`, `skipped`,
`overflow` (dtype bf16), `context` (dtype). A loss spike or a grad-norm explosion shortly
before the first NaN is recorded (`preceded_by_spike`): it points at the learning rate or
the data rather than at a numerics bug in the forward pass.

Numbers that go wrong without a NaN, in the same series: a grad norm of exactly 0 next to a loss
that only scatters (nothing is trained: `no_gradient`), a finite grad norm grown GN_GROW x its
start and staying there while clipping keeps the loss calm (`grad_norm_exploding`), and a loss
that falls to COLLAPSE x its start within COLLAPSE_STEPS steps (`loss_collapsed`: the answer is
in the inputs).
"""
from __future__ import annotations

import math
from collections import deque
from ..stats import median
from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from, tagged

HISTORY = 64           # finite values kept to judge a spike
SPIKE_FACTOR = 1.5     # loss above 1.5x the running median ...
GNORM_FACTOR = 5.0     # ... or grad norm above 5x its running median
ZERO_RUN = 3           # logged steps in a row with loss 0 and grad norm 0: nothing is trained
FLAT_RUN = 5           # logged steps in a row with the same non-zero loss and grad norm 0: no gradient flows
ZERO_AFTER_LOSS = 0.01  # a Trainer's real loss right before a run of exact 0.0: a hidden NaN, not convergence
# A frozen model: every grad norm since the first is exactly 0 and the loss of SCATTER_RUN readings
# scatters around one level (its last readings' median at least SCATTER_KEEP x its first readings'):
# different batches, different losses, no learning. (A loss that falls is trained: the integration
# that reports a grad norm of 0 while training, transformers + DeepSpeed, is left alone.)
SCATTER_RUN = 10
SCATTER_KEEP = 0.8
# A grad norm GN_GROW x its first readings' median for GN_GROW_RUN readings in a row: gradients
# exploding while gradient_clipping keeps the update (and so the loss) small: a spike comes back
GN_GROW = 1.0e3
GN_GROW_RUN = 5
# A training loss whose median of START readings falls to COLLAPSE x its first START readings' within
# COLLAPSE_STEPS steps (COLLAPSE_READINGS readings when the steps are unknown): labels leaked into the
# inputs (a target column among the features, a causal LM shown the token it predicts)
START = 5
COLLAPSE = 0.01
COLLAPSE_MIN_START = 0.05  # a loss that starts near 0 says nothing
START_SPREAD = 10.0
COLLAPSE_STEPS = 100
COLLAPSE_READINGS = 20


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _append_min(window: deque, lo: float, v: float) -> float:
    """Append a finite `v` to `window` (a bounded deque whose min is `lo`, inf when empty) and
    return its new min: min(window) again only when the value that falls out was the min (1 in
    HISTORY appends of a noisy series; a min() over 64 values was ~1-4 us, twice per step live)."""
    out = window[0] if len(window) == window.maxlen else None
    window.append(v)
    if out is not None and out == lo:
        return min(window)
    return v if v < lo else lo


def _nonfinite(v) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


# readings after a single bf16/fp32 skip that show the run went on past it (rule bf16-nonfinite-grads)
BF16_WENT_ON = 3


class NonFiniteDetector(Detector):
    kinds = ("loss", "grad_norm", "skipped", "overflow", "context", "loss_scale", "labels_masked")

    def __init__(self) -> None:
        self.losses: deque[float] = deque(maxlen=HISTORY)
        self.gnorms: deque[float] = deque(maxlen=HISTORY)
        self.losses_min = self.gnorms_min = math.inf     # min() of each, kept by _append_min
        self.spike: dict | None = None          # last spike seen: {what, value, baseline, step}
        self.spike_age = 0                      # loss events since that spike
        self.bad_gnorm: Event | None = None     # last event if it was a non-finite grad norm
        self.zero_gnorm: Event | None = None    # last event if it was a grad norm of exactly 0
        self.zero_first: Event | None = None    # first of the loss 0 / grad norm 0 readings in a row
        self.zero_count = 0
        self.dtype: str | None = None
        self.nan_symptom: Symptom | None = None
        self.bf16_symptom: Symptom | None = None
        # a first bf16/fp32 skip held back: DeepSpeed skipped one bad batch and the run went on (a skipped step or
        # two is healthy); it is reported at the next skip, or at the end when the run did not go on after it
        self.bf16_pending: Symptom | None = None
        self.bf16_after = 0                     # readings (loss, step lines) since the held skip
        self.nan_iters = 0
        self.bf16_rank: int | None = None
        self.bf16_seen: dict[int, int | None] = {}   # step -> the rank that reported it first
        self.real_loss_seen = False             # a finite, non-zero training loss was logged
        self.masked = 0                         # collator warnings: examples with every label masked
        self.masked_event: Event | None = None
        self.flat: list | None = None           # [first event, loss, count]: the same loss with grad norm 0
        self.flat_said = False
        self.zero_losses: list[float] = []      # losses next to a grad norm of exactly 0, from the first reading
        self.zero_losses_ev: Event | None = None
        self.gn_moved = False                   # a finite non-zero grad norm was read
        self.gn_start: list[float] = []         # the first START finite grad norms
        self.gn_base: float | None = None       # their median, once there are START
        self.gn_high: Event | None = None       # the first of the current run of grad norms GN_GROW x their start
        self.gn_high_run = 0
        self.gn_said = False
        self.start_losses: list[tuple[float, int | None]] = []    # the first START training losses (value, step)
        self.loss_readings = 0
        self.collapse_said = False

    def feed_step(self, evs: list[Event], seq: int):
        if self.bf16_pending is not None:
            self.bf16_after += 1
        got = self._loss(evs[2], seq + 2)                 # feed() of the loss, then of the grad norm
        more = self._grad_norm(evs[3], seq + 3)
        return tagged(2, got) + tagged(3, more) if got or more else ()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        k, d = ev.kind, ev.data
        if self.bf16_pending is not None and k in ("loss", "skipped"):
            self.bf16_after += 1
        if k == "grad_norm":             # (the kinds of nearly every event first)
            return self._grad_norm(ev, seq)
        if k == "loss":
            return self._loss(ev, seq)
        if k == "context":
            if d.get("dtype"):
                self.dtype = d["dtype"]
                if self.nan_symptom is not None and self.nan_symptom.facts.get("dtype") is None:
                    self.nan_symptom.facts["dtype"] = self.dtype
            elif d.get("bf16") or d.get("fp16"):
                self.dtype = "bf16" if d.get("bf16") else "fp16"
            return ()
        if k == "labels_masked":
            self.masked += 1
            self.masked_event = self.masked_event or ev
            s = self.nan_symptom
            if s is not None and s.facts.get("how") == "zero_loss_zero_grad_norm":
                s.facts["masked_warnings"] = self.masked
                if self.masked == 1:
                    s.add_evidence(ev)
            return ()
        if k == "loss_scale":
            v = d.get("value")
            if self.dtype is None and isinstance(v, (int, float)) and v != 1:
                self.dtype = "fp16"          # only fp16 has a dynamic loss scale other than 1
            return ()
        if k == "overflow" and self.dtype is None and d.get("dtype"):
            self.dtype = d["dtype"]
        if k == "skipped":
            bad = self.bad_gnorm
            if bad is not None and d.get("per_interval") and d.get("skipped") == 0 and bad.step == ev.step:
                # Megatron: a non-finite grad norm on an iteration its counters say was not skipped.
                # The update went through (bf16/fp32 have no overflow check unless
                # --check-for-nan-in-loss-and-grad), so the weights are now non-finite.
                self.bad_gnorm = None
                return self._nonfinite(bad, seq, bad.data.get("value"), "grad norm", how="grad_norm_not_skipped")
            nn = d.get("nan_iters")
            if isinstance(nn, int) and nn > 0:
                # Megatron counts NaN iterations per logging interval; live/DS counters are cumulative
                new = nn if d.get("per_interval") else nn - self.nan_iters
                self.nan_iters = nn if not d.get("per_interval") else self.nan_iters + nn
                if new > 0:
                    return self._nonfinite(ev, seq, math.nan, "loss", how="nan_counter")
            return ()
        if k == "overflow" and d.get("dtype") == "bf16":
            return self._bf16(ev, seq)
        return ()

    # ------------------------------------------------------------------ pieces
    def _grad_norm(self, ev: Event, seq: int) -> Iterable[Symptom]:
        v = ev.data.get("value")
        if type(v) is float:             # _nonfinite(v), _finite(v) of a float, without the calls
            fin = v - v == 0.0
            self.bad_gnorm = None if fin else ev
        else:
            fin = _finite(v)
            self.bad_gnorm = ev if _nonfinite(v) else None
        self.zero_gnorm = ev if v == 0 and not isinstance(v, bool) else None
        if fin:
            if v != 0:
                self.gn_moved = True
            out = self._grad_norm_grown(ev, seq, v)
            # the median (a sort of HISTORY values) only when the min does not already rule a spike out
            if len(self.gnorms) >= 3 and v > GNORM_FACTOR * max(self.gnorms_min, 1e-12):
                m = median(self.gnorms)
                if v > GNORM_FACTOR * max(m, 1e-12):
                    self._mark_spike("grad norm", v, m, ev.step)
            self.gnorms_min = _append_min(self.gnorms, self.gnorms_min, v)
            return out
        return ()

    def _grad_norm_grown(self, ev: Event, seq: int, v: float) -> list[Symptom]:
        if len(self.gn_start) < START:
            self.gn_start.append(v)
            return []
        base = self.gn_base
        if base is None:                 # (gn_start is full: its median is made once)
            base = self.gn_base = median(self.gn_start)
        if base <= 0 or v < GN_GROW * base:
            self.gn_high, self.gn_high_run = None, 0
            return []
        self.gn_high = self.gn_high or ev
        self.gn_high_run += 1
        if self.gn_high_run < GN_GROW_RUN or self.gn_said:
            return []
        self.gn_said = True
        first = self.gn_high
        s = symptom_from(first, seq, "grad_norm_exploding", key=(), grad_norm=v, start=round(base, 4),
                         ratio=float(f"{v / base:.2g}"), first_step=first.step, last_step=ev.step, run=self.gn_high_run,
                         last_loss=self.losses[-1] if self.losses else None, **({"dtype": self.dtype} if self.dtype else {}))
        s.add_evidence(ev)
        return [s]

    def _loss(self, ev: Event, seq: int) -> Iterable[Symptom]:
        v = ev.data.get("value")
        name = ev.data.get("name") or "loss"
        if type(v) is not float or v - v != 0.0:     # (a finite float: neither test below, without the calls)
            if _nonfinite(v):
                return self._nonfinite(ev, seq, v, name, how="missing_field" if ev.data.get("missing") else "value")
            if not _finite(v):
                return ()
        bad, zero = self.bad_gnorm, self.zero_gnorm
        self.bad_gnorm = self.zero_gnorm = None
        if v == 0.0 and bad is not None and (bad.step == ev.step or bad.line == ev.line):
            # HF Trainer: after a NaN every step is skipped and logs loss 0 with grad_norm nan/inf
            return self._nonfinite(ev, seq, "0 with grad_norm " + _text(bad.data.get("value")), name,
                                   how="grad_norm_with_zero_loss")
        if name.startswith("eval"):
            return ()
        zero_gn = zero is not None and (zero.step == ev.step or zero.line == ev.line)
        # a Trainer row whose real loss drops at once to exactly 0.0: the filter's mark whatever the grad
        # norm says (transformers 4.36 logs none; 4.46 with DeepSpeed 0.16 a finite one), while a loss
        # converging to 0 logs 0.0003, 0.0001 first
        sudden = ev.data.get("grad_norm_logged") is not None and bool(self.losses) \
            and self.losses[-1] >= ZERO_AFTER_LOSS
        if v == 0.0 and (zero_gn or sudden) and not ev.data.get("no_advantage"):
            # transformers/trainer.py _inner_training_loop: with logging_nan_inf_filter (default True)
            # a NaN/Inf step adds nothing to the logged loss, so a window of NaN steps logs 'loss' 0.0;
            # with the step's gradients never computed or skipped the grad norm reads 0 as well.
            # A real loss is never exactly 0 step after step.
            self.zero_first = self.zero_first or ev
            self.zero_count += 1
            if self.zero_count == ZERO_RUN:
                # from the first logged step with no real loss before, and with a collator saying it
                # masked whole examples: no token carries a label, rather than a divergence
                out = self._nonfinite(self.zero_first, seq, "0 with grad_norm 0" if zero_gn else "0", name,
                                      how="zero_loss_zero_grad_norm" if zero_gn else "zero_loss_sudden",
                                      grad_norm_logged=ev.data.get("grad_norm_logged"),
                                      zero_run=ZERO_RUN, from_start=not self.real_loss_seen,
                                      masked_warnings=self.masked)
                if self.masked_event is not None and self.nan_symptom is not None:
                    self.nan_symptom.add_evidence(self.masked_event)
                return out
            if self.zero_count > ZERO_RUN and self.nan_symptom is not None \
                    and self.nan_symptom.facts.get("how") in ("zero_loss_zero_grad_norm", "zero_loss_sudden"):
                self.nan_symptom.facts["zero_run"] = self.zero_count
            return ()
        self.zero_first, self.zero_count = None, 0
        collapsed: list[Symptom] = []
        if v != 0.0:
            self.real_loss_seen = True
            if zero is not None and (zero.step == ev.step or zero.line == ev.line):
                flat = self._flat(ev, seq, v, name) or self._scatter(ev, seq, v, name)
                if flat:
                    return flat
            elif zero is not None:               # (live hooks write a step's grad norm after its loss)
                self.flat = None
                flat = self._scatter(ev, seq, v, name)
                if flat:
                    return flat
            else:
                self.flat = None
                self.zero_losses.clear()
            collapsed = self._collapsed(ev, seq, v, name)
        if len(self.losses) >= 3 and v > SPIKE_FACTOR * self.losses_min:    # else below 1.5x the median too
            m = median(self.losses)
            if v > SPIKE_FACTOR * m and v - m > 0.5:
                self._mark_spike("loss", v, m, ev.step)
        self.losses_min = _append_min(self.losses, self.losses_min, v)
        self.spike_age += 1
        return collapsed

    def _flat(self, ev: Event, seq: int, v: float, name: str) -> list[Symptom]:
        """The same training loss logged again and again with a grad norm of exactly 0: different batches
        never give the same loss to the printed digits, so the output does not depend on the weights being
        trained, and no gradient reaches them (every parameter frozen, the graph cut, a learning rate of 0)."""
        if self.flat is None or self.flat[1] != v:
            self.flat = [ev, v, 1]
            return []
        self.flat[2] += 1
        if self.flat[2] != FLAT_RUN or self.flat_said:
            return []
        self.flat_said = True
        s = symptom_from(self.flat[0], seq, "no_gradient", key=("no_gradient",), loss=v, name=name, run=FLAT_RUN,
                         last_step=ev.step, how="same")
        s.add_evidence(ev)
        return [s]

    def _scatter(self, ev: Event, seq: int, v: float, name: str) -> list[Symptom]:
        """Every grad norm so far exactly 0 while the loss only scatters around one level: the output
        moves with the batch, no weight learns (see SCATTER_RUN)."""
        if self.gn_moved or self.flat_said:
            self.zero_losses.clear()
            return []
        if not self.zero_losses:
            self.zero_losses_ev = ev
        self.zero_losses.append(v)
        z = self.zero_losses
        if len(z) < SCATTER_RUN or median(z[-START:]) < SCATTER_KEEP * median(z[:START]):
            if len(z) >= 4 * SCATTER_RUN:
                del z[START:-START]            # bounded: the first and the latest readings are what count
            return []
        self.flat_said = True
        s = symptom_from(self.zero_losses_ev or ev, seq, "no_gradient", key=("no_gradient",), loss=round(median(z), 4),
                         low=min(z), high=max(z), name=name, run=len(z), how="scatter", last_step=ev.step)
        s.add_evidence(ev)
        return [s]

    def _collapsed(self, ev: Event, seq: int, v: float, name: str) -> list[Symptom]:
        """The training loss fell to COLLAPSE x where it started within COLLAPSE_STEPS steps."""
        self.loss_readings += 1
        if v < 0:
            self.collapse_said = True      # a loss that goes negative is no likelihood: its ratios say nothing
        if len(self.start_losses) < START:
            self.start_losses.append((v, ev.step))
            return []
        if self.collapse_said:
            return []
        first_step = self.start_losses[0][1]
        if ev.step is not None and first_step is not None:
            if ev.step - first_step > COLLAPSE_STEPS:
                return []
        elif self.loss_readings > COLLAPSE_READINGS:
            return []
        first = [x for x, _ in self.start_losses]
        start = median(first)
        recent = list(self.losses)[-(START - 1):] + [v]
        # (a start that scatters by more than START_SPREAD is no start: a loss that blew up at step 2 and then
        # fell from 1e15 to 1e12, AdamW at lr 30, run here)
        if (start < COLLAPSE_MIN_START or max(first) > START_SPREAD * min(first) or len(recent) < START
                or median(recent) > COLLAPSE * start):
            return []
        self.collapse_said = True
        return [symptom_from(ev, seq, "loss_collapsed", key=(), loss=round(median(recent), 6), start=round(start, 4),
                             ratio=float(f"{median(recent) / start:.2g}"), first_step=first_step, step=ev.step,
                             within_steps=(ev.step - first_step) if ev.step is not None and first_step is not None else None,
                             readings=self.loss_readings, name=name)]

    def _mark_spike(self, what: str, value: float, base: float, step) -> None:
        # keep the first spike of a run-up to a NaN (resume before it); an old one is forgotten
        if self.spike is None or self.spike_age > HISTORY:
            self.spike = {"what": what, "value": value, "baseline": base, "step": step, "count": 0}
        self.spike["count"] += 1
        self.spike_age = 0

    def _nonfinite(self, ev: Event, seq: int, value, name: str, how: str, **more) -> Iterable[Symptom]:
        if self.nan_symptom is not None:
            s = self.nan_symptom
            s.facts["nan_count"] = s.facts.get("nan_count", 1) + 1
            # inputs are read one after the other (a console log, then the ranks' event files):
            # the earliest step and the rank that saw it may come from a later input
            first = s.facts.get("first_step")
            if ev.step is not None and (first is None or ev.step < first):
                s.facts["first_step"] = ev.step
            if ev.rank is not None and (not s.ranks or (first is not None and ev.step is not None
                                                        and ev.step < first)):
                s.ranks.add(ev.rank)
            if ev.step is not None and len(s.steps) < 64 and ev.step not in s.steps:
                s.steps.append(ev.step)
            if ev.data.get("anomaly") and not s.facts.get("anomaly"):
                # autograd's anomaly mode names the function that made it (formats/anomaly.py): the
                # most telling line, even after the loss readings that said it first
                s.facts["anomaly"] = ev.data["anomaly"]
                s.add_evidence(ev)
            return ()
        recent = self.spike is not None and self.spike_age <= HISTORY
        facts = dict(first_step=ev.step, value=_text(value), name=name, how=how,
                     source=ev.source, nan_count=1,
                     preceded_by_spike=bool(recent),
                     spike=self.spike if recent else None,
                     last_finite_loss=self.losses[-1] if self.losses else None, **more)
        if self.dtype:
            facts["dtype"] = self.dtype      # else the run context's dtype (--config) shows through
        s = symptom_from(ev, seq, "nonfinite_loss", key=(), **facts)
        self.nan_symptom = s          # kept: later NaNs update the same symptom in place
        return (s,)

    def _bf16(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if self.bf16_symptom is not None:
            s = self.bf16_symptom
            if ev.step is not None and ev.step in self.bf16_seen and self.bf16_seen[ev.step] != ev.rank:
                return ()             # the same skipped step, reported by another rank
            # (the same rank again at the same step: the log's step counter lags, each line is a skip)
            if ev.rank is not None and self.bf16_rank is not None and ev.rank != self.bf16_rank and ev.step is None:
                return ()             # count one rank's reports when the steps are unknown
            s.facts["skipped_steps"] += 1
            if ev.step is not None and len(self.bf16_seen) < 100_000:
                self.bf16_seen.setdefault(ev.step, ev.rank)
            s.add_evidence(ev) if len(s.evidence) < 3 else None
            if ev.step is not None and len(s.steps) < 64 and ev.step not in s.steps:
                s.steps.append(ev.step)
            if self.bf16_pending is not None:
                self.bf16_pending = None
                return (s,)
            return ()
        self.bf16_rank = ev.rank
        if ev.step is not None:
            self.bf16_seen[ev.step] = ev.rank
        s = symptom_from(ev, seq, "bf16_nonfinite_grads", key=(), skipped_steps=1, first_step=ev.step,
                         dtype="bf16", preceded_by_spike=self.spike is not None)
        self.bf16_symptom = self.bf16_pending = s
        self.bf16_after = 0
        return ()

    def finish(self) -> Iterable[Symptom]:
        # the one skip was the run's last news (the log ends there), or a NaN/Inf loss was read too (the skip is its
        # trace in the optimizer): it is reported
        if self.bf16_pending is not None and (self.bf16_after < BF16_WENT_ON or self.nan_symptom is not None):
            return (self.bf16_pending,)
        return ()


def _text(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:g}"
    return str(v)
