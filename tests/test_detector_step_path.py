"""The detectors' per-step path made cheaper for live mode (a step's loss, grad norm, LR and phase
times): the same answers as the code it replaced, on random runs with the stories it must keep
(steps that go back, relaunches, NaN, spikes, zero grad norms, overflows). Checked besides, off the
repo: a digest of every detector's state and findings after 150 random runs (one and several ranks,
two sources) equal to main's code."""
from __future__ import annotations

import math
import random
from collections import deque

import pytest

from dsdoctor.events import Event


def _run(rng: random.Random, n: int) -> list[list[Event] | Event]:
    """A run's events: each step's as one list (step, lr, loss, grad norm: as the live hooks make
    them), other kinds alone."""
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


def test_another_rank_seen_as_any_said():
    """RelaunchDetector's 'a rank other than this one is in rank_max' (len and `in` on the distinct
    keys), against the any() over the keys it replaced."""
    rng = random.Random(7)
    for _ in range(3000):
        keys = {rng.choice([0, 1, 2, 3, None, 1.0]): 0 for _ in range(rng.randint(0, 3))}
        rank = rng.choice([0, 1, 2, 1.0, None])
        assert (len(keys) > 1 or (bool(keys) and rank not in keys)) == any(r != rank for r in keys)


def _state(x, seen=None):
    """A detector's whole state as plain values (objects by their fields, events and symptoms
    too), to compare two detectors fed the same events two ways."""
    seen = set() if seen is None else seen
    if isinstance(x, float):
        return repr(x)
    if x is None or isinstance(x, (bool, int, str, bytes)):
        return x
    if id(x) in seen:
        return ("<seen>", type(x).__name__)
    seen.add(id(x))
    if isinstance(x, dict):
        return ("dict", [(_state(k, seen), _state(v, seen)) for k, v in x.items()])
    if isinstance(x, (list, tuple, deque)):
        return (type(x).__name__, [_state(v, seen) for v in x])
    if isinstance(x, (set, frozenset)):
        return ("set", sorted(repr(_state(v, seen)) for v in x))
    if callable(x) and not hasattr(x, "__dict__"):
        return ("callable", getattr(x, "__qualname__", ""))
    fields = getattr(x, "__dict__", None)
    if fields is None:
        fields = {k: getattr(x, k) for k in getattr(type(x), "__slots__", ()) if hasattr(x, k)}
    return (type(x).__name__, [(k, _state(v, seen)) for k, v in fields.items()
                               if k not in ("context", "progress", "worn", "rules")])


def _fed_both_ways(items):
    """Two Diagnosers fed the same run: event by event (feed), and each step's list at once
    (feed_step). Returns both and the findings each returned as they came."""
    from dsdoctor.pipeline import Diagnoser
    one, two = Diagnoser(), Diagnoser()
    said_one, said_two = [], []
    for it in items:
        for ev in (it if isinstance(it, list) else [it]):
            said_one += [(f.rule, f.title, f.summary, f.seq, f.ranks, f.steps) for f in one.feed(ev)]
        said_two += [(f.rule, f.title, f.summary, f.seq, f.ranks, f.steps) for f in (two.feed_step(it) if isinstance(it, list) else two.feed(it))]
    return one, two, said_one, said_two


@pytest.mark.parametrize("seed", range(40))
def test_feed_step_is_feed_of_each_event(seed):
    """Diagnoser.feed_step (a live step's four events, each detector taking them in one call)
    leaves every detector, the progress counter and the symptoms as feed() of each event does,
    and returns the same findings in the same order: on random runs with relaunches, NaN,
    spikes, zero grad norms, overflows, exits, two ranks and two inputs."""
    rng = random.Random(1000 + seed)
    items = _run(rng, rng.choice([60, 400, 900]))
    if seed % 3 == 0:                        # a second rank, interleaved step by step
        other = _run(random.Random(seed), len(items))
        for it in other:
            for ev in (it if isinstance(it, list) else [it]):
                ev.rank = 1
        items = [x for pair in zip(items, other) for x in pair]
    if seed % 4 == 1:                        # a second input (a console log beside the events)
        for it in items[len(items) // 2:]:
            for ev in (it if isinstance(it, list) else [it]):
                ev.source = "rank0.log"
                ev.line = rng.randint(1, 10 ** 6) if rng.random() < 0.5 else None
    one, two, said_one, said_two = _fed_both_ways(items)
    assert said_one == said_two
    assert one.seq == two.seq and one.events_seen == two.events_seen
    assert _state(one.progress) == _state(two.progress)
    for a, b in zip(one.detectors, two.detectors):
        assert _state(a) == _state(b), type(a).__name__
    assert _state(one.symptoms) == _state(two.symptoms)
    assert _state(one.finish()) == _state(two.finish())


def test_feed_step_takes_only_a_live_step():
    """A list that is not one step's four events of one input (a missing event, two steps, an
    end-of-run summary) is fed event by event."""
    from dsdoctor.pipeline import Diagnoser
    t = 1.7e9
    four = [Event("step", 0, 5, t, {"micro_steps": 1, "fwd_ms": 1.0, "bwd_ms": 1.0, "step_ms": 1.0, "data_ms": 0.0}),
            Event("lr", 0, 5, t, {"value": 1e-4}), Event("loss", 0, 5, t, {"value": 2.0, "name": "loss"}),
            Event("grad_norm", 0, 5, t, {"value": 0.5})]
    import dataclasses
    odd = [four[:3], [four[0], four[1], four[2], dataclasses.replace(four[3], step=6)],
           [four[0], four[1], dataclasses.replace(four[2], data={"value": 2.0, "summary": True}), four[3]],
           [four[0], four[2], four[1], four[3]], [four[0], four[1], four[2], dataclasses.replace(four[3], rank=1)]]
    for evs in odd:
        one, two = Diagnoser(), Diagnoser()
        for ev in evs:
            one.feed(ev)
        two.feed_step(evs)
        for a, b in zip(one.detectors, two.detectors):
            assert _state(a) == _state(b)
