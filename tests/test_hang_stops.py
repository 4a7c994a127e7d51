"""Hangs with no error of their own, ended from outside (gen-s probes: real 2-rank gloo DeepSpeed runs
on the CPU where the ranks disagree about what comes next: `if rank == 0: engine.save_checkpoint(...)`,
an evaluation's all_reduce on one rank, uneven batches, a barrier one rank takes). The lines below are
copied from those captures (torch 2.13's torchrun, DeepSpeed 0.19's engine and launcher)."""
from __future__ import annotations

import pytest

from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text

STEPS = "".join(
    f"[2026-12-06 10:15:50,{100 + i:03d}] [INFO] [logging.py:123:log_dist] [Rank 0] step={i}, skipped=0, "
    f"lr=[0.001], mom=[(0.9, 0.999)]\nrank=0 step={i - 1} loss: 1.4380\nrank=1 step={i - 1} loss: 0.1274\n"
    for i in range(1, 5))
TE_STOP = (
    "W1206 10:16:16.801000 25687 torch/distributed/elastic/agent/server/api.py:753] Received 2 death signal, "
    "shutting down workers\n"
    "W1206 10:16:16.801000 25687 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 25783 "
    "closing signal SIGINT\n"
    "W1206 10:16:16.802000 25687 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 25784 "
    "closing signal SIGINT\n")
IGNORED = ("W1206 10:16:46.802000 25687 torch/distributed/elastic/multiprocessing/api.py:1047] Unable to shutdown "
           "process 25783 via {sig}, forcefully exiting via {kill}\n")
TE_RAISE = ("torch.distributed.elastic.multiprocessing.api.SignalException: Process 25687 got signal: 2\n")


def _problems(text: str):
    return [f for f in diagnose(events_from_text(text)) if f.severity in ("critical", "error", "warning")]


@pytest.mark.parametrize("sig,kill", [("2", "9"), ("Signals.SIGTERM", "Signals.SIGKILL"), ("15", "9")])
def test_the_stop_ignored_line_is_read_with_its_pid_and_signal(sig, kill):
    evs = [e for e in events_from_text(IGNORED.format(sig=sig, kill=kill)) if e.kind == "stop_ignored"]
    assert len(evs) == 1 and evs[0].data["pid"] == 25783
    assert evs[0].data["signal"] == (2 if sig == "2" else 15)


def test_a_worker_that_outlived_the_stop_signal_was_hung():
    text = STEPS + "rank=0: saving checkpoint at step 3\n" + TE_STOP + IGNORED.format(sig="2", kill="9") + TE_RAISE
    found = _problems(text)
    assert found[0].rule == "stopped-while-hung", [f.rule for f in found]
    assert "still alive 30 s after" in found[0].summary
    assert any("Unable to shutdown process 25783" in e.text for e in found[0].evidence)


def test_a_stop_the_workers_obeyed_is_no_hang():
    # the same stop of a run that was moving: the workers left at once, no 'Unable to shutdown'
    found = _problems(STEPS + TE_STOP + TE_RAISE)
    assert found and found[0].rule != "stopped-while-hung" and found[0].category != "comm_stall"


def test_a_lost_gloo_peer_after_the_stop_is_its_echo():
    # rank 1 waited in its all_reduce; torchrun killed the unresponsive rank 0, rank 1's gloo pair closed,
    # then its pending KeyboardInterrupt ran
    tb = ("[rank1]: Traceback (most recent call last):\n"
          "[rank1]:   File \"/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py\", line 3252, "
          "in all_reduce\n[rank1]:     work.wait()\n"
          "[rank1]: RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection "
          "closed by peer [127.0.0.1]:4504. This is typically caused by a remote worker crashing. Check the logs of "
          "the remote worker before reporting an error. GLHF!\n\n"
          "[rank1]: During handling of the above exception, another exception occurred:\n\n"
          "[rank1]: Traceback (most recent call last):\n"
          "[rank1]:   File \"/work/train.py\", line 49, in <module>\n[rank1]:     engine.backward(loss)\n"
          "[rank1]:   File \"/venv/lib/python3.11/site-packages/deepspeed/comm/torch.py\", line 290, in all_reduce\n"
          "[rank1]:     return torch.distributed.all_reduce(tensor=tensor, op=op, group=group, async_op=async_op)\n"
          "[rank1]: KeyboardInterrupt\n")
    text = STEPS + TE_STOP + IGNORED.format(sig="2", kill="9") + tb + TE_RAISE
    found = _problems(text)
    assert found[0].rule == "stopped-while-hung", [f.rule for f in found]
    assert "gloo-connection-closed" in [f.rule for f in found[1:]]


