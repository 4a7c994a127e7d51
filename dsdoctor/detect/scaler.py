"""fp16 dynamic loss scale: healthy calibration vs collapse.

A few overflows while the scale calibrates down from 2^16 (or 2^32) at the start, and a
single overflow after each scale increase (every loss_scale_window clean steps), are how
dynamic loss scaling works. A collapse is the trend: overflows in a streak after the scale
had settled, a scale far below its settled value (>= 8 halvings) or at the floor
(<= 2^4 or min_loss_scale), 'from 1 to 1' loops (ZeRO-0: no exception ever comes), or
DeepSpeed's 'Current loss scale already at minimum' exception (ZeRO 1-3).

Input: `overflow`, `loss_scale` (Megatron's field, live readings), `scale_at_minimum`,
progress events with a step (`loss`, `step`, `skipped`, `throughput`) to count clean steps,
and `context` (min_loss_scale, dtype). A scale drop seen only in `loss_scale` values (Megatron
without DeepSpeed's overflow lines) counts as overflows too.

Incremental: `feed()` returns the collapse symptom as soon as the trend is clear and keeps
its facts up to date afterwards (the live mode reads `steps_left` to warn before the
exception); `finish()` adds an info symptom for a run that only calibrated.
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Iterable

from ..events import Event
from ..findings import MAX_EVIDENCE, Evidence, Symptom
from .base import Detector, symptom_from, tagged

SETTLE_STEPS = 20        # clean steps that make the current scale the settled one
CALIBRATION_STEPS = 200  # overflows before this step (with no settled scale yet) calibrate
STREAK_GAP = 2           # overflows at most this many steps apart belong to one streak
STREAK_COLLAPSE = 4      # a streak this long after settling is a collapse
FAR_HALVINGS = 8
FLOOR = 16               # 2^4
# DeepSpeed's step lines carry the running total of skipped steps ('step=N, skipped=M'). A
# dynamic scaler cannot skip more steps in a row than it takes to halve from its initial
# scale (2^initial_scale_power, at most 2^32) to the floor, twice that with hysteresis 2:
# 90 % of SKIP_RUN steps or more skipped is overflow on step after step, even when the
# OVERFLOW lines themselves are not in the log (a pasted excerpt, rank-0-only logging).
SKIP_RUN = 50
SKIP_RATIO = 0.9


class LossScaleDetector(Detector):
    kinds = ("overflow", "loss_scale", "scale_at_minimum", "context", "loss", "step", "skipped", "throughput",
             "grad_norm")

    def __init__(self) -> None:
        self.min_scale: float = 1
        self.start_scale: float | None = None
        self.cur: float | None = None
        self.settled: float | None = None
        self.last_step: int | None = None
        self.clean_count = 0                     # progress events since the last overflow
        self.overflows = 0
        self.one_to_one = 0
        self.at_minimum = False
        self.nan_seen = False          # a non-finite loss / grad norm came before the collapse was judged
        self.streak = 0
        self.max_streak = 0
        self.streak_start: tuple[int | None, float | None] = (None, None)   # (step, scale)
        self.last_ovf_step: int | None = None
        self.late = False
        self.streak_late = False
        self.first_overflow: Event | None = None
        self.streak_events: deque[Event] = deque(maxlen=6)   # evidence: the current streak
        self.first_seq = 0
        self.symptom: Symptom | None = None
        self.recent: deque[tuple] = deque(maxlen=16)      # recent overflow keys (see _replica)
        self.replicas = 0
        self.lowest: float | None = None
        self.skip_point: tuple[int, int] | None = None    # last (step, cumulative skipped) seen
        self.interval_skipped = 0                          # Megatron's per-interval counts, summed
        self.skip_run = (0, 0)                           # (steps, skipped) of the current mostly-skipped run
        self.skip_events: deque[Event] = deque(maxlen=3)
        self.skip_from_start = False
        self.static: Symptom | None = None                 # overflows at a static (fixed) loss scale
        self.static_config: float | None = None            # the static scale the run context names
        self.static_overflows = 0
        self.static_streak = 0
        self.static_last: int | None = None

    # ------------------------------------------------------------------ events
    def feed_step(self, evs: list[Event], seq: int):
        got = self.feed(evs[0], seq)
        lv, gv = evs[2].data.get("value"), evs[3].data.get("value")
        if type(lv) is float and lv - lv == 0.0 and type(gv) is float and gv - gv == 0.0:
            # a finite loss and grad norm of the step just read: their feed() changes nothing
            # (_progress: the same step; _settle: done)
            return tagged(0, got) if got else ()
        more, last = self.feed(evs[2], seq + 2), self.feed(evs[3], seq + 3)
        return tagged(0, got) + tagged(2, more) + tagged(3, last) if got or more or last else ()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        k, d = ev.kind, ev.data
        if k == "context":
            mls = d.get("min_loss_scale")
            if isinstance(mls, (int, float)) and mls > 0:
                self.min_scale = mls
            fixed = d.get("static_loss_scale")      # live: fp16.loss_scale > 0, a scale that never moves
            if isinstance(fixed, (int, float)) and fixed > 0:
                self.static_config = fixed
            return ()
        if k == "overflow":
            if d.get("dtype") == "bf16" or (d.get("new_scale") is None and not d.get("static")):
                return ()            # bf16 skips: see nonfinite.py
            mls = d.get("min_scale")          # a scaler whose floor is not DeepSpeed's (fairseq: 1e-4)
            if isinstance(mls, (int, float)) and mls > 0:
                self.min_scale = mls
            if self._replica(ev):
                self.replicas += 1
                return ()
            if d.get("static") or (self.static_config is not None and d.get("new_scale") == self.static_config
                                   and d.get("prev_scale") in (None, self.static_config)):
                return self._static_overflow(ev, seq)
            return self._overflow(ev, seq, d.get("prev_scale"), d.get("new_scale"), 1)
        if k == "scale_at_minimum":
            mls = d.get("min_scale")
            if isinstance(mls, (int, float)) and mls > 0:
                self.min_scale = mls
            self.at_minimum = True
            return self._judge(ev, seq)
        if k == "loss_scale":
            mls = d.get("min_scale")          # live readings carry the configured floor
            if isinstance(mls, (int, float)) and mls > 0:
                self.min_scale = mls
            v = d.get("value")
            if not isinstance(v, (int, float)) or v <= 0:
                return ()
            self._progress(ev)
            if self.cur is not None and v < self.cur:
                # a drop nobody logged as an overflow (Megatron's own optimizer, live readings)
                n = max(1, round(math.log2(self.cur / v)))
                return self._overflow(ev, seq, self.cur, v, n)
            if self.start_scale is None:
                self.start_scale = v
            self.cur = v
            self._settle()
            return ()
        if (k in ("loss", "grad_norm") and isinstance(d.get("value"), float) and not math.isfinite(d["value"])) \
                or (k == "skipped" and isinstance(d.get("nan_iters"), int) and d["nan_iters"] > 0):
            # a NaN before the scale had collapsed is the cause (rule nan-loss); one after it, the
            # collapse's last stage (rule loss-scale-collapse-before-nan)
            if self.symptom is None:
                self.nan_seen = True
            elif not self.nan_seen:
                self.symptom.facts["nan_after_collapse"] = True
        if k == "grad_norm":
            return ()
        self._progress(ev)
        self._settle()
        if k == "skipped" and not d.get("per_interval"):
            return self._skipped_total(ev, seq)
        if k == "skipped" and isinstance(d.get("skipped"), int) and not isinstance(d.get("skipped"), bool):
            # Megatron counts the skipped iterations of each logging interval ('number of skipped
            # iterations: 10 |' of training_log): summed, they are the running total DeepSpeed prints, so a
            # paste of only the last records, every iteration skipped at 'loss scale: 1.0', is read as one
            self.interval_skipped += d["skipped"]
            return self._skipped_total(dataclasses.replace(ev, data={**d, "skipped": self.interval_skipped}), seq)
        return ()

    def _skipped_total(self, ev: Event, seq: int) -> Iterable[Symptom]:
        """A step line's running total of skipped steps: a long run in which nearly every
        step was skipped is a collapse, whatever else the log shows."""
        step, total = ev.step, ev.data.get("skipped")
        if not isinstance(step, int) or not isinstance(total, int) or isinstance(total, bool):
            return ()
        prev = self.skip_point
        if prev is None and total >= SKIP_RATIO * step > 0:
            prev = (0, 0)                 # skipping from the very first step
            self.skip_from_start = True
        self.skip_point = (step, total)
        if prev is None or step <= prev[0] or total < prev[1]:
            return ()                     # the first line, a replica, or a restart
        dstep, dskip = step - prev[0], total - prev[1]
        if dskip >= SKIP_RATIO * dstep:
            self.skip_run = (self.skip_run[0] + dstep, self.skip_run[1] + dskip)
            self.skip_events.append(ev)
        else:
            self.skip_run = (0, 0)
            self.skip_events.clear()
        if self.skip_run[0] < SKIP_RUN or self.symptom is not None:
            return ()
        self.late = not self.skip_from_start   # from step 1: the scale never found a level that fits
        if self.first_overflow is None:
            self.first_overflow, self.first_seq = self.skip_events[0], seq
        self.streak_events.extend(self.skip_events)
        return self._judge(ev, seq)

    def _static_overflow(self, ev: Event, seq: int) -> Iterable[Symptom]:
        """An overflow at a static loss scale (fp16.loss_scale > 0): nothing calibrates, the step
        is skipped and the next one overflows the same way. A run of them is no progress at all."""
        self.static_overflows += 1
        step = ev.step
        near = step is not None and self.static_last is not None and 0 < step - self.static_last <= STREAK_GAP
        self.static_streak = self.static_streak + 1 if near or (step is None and self.static_streak) else 1
        self.static_last = step if step is not None else self.static_last
        facts = dict(static_scale=ev.data.get("scale") or ev.data.get("new_scale") or self.static_config,
                     overflows=self.static_overflows, streak=self.static_streak)
        if self.static is not None:
            self.static.facts.update(facts)
            self.static.add_evidence(ev)
            return ()
        if self.static_streak < STREAK_COLLAPSE:
            return ()
        self.static = symptom_from(ev, seq, "loss_scale_static_overflow", key=(), **facts)
        return (self.static,)

    def _replica(self, ev: Event) -> bool:
        """The same overflow printed again by another rank. The loss scale is one value for the
        whole job (the overflow check is all-reduced), so every rank logs the same transition for
        the same iteration; when several ranks print into one stream without prefixes, counting
        each copy would make calibration look like a streak. A copy is an overflow already seen
        for this iteration (same step and scales), or one that claims to reduce from a scale
        above the current one while the step has not moved on (a scale only grows after
        loss_scale_window clean steps)."""
        d = ev.data
        prev, new = d.get("prev_scale"), d.get("new_scale")
        key = (ev.step, prev, new, d.get("hysteresis"))
        if ev.step is None and prev == new and isinstance(new, (int, float)) and new <= max(1, self.min_scale):
            return False          # 'from 1 to 1' at the floor: stuck whichever rank printed it
        if key in self.recent:
            return True
        if (isinstance(prev, (int, float)) and self.cur is not None and prev > self.cur
                and (ev.step is None or self.last_ovf_step is None or ev.step <= self.last_ovf_step)
                and self.overflows and self.clean_count <= STREAK_GAP):
            return True
        self.recent.append(key)
        return False

    def _progress(self, ev: Event) -> None:
        if ev.step is not None:
            if self.last_step is None or ev.step > self.last_step:
                if self.last_step is not None:
                    self.clean_count += 1
                self.last_step = ev.step
        elif ev.kind in ("step", "skipped"):
            self.clean_count += 1

    def _settle(self) -> None:
        if self.cur is None:
            return
        clean = self.clean_count if self.last_ovf_step is None or self.last_step is None \
            else self.last_step - self.last_ovf_step
        if clean >= SETTLE_STEPS and (self.settled is None or self.cur > self.settled):
            self.settled = self.cur
        if clean > STREAK_GAP:
            self.streak = 0

    def _overflow(self, ev: Event, seq: int, prev, new, n: int) -> Iterable[Symptom]:
        step = ev.step
        if step is not None and (self.last_step is None or step > self.last_step):
            self.last_step = step
        if self.first_overflow is None:
            self.first_overflow, self.first_seq = ev, seq
        if isinstance(prev, (int, float)) and self.start_scale is None:
            self.start_scale = prev
        if isinstance(prev, (int, float)) and isinstance(new, (int, float)) and prev == new \
                and new <= max(1, self.min_scale):
            self.one_to_one += 1
        gap = None
        if step is not None and self.last_ovf_step is not None:
            gap = step - self.last_ovf_step
        elif step is None:
            gap = 0 if self.clean_count <= STREAK_GAP else None
        if self.streak and gap is not None and gap <= STREAK_GAP:
            self.streak += n
        else:
            self.streak = n
            self.streak_events.clear()
            self.streak_start = (step, prev if isinstance(prev, (int, float)) else self.cur)
            # late: after the scale had settled, or far into a run (a log that starts mid-run)
            self.streak_late = self.settled is not None or (step is not None and step >= CALIBRATION_STEPS)
        self.streak_events.append(ev)
        self.max_streak = max(self.max_streak, self.streak)
        self.overflows += n
        self.clean_count = 0
        if step is not None:
            self.last_ovf_step = step
        if isinstance(new, (int, float)):
            self.cur = new
            self.lowest = new if self.lowest is None else min(self.lowest, new)
        self.late = self.late or (self.streak_late and self.streak >= 2)
        return self._judge(ev, seq)

    # ------------------------------------------------------------------ verdict
    def halvings(self) -> int:
        ref = self.settled or self.start_scale
        if not ref or not self.cur or self.cur >= ref:
            return 0
        return int(round(math.log2(ref / self.cur)))

    def steps_left(self) -> int | None:
        """Steps until min_loss_scale at the rate of the current streak (0: already there)."""
        if self.cur is None:
            return None
        remaining = math.log2(self.cur / self.min_scale) if self.cur > self.min_scale else 0
        if remaining <= 0:
            return 0
        s0, sc0 = self.streak_start
        if not self.streak or sc0 is None or not self.cur or sc0 <= self.cur:
            return None
        halved = math.log2(sc0 / self.cur)
        span = (self.last_ovf_step - s0 + 1) if (s0 is not None and self.last_ovf_step is not None) else self.streak
        rate = halved / max(span, 1)
        return int(math.ceil(remaining / rate)) if rate > 0 else None

    def floor(self) -> float:
        """Near the minimum: within 4 halvings of it (DeepSpeed: 16 for min_loss_scale 1)."""
        return max(FLOOR, self.min_scale) if self.min_scale >= 1 else FLOOR * self.min_scale

    def collapsed(self) -> bool:
        floor = self.floor()
        return (self.at_minimum or self.one_to_one >= 2
                or (self.cur is not None and self.overflows > 0 and self.cur <= floor)
                or (self.settled is not None and self.halvings() >= FAR_HALVINGS)
                or (self.streak_late and self.streak >= STREAK_COLLAPSE)
                or self.skip_run[0] >= SKIP_RUN)

    def facts(self) -> dict:
        return dict(start_scale=self.start_scale, settled_scale=self.settled, end_scale=self.cur,
                    halvings=self.halvings(), overflows=self.overflows, streak=self.max_streak,
                    at_minimum=self.at_minimum, one_to_one=self.one_to_one, late=self.late,
                    steps_left=self.steps_left(), scale_floor=self.min_scale, replicas=self.replicas,
                    lowest_scale=self.lowest, skipped_run_steps=self.skip_run[0] or None,
                    skipped_said_by="Megatron" if self.interval_skipped else "DeepSpeed",
                    skipped_run=self.skip_run[1] or None)

    def _judge(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if self.symptom is not None:
            # already reported: keep the facts current (live mode reads steps_left), add evidence
            self.symptom.facts.update(self.facts())
            ev_list = self.symptom.evidence
            if len(ev_list) >= MAX_EVIDENCE and ev.kind == "overflow" and ev.text is not None:
                ev_list[-1] = Evidence(ev.source, ev.line, ev.text)   # full: the last slot shows how low it went
            else:
                self.symptom.add_evidence(ev)
            _decisive_first(self.symptom, ev)
            if ev.step is not None and ev.step not in self.symptom.steps and len(self.symptom.steps) < 64:
                self.symptom.steps.append(ev.step)
            return ()
        if not self.collapsed():
            return ()
        first = self.first_overflow or ev
        s = symptom_from(first, self.first_seq or seq, "loss_scale_collapse", key=(), **self.facts(),
                         nan_after_collapse=False)
        for e in list(self.streak_events) + [ev]:
            if e is not first and all(x.line != e.line for x in s.evidence):
                s.add_evidence(e)
            if e.step is not None and e.step not in s.steps:
                s.steps.append(e.step)
        self.symptom = s
        _decisive_first(s, ev)
        return (s,)

    def finish(self) -> Iterable[Symptom]:
        if self.symptom is not None:
            self.symptom.facts.update(self.facts())
            return ()
        if self.overflows and self.first_overflow is not None and not self.late:
            # only calibration / the periodic overflow after a scale increase: healthy
            return (symptom_from(self.first_overflow, self.first_seq, "loss_scale_calibration", key=(),
                                 **self.facts()),)
        return ()


def _decisive_first(s: Symptom, ev: Event) -> None:
    """DeepSpeed's 'Current loss scale already at minimum' ends the run: quote it first (the
    overflow lines before it are the story, it is the verdict), even when the evidence is full."""
    if ev.kind != "scale_at_minimum" or ev.text is None:
        return
    rest = [e for e in s.evidence if not (e.source == ev.source and e.line == ev.line)]
    s.evidence[:] = [Evidence(ev.source, ev.line, ev.text)] + rest[:MAX_EVIDENCE - 1]
