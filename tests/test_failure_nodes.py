"""How a run over several nodes ended, read from each node's own log (detect/failure.py).

The logs are what `accelerate launch` (deepspeed_multinode_launcher 'standard': torchrun in
accelerate's process) printed here on two nodes, trimmed to the lines that matter: node 1's rank
exits with code 3 without a traceback, node 0's rank then loses its gloo peer and exits with 1.
Read node 0's log first (as `dsdoctor analyze DIR0 DIR1` does), the culprit is still node 1's rank;
and the exit code 86 of dsdoctor's own watchdog (--on-stall abort) is not a failure of its own."""
from __future__ import annotations

from dsdoctor.detect.families import classify
from dsdoctor.events import Event
from dsdoctor.pipeline import Diagnoser
from dsdoctor.sources.logs import events_from_text

_AGENT_TRACE = """Traceback (most recent call last):
  File "/venv/bin/accelerate", line 8, in <module>
    sys.exit(main())
  File "/venv/lib/python3.11/site-packages/accelerate/commands/launch.py", line 1074, in _run_torchrun
    distrib_run.run(args)
  File "/venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
/work/train.py FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-05_10:33:53
  host      : localhost
  rank      : {rank} (local_rank: 0)
  exitcode  : {code} (pid: {pid}) 
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""

NODE0 = """[rank 0] host vm node 0 engine=DeepSpeedEngine attached=True
[rank0]: Traceback (most recent call last):
[rank0]:   File "/work/train.py", line 53, in main
[rank0]:     accelerator.backward(loss)
[rank0]:   File "/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py", line 3252, in all_reduce
[rank0]:     work.wait()
[rank0]: RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:6816: Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the application.
E1205 10:33:55.376000 13142 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1) local_rank: 0 (pid: 13190) of binary: /venv/bin/python3
""" + _AGENT_TRACE.format(rank=0, code=1, pid=13190)

NODE1 = """[rank 1] host vm node 1 engine=DeepSpeedEngine attached=True
[rank 1] exiting at step 5
E1205 10:33:53.278000 13135 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 3) local_rank: 0 (pid: 13191) of binary: /venv/bin/python3
""" + _AGENT_TRACE.format(rank=1, code=3, pid=13191)

STALLED = """[rank 1] stalling at step 5
dsdoctor: stall: rank(s) [1] (on vm (node 1)) made no progress for 4.5 s (last step 5, phase idle); ending the run (--on-stall abort)
E1205 10:30:45.614000 8579 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 86) local_rank: 0 (pid: 8667) of binary: /venv/bin/python3
""" + _AGENT_TRACE.format(rank=0, code=86, pid=8667)


def diagnose(*logs: tuple[str, str], extra: list[Event] = ()):
    d = Diagnoser()
    for name, text in logs:
        d.feed_all(events_from_text(text, name))
    d.feed_all(extra)
    return [f for f in d.finish() if f.severity != "info"]


def _stall(abort: bool) -> Event:
    """The watchdog's verdict as rank 0 records it (live/watchdog.py on_stall)."""
    return Event("stall", rank=0, step=5, time=None, source="node0/events-rank0.jsonl", line=21,
                 data={"ranks": [1], "last_step": 5, "last_phase": "idle", "waited_s": 4.5, "timeout_s": 4.0,
                       "behind": [{"rank": 1, "step": 5, "phase": "idle", "node": "vm (node 1)"}],
                       "others": {"0": [5, "backward"]}, "world_size": 2, "id": 1, "on_stall": "abort",
                       "abort": abort, "heartbeat_stopped": [], "all_ranks_same_place": False})


def test_the_rank_that_exited_without_losing_a_peer_is_the_culprit_whatever_log_is_read_first():
    for order in ((("node0/console.log", NODE0), ("node1/console.log", NODE1)),
                  (("node1/console.log", NODE1), ("node0/console.log", NODE0))):
        fs = diagnose(*order)
        assert fs[0].rule == "unexplained-failure" and sorted(fs[0].ranks) == [1], [(f.rule, f.ranks) for f in fs]
        assert "exit code 3" in fs[0].title
        gloo = [f for f in fs if f.rule.startswith("gloo-")]
        assert gloo and gloo[0].consequence_of == "unexplained-failure" and sorted(gloo[0].ranks) == [0]


def test_node0_alone_says_its_rank_lost_its_peer_not_that_it_failed_by_itself():
    fs = diagnose(("node0/console.log", NODE0))
    assert fs[0].rule.startswith("gloo-") and sorted(fs[0].ranks) == [0], [(f.rule, f.ranks) for f in fs]
    assert "unexplained-failure" not in [f.rule for f in fs]


def test_the_watchdogs_own_exit_code_is_not_a_failure():
    fs = diagnose(("node0/console.log", STALLED), extra=[_stall(abort=True)])
    rules = [f.rule for f in fs]
    assert rules and rules[0].startswith("stall-") and "unexplained-failure" not in rules, rules


