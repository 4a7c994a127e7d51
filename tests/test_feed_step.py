"""Diagnoser.feed_step (a live step's events at once) gives what feed() of each gives: the same
findings in the same order, the same symptoms and every detector's state, on random runs with
the stories feed_step shortcuts (steps that go back, relaunches, NaN, spikes, skipped steps)."""
from __future__ import annotations

import math
import random
from collections import deque

import pytest

from dsdoctor.api import Watch
from dsdoctor.events import Event
from dsdoctor.pipeline import Diagnoser

STEP_KINDS = ("step", "lr", "loss", "grad_norm")
SKIP = {"context"}               # (the run's Context: not a detector's own state)


def _norm(x, seen=None):
    """A comparable form of a detector's state (objects without __eq__ as their fields)."""
    seen = set() if seen is None else seen
    if isinstance(x, (int, float, str, bytes, bool, type(None))):
        return ("nan",) if isinstance(x, float) and math.isnan(x) else x
    if id(x) in seen:
        return ("cycle", type(x).__name__)
    seen = seen | {id(x)}
    if isinstance(x, dict):
        return ("dict", tuple((_norm(k, seen), _norm(v, seen)) for k, v in x.items()))
    if isinstance(x, (list, tuple, deque)):
        return (type(x).__name__, tuple(_norm(v, seen) for v in x))
    if isinstance(x, (set, frozenset)):
        return ("set", tuple(sorted(repr(_norm(v, seen)) for v in x)))
    if callable(x) and not hasattr(x, "__dict__"):
        return ("callable", getattr(x, "__qualname__", repr(type(x))))
    fields = {}
    if hasattr(x, "__dict__"):
        fields.update(vars(x))
    for cls in type(x).__mro__:
        for s in getattr(cls, "__slots__", ()):
            if hasattr(x, s):
                fields[s] = getattr(x, s)
    return (type(x).__name__, tuple((k, _norm(v, seen)) for k, v in sorted(fields.items()) if k not in SKIP))


def _run(rng: random.Random, n: int) -> list[list[Event] | Event]:
    """Items as the live session hands them over: a step's events as one list, other kinds alone."""
    items: list = [Event("context", 0, None, None, {"dtype": rng.choice(["fp16", "bf16", "fp32"]), "zero_stage": 2})]
    t, step, lr, loss, scale = 1.7e9, 0, 1e-4, 3.0, 65536.0
    for _ in range(n):
        step += 1
        r = rng.random()
        if r < 0.02:
            step = rng.randint(0, max(step - 1, 0))          # a relaunch, a loop counting again
        elif r < 0.03:
            items.append(Event("run_start", 0, None, t, {"strong": rng.random() < 0.5}))
        elif r < 0.04:
            scale /= 2
            items.append(Event("overflow", 0, step, t, {"prev_scale": scale * 2, "new_scale": scale}))
        elif r < 0.05:
            items.append(Event("loss_scale", 0, step, t, {"value": scale}))
        elif r < 0.055:
            items.append(Event("exit", 0, None, t, {"exitcode": 1}))
        t += rng.choice([0.01, 0.02, 0.2, 0.0])
        lr = lr * rng.choice([1.0, 1.0, 0.99, 1.1, 0.0 + 1.0])
        loss = max(1e-3, loss * rng.uniform(0.9, 1.08))
        lv = rng.choice([loss] * 30 + [math.nan, math.inf, loss * 50, 0.0])
        gn = rng.choice([0.5, 0.7, 1.2, 0.0, math.nan, 900.0] + [0.6] * 20)
        evs = [Event("step", 0, step, t, {"micro_steps": 1, "fwd_ms": rng.uniform(3, 9), "bwd_ms": 5.2,
                                           "step_ms": rng.choice([4.4, 4.4, 40.0]), "data_ms": 0.05})]
        if rng.random() < 0.9:
            evs.append(Event("lr", 0, step, t, {"value": lr}))
        if rng.random() < 0.95:
            evs.append(Event("loss", 0, step, t, {"value": lv, "name": "loss"}))
        if rng.random() < 0.9:
            evs.append(Event("grad_norm", 0, step, t, {"value": gn}))
        items.append(evs if rng.random() < 0.95 else [evs[0]])
    return items