def test_the_rank_whose_stopped_stack_is_in_no_collective_is_the_one_waited_for():
    # real (part AV): torchrun Ctrl-C'd after rank 1 hung in its own code (a sleep) at step 6; rank 0 waited in
    # the step's all_reduce, lost rank 1's gloo pair to the stop, then took its KeyboardInterrupt
    r1 = ("[rank1]: Traceback (most recent call last):\n"
          "[rank1]:   File \"/work/hang.py\", line 15, in <module>\n[rank1]:     time.sleep(3600)\n"
          "[rank1]: KeyboardInterrupt\n")
    r0 = ("[rank0]: Traceback (most recent call last):\n"
          "[rank0]:   File \"/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py\", line 3252, "
          "in all_reduce\n[rank0]:     work.wait()\n"
          "[rank0]: RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection "
          "closed by peer [127.0.0.1]:3251. This is typically caused by a remote worker crashing.\n\n"
          "[rank0]: During handling of the above exception, another exception occurred:\n\n"
          "[rank0]: Traceback (most recent call last):\n"
          "[rank0]:   File \"/work/hang.py\", line 19, in <module>\n[rank0]:     engine.backward(loss)\n"
          "[rank0]:   File \"/venv/lib/python3.11/site-packages/deepspeed/comm/torch.py\", line 290, in all_reduce\n"
          "[rank0]:     return torch.distributed.all_reduce(tensor=tensor, op=op, group=group, async_op=async_op)\n"
          "[rank0]: KeyboardInterrupt\n")
    text = "step 4 loss 0.0931\nstep 5 loss 0.2651\n" + TE_STOP + r1 + r0 + TE_RAISE
    found = _problems(text)
    assert found[0].rule == "stopped-while-hung", [f.rule for f in found]
    assert found[0].ranks == [1] and "for rank 1" in found[0].title
    # the rank stopped in its own code printed last (the first traceback waits in the collective)
    assert _problems(text.replace(r1, "") + r1)[0].ranks == [1]
    # every rank stopped inside the collective: nobody stands out
    both = text.replace("time.sleep(3600)", "engine.backward(loss)\n[rank1]:   File \"/venv/lib/python3.11/"
                        "site-packages/torch/distributed/distributed_c10d.py\", line 3252, in all_reduce\n"
                        "[rank1]:     work.wait()")
    assert "for rank" not in _problems(both)[0].title


# ---------------------------------------------------------------- ranks in different collectives
def _tb(rank: int, caller: str, op: str, line: int, error: str) -> str:
    return (f"[rank{rank}]: Traceback (most recent call last):\n"
            f"[rank{rank}]:   File \"/work/train.py\", line {line}, in <module>\n"
            f"[rank{rank}]:     {caller}\n"
            + (f"[rank{rank}]:   File \"/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py\", line 4900, "
               f"in save_checkpoint\n[rank{rank}]:     dist.barrier()\n" if "save_checkpoint" in caller else "")
            + f"[rank{rank}]:   File \"/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py\", "
              f"line 3252, in {op}\n[rank{rank}]:     work.wait()\n"
            f"[rank{rank}]: {error}\n")


TIMEOUT = ("RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out "
           "waiting 600000ms for recv operation to complete")
CLOSED = ("RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by "
          "peer [127.0.0.1]:2190. This is typically caused by a remote worker crashing.")


