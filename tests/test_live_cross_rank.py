"""Cross-rank parts of live mode: exchange + straggler detection, watchdog + stall detection,
failure containment, and end-to-end runs with 2 ranks (torchrun, gloo, real DeepSpeed on the
CPU) through `dsdoctor run`.

The unit tests simulate ranks in one process against a real TCPStore; the end-to-end tests
each have a wall-clock limit and kill their process group.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsdoctor.detect.straggler import StragglerDetector, round_stats
from dsdoctor.events import Event, read_events
from dsdoctor.live.exchange import Exchange
from dsdoctor.live.session import LiveOptions, LiveSession
from dsdoctor.live.watchdog import STALL_EXIT_CODE, Watchdog, verdict
from ports import free_port

# ---------------------------------------------------------------------------- helpers


def tcp_store():
    import datetime

    import torch.distributed as dist
    return dist.TCPStore("127.0.0.1", 0, None, True, timeout=datetime.timedelta(seconds=10),
                         wait_for_workers=False)


def client(master):
    import datetime

    import torch.distributed as dist
    return dist.TCPStore("127.0.0.1", master.port, None, False, timeout=datetime.timedelta(seconds=10))


def sessions(tmp_path, n, store_factory, **opts):
    o = LiveOptions(out=tmp_path, telemetry_interval=0, tensorboard=False, **opts)
    return [LiveSession(o, rank=r, world_size=n, local_rank=r, store=store_factory(r), quiet=True)
            for r in range(n)]


def fill(progress, fwd, bwd, step=5.0, data=1.0, n=10, start=0):
    for i in range(n):
        progress.window.append({"fwd_ms": fwd, "bwd_ms": bwd, "step_ms": step, "data_ms": data})
    progress.step = start + n


def rules_of(findings):
    return [(f.rule, f.ranks) for f in findings]


# ---------------------------------------------------------------------------- straggler statistics


def test_round_stats_names_the_slow_forward_rank_not_the_waiting_one():
    # rank 1 sleeps in forward; rank 0 waits for it inside backward's all-reduce
    sums = {0: {"fwd": 10.0, "bwd": 75.0, "step": 5.0, "data": 1.0},
            1: {"fwd": 70.0, "bwd": 15.0, "step": 5.0, "data": 1.0}}
    out = round_stats(sums)
    assert list(out["outliers"]) == ["1"]
    assert out["outliers"]["1"]["which"] == "compute" and out["outliers"]["1"]["phase"] == "forward"
    assert out["waiting_ranks"] == 1


def test_round_stats_data_and_waiting_and_scale():
    sums = {r: {"fwd": 10.0 + r % 3 * 0.2, "bwd": 20.0, "step": 5.0, "data": 2.0} for r in range(64)}
    sums[17]["data"] = 40.0
    out = round_stats(sums)
    assert list(out["outliers"]) == ["17"] and out["outliers"]["17"]["which"] == "data"
    sums[17]["data"] = 2.0
    sums[9]["bwd"] = 60.0                    # nobody slow in forward/data: rank 9's link is slow
    out = round_stats(sums)
    assert list(out["outliers"]) == ["9"] and out["outliers"]["9"]["which"] == "waiting"


def test_two_ranks_waiting_in_collectives_is_not_a_straggler():
    # healthy 2-rank run on a busy machine: rank 0's optimizer step a little longer, rank 1
    # waits for it in backward's all-reduce. Neither the exchange round nor the post-mortem
    # over the live step events may call that a slow rank (the flaky healthy-run test).
    sums = {0: {"at": 20, "fwd": 1.5, "bwd": 15.2, "step": 9.9, "data": 0.2},
            1: {"at": 20, "fwd": 1.5, "bwd": 22.3, "step": 7.7, "data": 0.2}}
    out = round_stats(sums)
    assert out["outliers"] == {}
    from dsdoctor.pipeline import Diagnoser
    diag = Diagnoser()
    for step in range(30):
        for r, (bwd, st) in {0: (15.0, 9.3), 1: (24.0, 15.4)}.items():
            diag.feed(Event("step", rank=r, step=step, data={"fwd_ms": 1.5, "bwd_ms": bwd, "step_ms": st,
                                                             "data_ms": 0.2, "micro_steps": 1}))
    assert [f.rule for f in diag.finish() if f.severity != "info"] == []
    for step in range(30):                   # ... while a slow forward is still named
        diag.feed(Event("step", rank=1, step=30 + step, data={"fwd_ms": 40.0, "bwd_ms": 15.0, "step_ms": 9.0,
                                                              "data_ms": 0.2, "micro_steps": 1}))
        diag.feed(Event("step", rank=0, step=30 + step, data={"fwd_ms": 1.5, "bwd_ms": 52.0, "step_ms": 9.0,
                                                              "data_ms": 0.2, "micro_steps": 1}))
    assert [(f.rule, f.ranks) for f in diag.finish() if f.severity != "info"] == [("slow-rank", [1])]


def test_summary_keeps_the_global_step_apart_from_the_step_phase():
    from dsdoctor.live.exchange import window_summary
    from dsdoctor.live.session import Progress
    p = Progress()
    fill(p, 10.0, 20.0, step=7.0, n=10, start=40)
    s = window_summary(p, 10)
    assert s["at"] == 50 and s["step"] == 7.0
    out = round_stats({0: s, 1: dict(s, fwd=60.0)})
    assert out["outliers"]["1"]["step"] == 50


def test_detector_needs_consecutive_windows_and_has_no_false_positives():
    """1,000 healthy steps of 8 noisy ranks (K=10: 100 rounds) -> nothing; then rank 3
    slowed by 40 % -> named after exactly 3 rounds, once."""
    rnd = random.Random(7)
    det = StragglerDetector()

    def rnd_round(slow=None):
        sums = {}
        for r in range(8):
            # median of 10 steps with 10 % jitter and an occasional 3x hiccup on one step
            steps = [50 * rnd.lognormvariate(0, 0.1) * (3 if rnd.random() < 0.02 else 1) for _ in range(10)]
            fwd = sorted(steps)[5] * (1.4 if r == slow else 1.0)
            sums[r] = {"fwd": fwd, "bwd": 100 * rnd.lognormvariate(0, 0.1), "step": 10.0,
                       "data": 2 * rnd.lognormvariate(0, 0.5)}
        return Event("rank_times", rank=0, data=round_stats(sums))

    fired = [s for i in range(100) for s in det.feed(rnd_round(), i)]
    assert fired == []
    fired = [(i, s) for i in range(100, 110) for s in det.feed(rnd_round(slow=3), i)]
    assert [(i, s.facts["rank"], s.facts["which"]) for i, s in fired] == [(102, 3, "compute")]
    assert fired[0][1].ranks == {3}


def test_a_window_read_twice_counts_once():
    """A healthy 2-rank run on a loaded CI host (30 steps, K=10): rank 1's exchange thread did not
    publish between the rounds at steps 2 and 15, so its warm-up window (step 2: 3 steps, the first
    forward 33 ms) was an outlier in both, and a third noisy window named rank 1 a straggler
    '3 windows in a row' out of 2 windows. The rounds' figures are that run's rank_times events."""
    def out(fwd, base, at):
        return Event("rank_times", rank=0, step=at, data={"nranks": 2, "outliers": {
            "1": {"which": "compute", "phase": "forward", "value_ms": fwd, "median_ms": base, "step": at}}})

    det = StragglerDetector()
    rounds = [out(22.423, 14.403, 2), out(22.423, 2.551, 2), out(10.11, 1.894, 15)]
    assert [s for i, ev in enumerate(rounds) for s in det.feed(ev, i)] == []
    fired = [s for s in det.feed(out(10.5, 1.9, 25), 3)]        # a third window of its own: named
    assert [s.facts["rank"] for s in fired] == [1]


# ---------------------------------------------------------------------------- exchange through a real store


def test_exchange_names_the_straggler_through_the_store(tmp_path):
    master = tcp_store()
    ss = sessions(tmp_path, 3, lambda r: master if r == 0 else client(master), exchange_every=10)
    parts = [Exchange(s) for s in ss]
    for p in parts:                     # the threads are not started: tick() by hand, in order
        p._store = p.session.store
        if p.session.rank == 0:
            from dsdoctor.live.exchange import Aggregator
            p._agg = Aggregator(p._store, 3)
    for rnd in range(4):
        for s, p in zip(ss, parts):
            fill(s.progress, fwd=60.0 if s.rank == 2 else 10.0, bwd=20.0, start=rnd * 10)
            p._last_pub = p._last_round = 0.0
        for p in reversed(parts):       # rank 0 last, so every rank's summary is in
            p.tick()
    assert parts[0].rounds == 4
    found = rules_of(ss[0].live_findings())
    assert ("straggler-live-compute", [2]) in found
    assert not any(r in ("straggler-live-compute", "straggler-live-waiting") and ranks != [2] for r, ranks in found)
    for s in ss:
        s.close()
    kinds = [e.kind for e in read_events((tmp_path / "events-rank0.jsonl").open(), "x")]
    assert kinds.count("rank_times") == 4


def test_rank0_keeps_its_own_summary_out_of_the_store(tmp_path):
    """As Exchange.start() sets it up: rank 0 hands its summary to the aggregation directly
    (no `set` of its key), reads the others with one multi_get, and names the same straggler."""
    from dsdoctor.live.exchange import Aggregator, summary_key
    master = tcp_store()
    ss = sessions(tmp_path, 3, lambda r: master if r == 0 else client(master), exchange_every=10)
    parts = [Exchange(s) for s in ss]
    for p in parts:
        p._store = p.session.store
    parts[0]._agg = Aggregator(parts[0]._store, 3, own_rank=0)
    for rnd in range(4):
        for s, p in zip(ss, parts):
            fill(s.progress, fwd=60.0 if s.rank == 1 else 10.0, bwd=20.0, start=rnd * 10)
            p._last_pub = p._last_round = 0.0
        for p in reversed(parts):
            p.tick()
    assert parts[0].rounds == 4
    assert not master.check([summary_key(0)]) and master.check([summary_key(1), summary_key(2)])
    assert ("straggler-live-compute", [1]) in rules_of(ss[0].live_findings())
    for s in ss:
        s.close()


def test_exchange_without_store_or_with_a_broken_store_never_raises(tmp_path):
    class Broken:
        def __getattr__(self, name):
            def fail(*a, **k):
                raise RuntimeError("store is gone")
            return fail

    (s0,) = sessions(tmp_path / "a", 1, lambda r: None)
    e = Exchange(s0)
    e.start()                           # no store: nothing to do, no error
    e.stop()
    assert not s0.errors
    s1, = [LiveSession(LiveOptions(out=tmp_path / "b", telemetry_interval=0), rank=0, world_size=2,
                       store=Broken(), quiet=True)]
    fill(s1.progress, 10.0, 20.0)
    e = Exchange(s1)
    e.start()
    deadline = time.time() + 5
    while s1.enabled("exchange") and time.time() < deadline:
        time.sleep(0.1)
    e.stop()
    assert [p for p, _ in s1.errors] == ["exchange"]
    w = Watchdog(s1)
    w.tick = lambda: (_ for _ in ()).throw(RuntimeError("boom"))
    with s1.guard("watchdog"):
        w.tick()
    assert not s1.enabled("watchdog")
    s0.close()
    s1.close()


# ---------------------------------------------------------------------------- watchdog through a real store


def test_verdict_names_the_rank_behind():
    beats = {0: {"step": 10, "micro_step": 10, "phase": "backward"},
             1: {"step": 10, "micro_step": 10, "phase": "idle"},
             2: {"step": 10, "micro_step": 10, "phase": "backward"}}
    v = verdict(beats, {0: 20.0, 1: 21.0, 2: 20.0}, set(), 15.0)
    assert v["ranks"] == [1] and v["last_phase"] == "idle" and v["last_step"] == 10
    assert verdict(beats, {0: 1.0, 1: 2.0, 2: 1.0}, set(), 15.0) is None
    v = verdict(beats, {0: 20.0, 1: 1.0, 2: 20.0}, {2}, 15.0)
    assert v["ranks"] == [2] and v["heartbeat_stopped"] == [2]


def test_watchdog_stall_dumps_every_rank_and_aborts(tmp_path):
    master = tcp_store()
    ss = sessions(tmp_path, 2, lambda r: master if r == 0 else client(master), stall_timeout=0.5,
                  on_stall="abort")
    dogs = [Watchdog(s) for s in ss]
    exits = []
    for d in dogs:
        d._store = d.session.store
        d.exit = exits.append
        d._wait_for_dumps = lambda: None
        d.session.progress.step = 10
    ss[0].progress.set_phase("backward")
    ss[1].progress.set_phase("idle")
    ss[1].progress.phase_started -= 5       # rank 1 has not moved for 5 s
    ss[0].progress.phase_started -= 4       # rank 0 waits for it in backward
    dogs[1].tick()
    dogs[0].tick()                          # rank 0 judges: rank 1 is behind
    dogs[1].tick()                          # rank 1 sees the verdict, dumps its stacks
    assert exits == [STALL_EXIT_CODE, STALL_EXIT_CODE]
    for d in dogs:
        d.stop()
    for r in (0, 1):
        text = (tmp_path / f"stacks-rank{r}.txt").read_text()
        assert "dsdoctor stall" in text and "test_watchdog_stall_dumps_every_rank_and_aborts" in text
    found = rules_of(ss[0].live_findings())
    assert found == [("stall-rank-behind", [1])]
    assert rules_of(ss[1].live_findings()) == [("stall-rank-behind", [1])]
    for s in ss:
        s.close()


def test_watchdog_single_rank_without_store(tmp_path):
    (s,) = sessions(tmp_path, 1, lambda r: None, stall_timeout=0.3)
    d = Watchdog(s)
    s.progress.phase_started -= 1
    d.tick()
    assert d.handled and d.diagnosis["ranks"] == [0]
    assert (tmp_path / "stacks-rank0.txt").stat().st_size > 0
    d.stop()
    s.close()


class CountingStore:
    """A real TCPStore client that counts the operations made through it (O(1) per interval)."""

    def __init__(self, store):
        self.store, self.ops = store, 0

    def __getattr__(self, name):
        fn = getattr(self.store, name)

        def call(*a, **k):
            self.ops += 1
            return fn(*a, **k)
        return call


def stall_pair(tmp_path, **opts):
    """Two ranks' sessions and watchdogs on one real TCPStore, ticked by hand; rank 1 stuck
    before backward at step 10 for 5 s, rank 0 waiting for it in backward for 4 s."""
    master = tcp_store()
    ss = sessions(tmp_path, 2, lambda r: master if r == 0 else client(master), stall_timeout=0.5, **opts)
    dogs = [Watchdog(s) for s in ss]
    exits = []
    for d in dogs:
        d._store = CountingStore(d.session.store)
        d.exit = exits.append
        d.session.progress.step = 10
    ss[0].progress.set_phase("backward")
    ss[1].progress.set_phase("idle")
    ss[1].progress.phase_started -= 5
    ss[0].progress.phase_started -= 4
    return ss, dogs, exits


def resume(ss, step):
    for s in ss:
        s.progress.step = step
        s.progress.set_phase("forward")


def events_of(tmp_path, rank, kind):
    return [e for e in read_events((tmp_path / f"events-rank{rank}.jsonl").open(), "x") if e.kind == kind]


def test_watchdog_rearms_after_a_resolved_stall(tmp_path):
    """Stall 1 (rank 1 paused, --on-stall report), every rank moves on -> resolved and re-armed;
    stall 2 hours later -> a second verdict with its own stack files; the hang is the error,
    the pause a warning. Store operations per tick stay constant throughout."""
    ss, dogs, exits = stall_pair(tmp_path)
    dogs[1].tick()
    dogs[0].tick()                          # rank 0 judges: verdict 1, rank 1 behind
    dogs[1].tick()                          # rank 1 reads it and dumps its stacks
    assert [d.open_stall["id"] for d in dogs] == [1, 1] and exits == []
    dogs[0].tick()
    dogs[1].tick()                          # still stuck: no second verdict for the same stall
    assert [len(d.verdicts) for d in dogs] == [1, 1]
    resume(ss, 11)
    dogs[1].tick()
    dogs[0].tick()                          # every rank left its place: resolved
    dogs[1].tick()
    assert [d.open_stall for d in dogs] == [None, None]
    assert [r["id"] for r in dogs[1].resolved] == [1]
    for _ in range(3):                      # healthy training: no verdict, constant cost per tick
        resume(ss, ss[0].progress.step + 1)
        before = [d._store.ops for d in dogs]
        dogs[1].tick()
        dogs[0].tick()
        # rank 0 (judge): set, add (notices), add (ready), multi_get; rank 1 (deputy): set, add, get
        assert [d._store.ops - b for d, b in zip(dogs, before)] == [4, 3]
    ss[1].progress.step = ss[0].progress.step = 900
    ss[1].progress.set_phase("idle")
    ss[0].progress.set_phase("backward")
    ss[1].progress.phase_started -= 5
    ss[0].progress.phase_started -= 4
    dogs[1].tick()
    dogs[0].tick()                          # verdict 2
    dogs[1].tick()
    assert [[v["id"] for v in d.verdicts] for d in dogs] == [[1, 2], [1, 2]]
    assert dogs[0].verdicts[1]["stacks"].endswith("stacks-rank<N>-stall2.txt")
    for d in dogs:
        d.stop()
    for r in (0, 1):
        assert "dsdoctor stall 1 on rank" in (tmp_path / f"stacks-rank{r}.txt").read_text()
        text = (tmp_path / f"stacks-rank{r}-stall2.txt").read_text()
        assert "dsdoctor stall 2 on rank" in text and "test_watchdog_rearms_after_a_resolved_stall" in text
        assert [e.data["id"] for e in events_of(tmp_path, r, "stall")] == [1, 2]
        assert [e.data["id"] for e in events_of(tmp_path, r, "stall_resolved")] == [1]
    for s in ss:
        found = [(f.rule, f.severity, f.ranks, f.steps) for f in s.live_findings()]
        assert found == [("stall-rank-behind", "error", [1], [900]),
                         ("stall-resolved", "warning", [1], [10])], found
        s.close()
    # the post-mortem of both ranks' files (what `dsdoctor analyze DIR` reads) agrees
    assert [(f["rule"], f["steps"]) for f in live_findings(tmp_path)] == [("stall-rank-behind", [900]),
                                                                          ("stall-resolved", [10])]


def test_watchdog_abort_after_rides_out_a_short_stall(tmp_path, monkeypatch):
    """--on-stall abort with DSDOCTOR_STALL_ABORT_AFTER: the verdict is reported at the stall
    timeout without ending the run; a pause shorter than the abort time resolves; a hang that
    lasts ends every rank."""
    monkeypatch.setenv("DSDOCTOR_STALL_ABORT_AFTER", "8")
    ss, dogs, exits = stall_pair(tmp_path, on_stall="abort")
    for d in dogs:
        d._wait_for_dumps = lambda: None
    dogs[1].tick()
    dogs[0].tick()
    dogs[1].tick()
    assert exits == [] and dogs[0].verdicts[0]["abort"] is False and dogs[0].verdicts[0]["abort_after_s"] == 8.0
    resume(ss, 11)
    dogs[1].tick()
    dogs[0].tick()
    dogs[1].tick()
    assert exits == [] and [len(d.resolved) for d in dogs] == [1, 1]
    ss[1].progress.set_phase("idle")
    ss[0].progress.set_phase("backward")
    ss[1].progress.phase_started -= 5
    ss[0].progress.phase_started -= 5
    dogs[1].tick()
    dogs[0].tick()                          # verdict 2 at 5 s: reported, not yet ended
    dogs[1].tick()
    assert exits == [] and [len(d.verdicts) for d in dogs] == [2, 2]
    ss[1].progress.phase_started -= 5       # 10 s without progress >= 8 s: abort
    dogs[1].tick()
    dogs[0].tick()
    dogs[1].tick()
    assert exits == [STALL_EXIT_CODE, STALL_EXIT_CODE] and all(d.ended for d in dogs)
    for d in dogs:
        d.stop()
    for s in ss:
        s.close()
    found = [(f["rule"], f["steps"]) for f in live_findings(tmp_path)]
    assert found == [("stall-rank-behind", [11]), ("stall-resolved", [10])]


def test_deputy_judges_when_rank0_watchdog_cannot_run(tmp_path):
    """Rank 0's watchdog thread stops beating (its main thread holds the GIL): rank 1, stuck
    waiting for it, issues the verdict naming rank 0, and every rank that can still answer dumps."""
    ss, dogs, exits = stall_pair(tmp_path)
    ss[0].progress.set_phase("idle")
    ss[1].progress.set_phase("backward")
    ss[0].progress.phase_started -= 5
    ss[1].progress.phase_started -= 5
    dogs[0].tick()                          # rank 0's last beat
    dogs[1].tick()                          # rank 1 sees rank 0's heartbeat for the first time
    assert dogs[1].verdicts == []
    time.sleep(0.6)                         # > stall timeout (0.5 s) with no beat from rank 0
    dogs[1].tick()
    (v,) = dogs[1].verdicts
    assert v["ranks"] == [0] and v["heartbeat_stopped"] == [0] and v["judge"] == 1
    assert v["signalled"] == []             # same process here: nothing to signal
    assert "dsdoctor stall 1 on rank 1" in (tmp_path / "stacks-rank1.txt").read_text()
    assert rules_of(ss[1].live_findings()) == [("stall-heartbeat-stopped", [0])]
    dogs[0].tick()                          # rank 0 is back: it reads the verdict, and no second one
    assert [x["id"] for x in dogs[0].verdicts] == [1]
    for d in dogs:
        d.stop()
    for s in ss:
        s.close()


def test_deputy_judges_a_rank0_that_hung_before_its_first_beat(tmp_path):
    ss, dogs, exits = stall_pair(tmp_path)
    ss[1].progress.set_phase("backward")
    ss[1].progress.phase_started -= 5
    dogs[1].tick()                          # rank 0 never beat: the deputy starts its clock
    assert dogs[1].verdicts == []
    time.sleep(0.6)
    dogs[1].tick()
    (v,) = dogs[1].verdicts
    assert v["ranks"] == [0] and v["heartbeat_stopped"] == [0] and v["last_step"] is None
    found = [f.title for f in ss[1].live_findings()]
    assert found == ["Rank(s) 0 stopped sending heartbeats before the first one"], found
    for d in dogs:
        d.stop()
    for s in ss:
        s.close()


def test_deputy_stays_quiet_while_it_trains(tmp_path):
    """Rank 0's watchdog was switched off (an internal error) but training goes on: rank 1 keeps
    moving, so a silent rank 0 is not a hang."""
    ss, dogs, exits = stall_pair(tmp_path)
    resume(ss, 10)
    dogs[0].tick()
    dogs[1].tick()
    time.sleep(0.6)
    resume(ss, 11)
    dogs[1].tick()
    assert dogs[1].verdicts == [] and exits == []
    for d in dogs:
        d.stop()
    for s in ss:
        s.close()


def test_a_resolved_stall_is_not_the_root_cause_of_a_later_timeout():
    from dsdoctor.pipeline import diagnose
    t = 1_700_000_000.0
    evs = [Event("stall", rank=0, step=10, time=t, data={"id": 1, "ranks": [1], "last_step": 10, "last_phase": "idle",
                                                         "waited_s": 61.0, "timeout_s": 60.0, "heartbeat_stopped": [],
                                                         "stacks": "run/stacks-rank<N>.txt", "on_stall": "report"}),
           Event("stall_resolved", rank=0, step=11, time=t + 90, data={"id": 1, "ranks": [1], "stalled_s": 90.0}),
           Event("collective_timeout", rank=0, step=5000, time=t + 9000,
                 data={"op": "ALLREDUCE", "seq": 4021, "timeout_ms": 600000, "elapsed_ms": 600013})]
    fs = diagnose(evs)
    resolved = [f for f in fs if f.rule == "stall-resolved"]
    assert resolved and resolved[0].severity == "warning" and "about 90 s" in resolved[0].title
    assert all(f.consequence_of != "stall-resolved" for f in fs)
    assert fs[0].rule != "stall-resolved"


# ---------------------------------------------------------------------------- end to end: 2 ranks, torchrun, DeepSpeed

E2E_LIMIT = 150


def kill_tagged(tag: str) -> None:
    """Kill every process started with our tag in its environment: the launcher puts the ranks
    in their own sessions, so killing our process group alone would leave them running."""
    import psutil
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DSDOCTOR_TEST_TAG") == tag:
                proc.kill()
        except (psutil.Error, OSError):
            pass


def run_doctor(tmp_path, train_args, *doctor_args, env_extra=None, limit=E2E_LIMIT):
    out = tmp_path / "run"
    tag = f"xrank-{os.getpid()}-{time.time_ns()}"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", DSDOCTOR_TENSORBOARD="0",
               DSDOCTOR_TELEMETRY_INTERVAL="2", DSDOCTOR_TEST_TAG=tag, **(env_extra or {}))
    cmd = [sys.executable, "-m", "dsdoctor", "run", "--out", str(out), *doctor_args, "--",
           sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()),
           "-m", "dsdoctor.demo.train", "--zero-stage", "2", "--hidden", "64", "--layers", "2", *train_args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         start_new_session=True)
    try:
        text, _ = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        kill_tagged(tag)
        text, _ = p.communicate()
        pytest.fail(f"dsdoctor run did not end within {limit} s:\n{text[-3000:]}")
    finally:
        kill_tagged(tag)                   # nothing may survive the test
    return p.returncode, text, out


def live_findings(out: Path) -> list[dict]:
    """Findings the ranks made live (the `dsdoctor analyze DIR` post-mortem re-derives them)."""
    from dsdoctor.pipeline import Diagnoser
    d = Diagnoser()
    for f in sorted(out.glob("events-rank*.jsonl")):
        d.feed_all(read_events(f.open(encoding="utf-8"), str(f)))
    return [f.to_dict() for f in d.finish()]


needs_run = pytest.mark.skipif(
    not Path(__file__).resolve().parents[1].joinpath("dsdoctor", "demo", "train.py").exists(),
    reason="dsdoctor/demo/train.py not there")


@needs_run
def test_e2e_slow_rank_is_named(tmp_path):
    rc, text, out = run_doctor(tmp_path, ["--fault", "slow-rank", "--fault-rank", "1", "--slow-ms", "80",
                                          "--steps", "60"], env_extra={"DSDOCTOR_EXCHANGE_EVERY": "5"})
    assert rc == 0, text[-3000:]
    # rank 1, and only rank 1 (rank 0 waits for it inside backward: not a straggler)
    found = [(f["rule"], f["ranks"]) for f in live_findings(out) if f["category"] == "straggler"]
    assert found == [("straggler-live-compute", [1])], text[-3000:]


@needs_run
def test_e2e_stall_is_named_and_aborted(tmp_path):
    t0 = time.time()
    rc, text, out = run_doctor(tmp_path, ["--fault", "stall", "--fault-rank", "1", "--fault-step", "5",
                                          "--steps", "1000"], "--stall-timeout", "15", "--on-stall", "abort")
    took = time.time() - t0
    assert rc != 0, text[-3000:]
    stalls = [f for f in live_findings(out) if f["category"] == "comm_stall"]
    assert [(f["rule"], f["ranks"]) for f in stalls] == [("stall-rank-behind", [1])], text[-3000:]
    assert stalls[0]["steps"] == [5]
    for r in (0, 1):
        assert "dsdoctor stall" in (out / f"stacks-rank{r}.txt").read_text()
    assert "train.py" in (out / "stacks-rank1.txt").read_text()
    assert took < 100, f"stall took {took:.0f} s to end the run"


@needs_run
def test_e2e_transient_stall_then_hang(tmp_path):
    """Rank 1 pauses 12 s at step 5 (stall timeout 5 s: verdict 1), trains on, and hangs for good at
    step 150 (verdict 2). With --on-stall abort and DSDOCTOR_STALL_ABORT_AFTER=20 the pause is
    reported and ridden out, the hang ends the run: two verdicts, the first resolved."""
    rc, text, out = run_doctor(tmp_path, ["--pause-s", "12", "--pause-step", "5", "--fault", "stall",
                                          "--fault-rank", "1", "--fault-step", "150", "--steps", "100000"],
                               "--stall-timeout", "5", "--on-stall", "abort",
                               env_extra={"DSDOCTOR_STALL_ABORT_AFTER": "20"}, limit=240)
    assert rc != 0, text[-3000:]
    assert "resuming at step 5" in text and "stalling before backward at step 150" in text, text[-3000:]
    assert "stall 1 resolved" in text and "ending the run (--on-stall abort)" in text, text[-3000:]
    for r in (0, 1):
        evs = list(read_events((out / f"events-rank{r}.jsonl").open(encoding="utf-8"), "x"))
        assert [(e.data["id"], e.step) for e in evs if e.kind == "stall"] == [(1, 5), (2, 150)], text[-3000:]
        assert [e.data["id"] for e in evs if e.kind == "stall_resolved"] == [1]
        assert "dsdoctor stall 1 on rank" in (out / f"stacks-rank{r}.txt").read_text()
        assert "dsdoctor stall 2 on rank" in (out / f"stacks-rank{r}-stall2.txt").read_text()
    assert "train.py" in (out / "stacks-rank1.txt").read_text()
    assert "train.py" in (out / "stacks-rank1-stall2.txt").read_text()
    stalls = [(f["rule"], f["severity"], f["ranks"], f["steps"]) for f in live_findings(out)
              if f["category"] == "comm_stall"]
    assert stalls == [("stall-rank-behind", "error", [1], [150]), ("stall-resolved", "warning", [1], [5])], stalls


@needs_run
def test_e2e_rank0_holding_the_gil_is_judged_by_rank1(tmp_path):
    """Rank 0 hangs in C code holding the GIL: its watchdog cannot run. Rank 1 (the deputy) names
    it, has its faulthandler write its stacks through SIGUSR1, and ends the run."""
    rc, text, out = run_doctor(tmp_path, ["--fault", "gil-hang", "--fault-rank", "0", "--fault-step", "300",
                                          "--steps", "100000"], "--stall-timeout", "5", "--on-stall", "abort")
    assert rc != 0, text[-3000:]
    assert "hanging with the GIL held" in text and "ending the run (--on-stall abort)" in text, text[-3000:]
    stalls = [(f["rule"], f["ranks"], f["steps"]) for f in live_findings(out) if f["category"] == "comm_stall"]
    # the step of rank 0's last heartbeat, at most one interval before it hung at step 300
    assert [(rule, ranks) for rule, ranks, _ in stalls] == [("stall-heartbeat-stopped", [0])], text[-3000:]
    assert 0 < stalls[0][2][0] <= 300
    (v,) = [e.data for e in read_events((out / "events-rank1.jsonl").open(encoding="utf-8"), "x") if e.kind == "stall"]
    assert v["judge"] == 1 and v["signalled"] == [0] and v["heartbeat_stopped"] == [0]
    stacks0 = (out / "stacks-rank0.txt").read_text()
    assert "train.py" in stacks0, stacks0[-2000:]            # written by rank 0's faulthandler, GIL held
    assert "dsdoctor stall 1 on rank 1" in (out / "stacks-rank1.txt").read_text()


@needs_run
def test_e2e_doctor_parts_failing_do_not_stop_training(tmp_path):
    """A failing NVML in every rank: GPU telemetry is switched off, training finishes (exit code 0).
    (No store and a broken store are covered by the unit test above.)"""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text(
        "def nvmlInit():\n    pass\n"
        "def nvmlDeviceGetHandleByIndex(i):\n    return i\n"
        "def nvmlDeviceGetMemoryInfo(h):\n    raise RuntimeError('NVML: GPU is lost')\n")
    rc, text, out = run_doctor(tmp_path, ["--steps", "20"],
                               env_extra={"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert rc == 0, text[-3000:]
    assert "done: 20 steps" in text
    for r in (0, 1):
        evs = list(read_events((out / f"events-rank{r}.jsonl").open(), "x"))
        errors = [e.data.get("part") for e in evs if e.kind == "doctor_error"]
        assert errors == ["telemetry.gpu"], errors
        assert any(e.kind == "telemetry" for e in evs)      # host readings went on
        assert sum(e.kind == "step" for e in evs) == 20


# ---------------------------------------------------------------------------- pipeline engines
PIPE_SCRIPT = '''
import os, logging
os.environ.setdefault("DS_ACCELERATOR", "cpu")
import torch, deepspeed
from torch import nn
from deepspeed.pipe import PipelineModule
deepspeed.init_distributed(dist_backend="gloo")
logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
torch.manual_seed(0)
NAN_AT, OOM_AT, STEPS = int(os.environ["NAN_AT"]), int(os.environ["OOM_AT"]), 8
state = {"step": 0}

class Boom(nn.Module):              # on stage 1: a host allocator failure in forward at step OOM_AT
    def forward(self, x):
        if state["step"] == OOM_AT:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                               "can't allocate memory: you tried to allocate 4294967296 bytes.")
        return x

net = PipelineModule(layers=[nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), Boom(), nn.Linear(16, 1)],
                     num_stages=2, loss_fn=nn.MSELoss())
cfg = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2, "steps_per_print": 10 ** 9,
       "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
engine, *_ = deepspeed.initialize(model=net, model_parameters=list(net.parameters()), config=cfg)

def batches():
    g = torch.Generator().manual_seed(1)
    while True:
        x = torch.randn(4, 16, generator=g)
        if state["step"] == NAN_AT:
            x[0, 0] = float("nan")
        yield x, x.sum(1, keepdim=True)

it = batches()
for i in range(STEPS):
    state["step"] = i
    engine.train_batch(it)
'''


def run_pipe(tmp_path, nan_at=-1, oom_at=-1):
    script = tmp_path / "pipe_train.py"
    script.write_text(PIPE_SCRIPT)
    out = tmp_path / "run"
    tag = f"xrank-pipe-{os.getpid()}-{time.time_ns()}"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", DSDOCTOR_TENSORBOARD="0",
               DSDOCTOR_TELEMETRY_INTERVAL="2", DSDOCTOR_TEST_TAG=tag, NAN_AT=str(nan_at), OOM_AT=str(oom_at))
    cmd = [sys.executable, "-m", "dsdoctor", "run", "--out", str(out), "--", sys.executable, "-m",
           "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), str(script)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         start_new_session=True)
    try:
        text, _ = p.communicate(timeout=E2E_LIMIT)
    except subprocess.TimeoutExpired:
        kill_tagged(tag)
        text, _ = p.communicate()
        pytest.fail(f"pipeline run did not end within {E2E_LIMIT} s:\n{text[-3000:]}")
    finally:
        kill_tagged(tag)
    evs = []
    for f in sorted(out.glob("events-rank*.jsonl")):
        evs += list(read_events(f.open(encoding="utf-8"), str(f)))
    return p.returncode, text, out, evs


def test_e2e_pipeline_engine_steps_loss_and_nan(tmp_path):
    """2-stage PipelineModule (train_batch): step timing and the loss on both stages, NaN at step 3."""
    rc, text, out, evs = run_pipe(tmp_path, nan_at=3)
    assert rc == 0, text[-3000:]
    steps = [e for e in evs if e.kind == "step"]
    assert {e.rank for e in steps} == {0, 1} and len(steps) == 16, text[-3000:]
    assert all(e.data["batch_ms"] > 0 and e.data["micro_steps"] == 2 for e in steps)
    losses = {(e.rank, e.step) for e in evs if e.kind == "loss"}
    assert (0, 0) in losses and (1, 0) in losses
    nan = [f for f in live_findings(out) if f["category"] == "nan_loss"]
    assert nan and 3 in nan[0]["steps"], [(f["rule"], f["steps"]) for f in live_findings(out)]


def test_e2e_pipeline_engine_oom_phase(tmp_path):
    rc, text, out, evs = run_pipe(tmp_path, oom_at=2)
    assert rc != 0
    ooms = [e for e in evs if e.kind == "oom"]
    assert [(e.rank, e.step, e.data["phase"], e.data["device"]) for e in ooms] == [(1, 2, "forward", "cpu")], text[-3000:]
    assert any(f["category"] == "host_oom" for f in live_findings(out))