@pytest.mark.parametrize("seed", range(40))
def test_feed_step_is_feed_of_each(seed):
    rng = random.Random(seed)
    items = _run(rng, rng.choice([30, 200, 700]))
    one, each = Diagnoser(), Diagnoser()
    got_one, got_each = [], []
    for it in items:
        if isinstance(it, list):
            got_one += one.feed_step(it)
            for ev in it:
                got_each += each.feed(ev)
            assert one.seq == each.seq and one.events_seen == each.events_seen
        else:
            got_one += one.feed(it)
            got_each += each.feed(it)
    assert [(f.rule, f.title, f.ranks, f.steps) for f in got_one] == \
        [(f.rule, f.title, f.ranks, f.steps) for f in got_each]
    for a, b in zip(one.detectors, each.detectors):
        assert _norm(a) == _norm(b), type(a).__name__
    assert _norm(one.symptoms) == _norm(each.symptoms)
    fa, fb = one.finish(), each.finish()
    assert [(f.rule, f.title, f.ranks, f.steps) for f in fa] == [(f.rule, f.title, f.ranks, f.steps) for f in fb]


def test_feed_step_of_other_kinds_is_feed_of_each():
    """A list that is not a step as the hooks make it (a memory event in it) is fed event by event."""
    d, e = Diagnoser(), Diagnoser()
    evs = [Event("step", 0, 1, 1.0, {"fwd_ms": 1.0}), Event("memory", 0, 1, 1.0, {"rss": 5})]
    d.feed_step(evs)
    for ev in evs:
        e.feed(ev)
    assert [_norm(x) for x in d.detectors] == [_norm(x) for x in e.detectors]


def test_the_shortcut_detectors_give_no_symptom_for_a_steps_later_events():
    """feed_step feeds them after the step's other detectors: right only while they return none."""
    d = Diagnoser()
    assert {type(x).__name__ for x in d._rest} == {"FailureDetector", "RelaunchDetector"}
    for det in d._rest:
        for seq, k in enumerate(STEP_KINDS, 1):
            assert not det.feed(Event(k, 0, 3, 1.0, {"value": 1.0}), seq)


def test_watch_feed_step_of_a_subclass_feeds_each():
    seen = []

    class Mine(Watch):
        def feed(self, ev):
            seen.append(ev.kind)
            return []
    Mine().feed_step([Event("step", 0, 1, 1.0, {}), Event("loss", 0, 1, 1.0, {"value": 1.0})])
    assert seen == ["step", "loss"]


@pytest.mark.parametrize("seed", range(20))
def test_nonfinite_keeps_the_min_of_its_windows(seed):
    """NonFiniteDetector's losses_min / gnorms_min stand for min(losses) / min(gnorms), which it
    used to compute per value: equal after every event, on series where the min falls out often."""
    from dsdoctor.detect.nonfinite import NonFiniteDetector, _append_min
    rng = random.Random(seed)
    det = NonFiniteDetector()
    for seq, it in enumerate(_run(rng, 600)):
        for ev in (it if isinstance(it, list) else [it]):
            if ev.kind in det.kinds:
                det.feed(ev, seq)
            for q, lo in ((det.losses, det.losses_min), (det.gnorms, det.gnorms_min)):
                assert lo == (min(q) if q else math.inf)
    q, lo = deque(maxlen=5), math.inf
    for _ in range(3000):
        lo = _append_min(q, lo, rng.choice([rng.random(), 0.5, 0, -0.0, 0.0, 1, rng.randint(0, 3)]))
        assert lo == min(q)


def test_eval_names_remembered_as_the_regex_says():
    from dsdoctor.detect.lr import _EVAL_NAME, _is_eval_name
    for name in ["loss", "eval_loss", "val", "validation loss", "test/loss", "train_loss", None, "", 3,
                 "Eval", "evaluate", "val_acc", "loss", "eval_loss"]:
        assert _is_eval_name(name) == bool(_EVAL_NAME.match(str(name or "")))
