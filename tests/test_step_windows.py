"""detect/step_windows.py: a straggler named from a run folder's per-rank step events when the run
was too short for three live exchange rounds (a real 20-step 2-rank run under `dsdoctor run`, rank 1
sleeping 0.6 s in its own loop: the exchange had two rounds and named nobody)."""
from __future__ import annotations

import json
import random

from dsdoctor.api import Watch
from dsdoctor.detect.step_windows import StepWindowDetector
from dsdoctor.events import Event, EventWriter


def _steps(rank: int, n: int, fwd: float, bwd: float, data: float, jitter: float = 0.0, seed: int = 0):
    rnd = random.Random(seed * 10 + rank)
    for s in range(n):
        j = lambda v: max(0.0, v + rnd.uniform(-jitter, jitter))  # noqa: E731
        yield Event("step", rank=rank, step=s, time=1000.0 + s,
                    data={"micro_steps": 1, "fwd_ms": j(fwd), "bwd_ms": j(bwd), "step_ms": j(2.0), "data_ms": j(data)},
                    source=f"run/events-rank{rank}.jsonl", line=s + 2)


def _judge(*ranks) -> list:
    d = StepWindowDetector()
    for events in ranks:              # input by input, as a run folder is read
        for ev in events:
            d.feed(ev, 0)
    return list(d.finish())


def test_a_rank_slow_between_steps_is_named_within_twenty_steps():
    # the real run's figures: rank 1 650 ms outside the engine per step, rank 0 waits 600 ms in backward
    got = _judge(_steps(0, 20, 0.6, 602.0, 52.0, 1.0), _steps(1, 20, 0.6, 2.0, 651.0, 1.0))
    assert [(s.name, s.ranks, s.facts["which"], s.facts["via"]) for s in got] == [("slow_rank", {1}, "data", "steps")]
    assert got[0].evidence[0].source == "run/events-rank1.jsonl"


def test_a_slow_forward_is_a_compute_straggler():
    got = _judge(_steps(0, 30, 40.0, 90.0, 5.0, 2.0), _steps(1, 30, 130.0, 5.0, 5.0, 2.0), _steps(2, 30, 41.0, 88.0, 5.0, 2.0))
    assert [(s.ranks, s.facts["which"]) for s in got] == [({1}, "compute")]


def test_healthy_noise_and_a_rank_nobody_waited_for_name_nobody():
    assert _judge(*(_steps(r, 60, 40.0, 20.0, 10.0, 6.0, seed=3) for r in range(4))) == []
    # rank 1 slower between steps but nobody's backward grew: not synchronous waiting (no straggler)
    assert _judge(_steps(0, 30, 1.0, 2.0, 50.0, 1.0), _steps(1, 30, 1.0, 2.0, 650.0, 1.0)) == []
    # too short: fewer than three windows after the first
    assert _judge(_steps(0, 14, 0.6, 602.0, 52.0), _steps(1, 14, 0.6, 2.0, 651.0)) == []
    # one rank's events only (a live Watch): nothing to compare
    assert _judge(_steps(1, 40, 0.6, 2.0, 651.0)) == []


def test_a_run_folder_gets_the_finding_and_a_live_watch_does_not(tmp_path):
    for r, (bwd, data) in enumerate(((602.0, 52.0), (2.0, 651.0))):
        w = EventWriter(tmp_path / f"events-rank{r}.jsonl")
        for ev in _steps(r, 20, 0.6, bwd, data, 1.0):
            w.write(ev)
        w.close()
    from dsdoctor.api import diagnose_inputs, usable_inputs
    inputs, warnings = usable_inputs([str(tmp_path)])
    top = diagnose_inputs(inputs, warnings).findings[0]
    assert (top.rule, top.category, sorted(top.ranks)) == ("straggler-live-data", "straggler", [1])
    assert "events-rank1.jsonl" in top.evidence[0].source
    watch = Watch()                  # one rank's live Watch sees its own steps only
    assert [f for ev in _steps(1, 40, 0.6, 2.0, 651.0) for f in watch.feed(ev)] == []
    assert json.loads(json.dumps([e.to_dict() for e in top.evidence]))   # plain data