def test_ranks_waiting_in_different_collectives_are_named_with_their_call_sites():
    text = (STEPS + "rank=0: saving checkpoint at step 3\n"
            + _tb(0, 'engine.save_checkpoint("ckpt", tag=f"step{step}")', "barrier", 57, TIMEOUT)
            + _tb(1, "engine.backward(loss)", "all_reduce", 49, CLOSED))
    found = _problems(text)
    assert found[0].rule == "ranks-in-different-collectives", [f.rule for f in found]
    assert set(found[0].ranks) == {0, 1}
    assert "rank 0 in barrier called from deepspeed/runtime/engine.py:save_checkpoint" in found[0].title
    assert "rank 1 in all_reduce" in found[0].title
    # the timeout and the lost peer are its consequences
    assert {"comm-timeout", "gloo-connection-closed"} <= {f.rule for f in found[1:] if f.consequence_of}


def test_ranks_waiting_in_the_same_collective_wait_for_someone_else():
    text = STEPS + _tb(0, "engine.backward(loss)", "all_reduce", 49, TIMEOUT) + \
        _tb(1, "engine.backward(loss)", "all_reduce", 49, TIMEOUT)
    found = _problems(text)
    assert found and "ranks-in-different-collectives" not in [f.rule for f in found]


# ---------------------------------------------------------------- a rank that returned 0 first
SPAWNED = ("[2026-12-06 10:23:20,310] [INFO] [launch.py:245:main] process 2801 spawned with command: "
           "['/usr/bin/python', '-u', 'train.py', '--local_rank=0']\n"
           "[2026-12-06 10:23:20,331] [INFO] [launch.py:245:main] process 2802 spawned with command: "
           "['/usr/bin/python', '-u', 'train.py', '--local_rank=1']\n")
DONE = "[2026-12-06 10:23:53,001] [INFO] [launch.py:285:main] Process {pid} exits successfully.\n"
DS_FAILED = ("[2026-12-06 10:24:01,004] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 2801\n"
             "[2026-12-06 10:24:01,004] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 2802\n"
             "[2026-12-06 10:24:01,004] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python', '-u', 'train.py', "
             "'--local_rank=1'] exits with return code = 1\n")
WORLD = ("[2026-12-06 10:23:20,252] [INFO] [launch.py:152:main] WORLD INFO DICT: {'localhost': [0, 1]}\n"
         "[2026-12-06 10:23:20,252] [INFO] [launch.py:158:main] nnodes=1, num_local_procs=2, node_rank=0\n")


def test_a_rank_that_returned_0_before_its_peer_lost_it_is_the_cause():
    text = WORLD + SPAWNED + STEPS + "[rank0]: " + CLOSED + "\n" + DONE.format(pid=2802) + DS_FAILED
    found = _problems(text)
    assert found[0].rule == "rank-exited-early" and found[0].ranks == [1], [(f.rule, f.ranks) for f in found]
    assert "Process 2802 exits successfully." in found[0].evidence[0].text
    assert "unexplained-failure" not in [f.rule for f in found]


def test_the_launchers_failed_command_names_its_last_rank_not_the_failed_one():
    # deepspeed/launcher/launch.py logs '{cmd} exits with return code' with the spawn loop's last cmd
    evs = [e for e in events_from_text(WORLD + DS_FAILED) if "exits with return code" in (e.text or "")]
    assert evs and evs[0].data.get("exitcode") == 1 and evs[0].rank is None and evs[0].data.get("local_rank") is None


@pytest.mark.parametrize("tail", [
    DONE.format(pid=2802) + DONE.format(pid=2801),       # every rank done: a normal end
    DONE.format(pid=2802),                               # an excerpt cut after one rank's end: no evidence
])
def test_ranks_that_returned_0_at_the_end_are_no_early_exit(tail):
    found = _problems(WORLD + SPAWNED + STEPS + tail)
    assert "rank-exited-early" not in [f.rule for f in found]
