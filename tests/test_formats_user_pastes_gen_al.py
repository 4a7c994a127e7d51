"""What users paste next to a slow or failed run (part AL): a script's own per-rank phase times,
`nvidia-smi --query-gpu ... --format=csv` throttle columns, an OOM a batch-size finder caught and
logged, accelerate's batch-size finder giving up. Text in, events and findings out."""
from __future__ import annotations

from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()
OOM = ("CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a total capacity of 79.25 GiB of which 2.81 GiB "
       "is free. Of the allocated memory 71.90 GiB is allocated by PyTorch, and 3.99 GiB is reserved by PyTorch but "
       "unallocated.")


def serious(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return [f for f in d.finish() if f.severity != "info"]


def timers(text: str):
    return [e for e in events_from_text(text) if e.kind == "timers"]


def test_script_phase_times_become_timers():
    evs = timers("[rank2]:iter 40 | fwd 1.742s | bwd 0.410s | optim 51ms | loss 2.1\n"
                 "rank 1 step 7 data_time 0.004s\n")
    assert [(e.rank, e.step, e.data) for e in evs] == [
        (2, 40, {"fwd_ms": 1742.0, "bwd_ms": 410.0, "step_ms": 51.0}), (1, 7, {"data_ms": 4.0})]


def test_script_phase_times_need_a_rank_and_units():
    assert timers("iter 40 | fwd 1.742s | bwd 0.410s\n") == []          # no rank
    assert timers("[rank2]:iter 40 | fwd 1742 | bwd 410\n") == []      # no unit
    assert timers("[rank2]: forward 3 layers, data 2 shards\n") == []  # not times
    assert timers("[rank2]: step_time 2.301s | data 0.5s\n") == []     # one phase, no step named
    assert timers("[rank2]: step 9 | step_time 2.301s | data 0.5s\n")  # one phase on a step's line


def test_one_slow_rank_of_script_phase_times_is_a_straggler():
    text = "".join(f"[rank{r}]:iter {i} | fwd {1.7 if r == 3 else 0.2:.3f}s | bwd 0.4{r}s\n"
                   for i in range(10, 60, 10) for r in range(4))
    fs = serious(text)
    assert fs and fs[0].category == "straggler" and 3 in fs[0].ranks


def test_nvidia_smi_csv_throttle_columns():
    head = ("index, clocks.current.sm [MHz], clocks_event_reasons.sw_power_cap, clocks_event_reasons.hw_slowdown, "
            "clocks_event_reasons.active\n")
    quiet = head + "0, 1755 MHz, Active, Not Active, 0x0000000000000004\n"
    assert serious(quiet) == []                                        # a power cap under load: normal
    loud = head + "1, 345 MHz, Not Active, Active, 0x0000000000000008\n"
    fs = serious(loud)
    assert fs and fs[0].category == "straggler" and "hw_slowdown" in fs[0].summary
    bits = "index, clocks_throttle_reasons.active\n0, 0x0000000000000048\n"
    assert serious(bits) and "hw_thermal" in serious(bits)[0].summary
    cmd = "$ nvidia-smi --query-gpu=index,clocks_event_reasons.hw_slowdown --format=csv\n0, Active\n"
    assert serious(cmd) == []                                          # the command line arms nothing


def test_logged_oom_that_the_run_survived_is_quiet():
    caught = f"WARNING:__main__:batch_size=128 failed: {OOM}; retrying with 115\n" + "".join(
        f"INFO:__main__:epoch 0 step {s} loss 2.{s}\n" for s in range(1, 6))
    assert serious(caught) == []
    last = f"INFO:__main__:start\nWARNING:__main__:batch_size=128 failed: {OOM}\n"
    assert [f.category for f in serious(last)][:1] == ["oom"]         # nothing after it: it ended the run
    raised = f"INFO:__main__:epoch 0 step 1 loss 2.1\ntorch.OutOfMemoryError: {OOM}\n" + "".join(
        f"INFO:__main__:epoch 0 step {s} loss 2.{s}\n" for s in range(2, 6))
    assert [f.category for f in serious(raised)][:1] == ["oom"]       # an exception line stays an OOM


def test_accelerate_batch_size_finder_gave_up_is_oom():
    fs = serious("Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n    main()\n"
                 "RuntimeError: No executable batch size found, reached zero.\n")
    assert fs and fs[0].category == "oom"