# deepspeed_multinode_launcher 'pdsh': deepspeed/launcher/launch.py stops its ranks when one ends
DS_LAUNCH_STALLED = """node2: [rank 1] stalling at step 5
node1: [2026-12-05 10:32:01,047] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 10365
node1: [2026-12-05 10:32:01,048] [ERROR] [launch.py:259:sigkill_handler] ['/venv/bin/python3', '-u', 'train.py'] exits with return code = 86
node2: [2026-12-05 10:32:01,577] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 10366
node2: [2026-12-05 10:32:01,577] [ERROR] [launch.py:259:sigkill_handler] ['/venv/bin/python3', '-u', 'train.py'] exits with return code = 86
pdsh@vm: node1: ssh exited with exit code 86
pdsh@vm: node2: ssh exited with exit code 86
"""


def test_the_launcher_stopping_ranks_the_watchdog_ended_is_not_a_vanished_rank():
    fs = diagnose(("console.log", DS_LAUNCH_STALLED), extra=[_stall(abort=True)])
    rules = [f.rule for f in fs]
    assert rules and rules[0].startswith("stall-") and not any(r.startswith("host-oom") for r in rules), rules


def test_exit_code_86_without_the_watchdogs_verdict_is_still_a_failure():
    fs = diagnose(("node0/console.log", STALLED))
    assert fs and fs[0].rule == "unexplained-failure" and "86" in fs[0].title


def test_a_launchers_called_process_error_is_a_wrapper_not_a_launch_problem():
    # accelerate/commands/launch.py: _run_subprocess, for deepspeed_multinode_launcher 'pdsh'
    msg = ("Command '['deepspeed', '--hostfile', '/work/hostfile', '--no_local_rank', '--launcher', 'pdsh', "
           "'--num_gpus', '1', '--master_addr', '127.0.0.1', '--master_port', '29631', 'train.py']' returned "
           "non-zero exit status 3.")
    assert classify("subprocess.CalledProcessError", msg).name == "wrapper"
    assert classify("subprocess.CalledProcessError", "Command '['ninja', '-v']' returned non-zero exit status 1.").name \
        == "environment"


# pdsh prints 'ssh exited' in the order the ssh sessions ended, which is not always the order the
# ranks died: node2's rank os._exit()s first, node1's rank then loses its gloo peer, yet node1's
# ssh can be torn down first (seen here under load). Both orders must name node2.
_PDSH_HEAD = ("node1: [2026-12-05 18:49:40,100] [INFO] [launch.py:169:main] global_rank_mapping=defaultdict("
              "<class 'list'>, {'node1': [0], 'node2': [1]})\n")
_PDSH_ECHO = """node1: [rank0]: Traceback (most recent call last):
node1: [rank0]:   File "/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py", line 3252, in all_reduce
node1: [rank0]:     work.wait()
node1: [rank0]: RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:15762: Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the application.
"""
_PDSH_NODE1 = """node1: [2026-12-05 18:49:46,597] [ERROR] [launch.py:259:sigkill_handler] ['/venv/bin/python3', '-u', 'train.py', '--local_rank=0'] exits with return code = 1
pdsh@vm: node1: ssh exited with exit code 1
"""
_PDSH_NODE2 = """node2: [2026-12-05 18:49:45,769] [ERROR] [launch.py:259:sigkill_handler] ['/venv/bin/python3', '-u', 'train.py', '--local_rank=0'] exits with return code = 3
pdsh@vm: node2: ssh exited with exit code 3
"""


def test_the_node_pdsh_saw_end_first_is_not_the_culprit_when_its_ranks_only_lost_their_peer():
    for tail in (_PDSH_NODE2 + _PDSH_NODE1, _PDSH_NODE1 + _PDSH_NODE2):
        fs = diagnose(("console.log", _PDSH_HEAD + _PDSH_ECHO + tail))
        top = fs[0]
        assert top.rule == "node-exited-first" and sorted(top.ranks) == [1] and "node2" in top.title, \
            [(f.rule, f.ranks, f.title) for f in fs]
        assert "exited with code 3" in top.title
        gloo = [f for f in fs if f.rule.startswith("gloo-")]
        assert gloo and gloo[0].consequence_of == "node-exited-first"


def test_pdshs_order_stands_when_every_node_only_lost_a_peer():
    # both nodes' ranks failed on the network (no silent death): nothing to correct
    echo2 = _PDSH_ECHO.replace("node1: [rank0]", "node2: [rank1]")
    fs = diagnose(("console.log", _PDSH_HEAD + _PDSH_ECHO + echo2 + _PDSH_NODE1 + _PDSH_NODE2))
    exits = [f for f in fs if f.rule == "node-exited-first"]
    assert exits and "node1" in exits[0].title, [(f.rule, f.ranks, f.title) for f in fs]
