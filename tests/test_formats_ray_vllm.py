"""RLHF front-ends (generalisation round 4, part G): Ray's worker prefixes and wrappers, Ray's
memory monitor, vLLM's log head and memory errors, and the DeepSpeed launcher naming the rank of
an unprefixed error.

Fast: text in, built from the message templates of Ray 2.40 (ray/_private/worker.py
print_worker_logs, ray/_private/ray_logging LogDeduplicator, ray/exceptions.py RayTaskError /
ActorDiedError, the raylet's node_manager.cc strings), vLLM (vllm/logger.py, worker/worker.py,
v1/worker/gpu_worker.py), torch's CUDA OOM message and deepspeed/launcher/launch.py.
"""
from __future__ import annotations

import pytest

from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.lines import clean
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB. GPU 3 has a total capacity of 79.15 GiB "
       "of which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.12 GiB memory in use. Of the allocated "
       "memory 74.31 GiB is allocated by PyTorch, and 2.87 GiB is reserved by PyTorch but unallocated.")


def findings(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return [f for f in d.finish() if f.severity != "info"]


@pytest.mark.parametrize("raw, text, host", [
    ("(ActorModelRayActor pid=2213, ip=10.0.0.3) [rank3]: x", "x", "10.0.0.3"),
    ("(pid=1234) x", "x", None),
    ("(raylet, ip=10.0.0.4) x", "x", "10.0.0.4"),
    ("(autoscaler +1m24s) x", "x", None),
    ("(VllmWorker rank=1 pid=99) INFO 12-05 10:00:40 [gpu_worker.py:232] x", "x", None),
    ("(pid=12) x [repeated 7x across cluster] (Ray deduplicates logs by default. Set RAY_DEDUP_LOGS=0 to disable "
     "log deduplication, or see https://docs.ray.io/ for more options.)", "x", None),
    ("ERROR 12-05 10:00:56 [core.py:515]   File \"a.py\", line 1, in f", '  File "a.py", line 1, in f', None),
    ("INFO 12-05 10:00:40 llm_engine.py:237] x", "x", None),
    ("INFO:root:x", "INFO:root:x", None),                  # Python's basicConfig format is not vLLM's head
])
def test_ray_and_vllm_heads_are_stripped_and_the_ray_ip_is_the_host(raw, text, host):
    got = clean(raw)
    assert got[0] == text and got[3] == host
    if raw.startswith("(ActorModelRayActor"):
        assert got[1] == 3                                 # torch's [rank3]: under Ray's prefix


DRIVER = ["Traceback (most recent call last):",
          '  File "/opt/conda/lib/python3.10/site-packages/ray/_private/worker.py", line 906, in get_objects',
          "    raise value.as_instanceof_cause()"]


def test_the_worker_error_under_ray_task_error_is_the_cause_and_names_its_node():
    text = "\n".join(DRIVER + [
        "ray.exceptions.RayTaskError(OutOfMemoryError): ray::ActorModelRayActor.fit() (pid=2215, ip=10.0.1.7, "
        "actor_id=3c5f, repr=<openrlhf.trainer.ray.ppo_actor.ActorModelRayActor object at 0x7f3a1c2b5e10>)",
        '  File "/opt/conda/lib/python3.10/site-packages/deepspeed/runtime/engine.py", line 2126, in backward',
        "    self.optimizer.backward(loss, retain_graph=retain_graph)", OOM]) + "\n"
    fs = findings(text)
    assert fs[0].category == "oom" and fs[0].node == "10.0.1.7"
    assert "CUDA out of memory" in fs[0].evidence[0].text
    assert fs[0].to_dict()["node"] == "10.0.1.7"


def test_a_ray_prefix_with_a_rank_names_the_rank_host():
    text = f"(RayTrainWorker pid=6123, ip=10.0.0.6) [rank11]: {OOM}\n"
    fs = findings(text)
    assert fs[0].ranks == [11] and fs[0].hosts == {11: "10.0.0.6"}


def test_vllm_memory_errors_are_oom_on_the_vllm_side_with_vllm_arguments():
    text = "\n".join(DRIVER[:1] + [
        '  File "/opt/conda/lib/python3.10/site-packages/vllm/worker/worker.py", line 528, in raise_if_cache_size_invalid',
        '    raise ValueError("No available memory for the cache blocks. "',
        "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine."]) + "\n"
    f = findings(text)[0]
    assert (f.category, f.rule) == ("oom", "failure-vllm-memory")
    assert "gpu_memory_utilization" in f.fixes[0].title and f.fixes[0].config_patch is None


def test_a_torch_oom_inside_vllm_is_the_engine_side_and_one_in_the_trainer_is_not():
    def tb(path, fn):
        return "\n".join(["Traceback (most recent call last):", f'  File "{path}", line 1, in {fn}', "    x()", OOM]) + "\n"
    f = findings(tb("/usr/lib/python3/site-packages/vllm/worker/model_runner.py", "profile_run"))[0]
    assert f.rule == "oom-vllm-engine"
    f = findings(tb("/usr/lib/python3/site-packages/deepspeed/runtime/engine.py", "backward"))[0]
    assert f.rule != "oom-vllm-engine" and f.category == "oom"


def test_ray_memory_monitor_kill_is_a_host_oom_on_that_node():
    text = ("(raylet) [2026-12-05 10:01:03,554 E 1822 1822] (raylet) node_manager.cc:3219: 1 Workers (tasks / actors) "
            "killed due to memory pressure (OOM), 0 Workers crashed due to other reasons at node (ID: 5b1a0e7c, IP: "
            "10.0.0.2) over the last time period. To see more information about the Workers killed on this node, use "
            "`ray logs raylet.out -ip 10.0.0.2`\n")
    f = findings(text)[0]
    assert (f.category, f.rule) == ("host_oom", "host-oom-ray-memory-monitor") and "10.0.0.2" in f.title


def test_a_ray_worker_that_died_without_an_error_is_reported_but_does_not_outrank_a_real_one():
    died = ("(raylet) A worker died or was killed while executing a task by an unexpected system error. To troubleshoot "
            "the problem, check the logs for the dead worker. RayTask ID: ff Worker ID: 0a Node ID: 5b Worker IP address: "
            "10.0.0.3 Worker port: 10031 Worker PID: 2213 Worker exit type: SYSTEM_ERROR Worker exit detail: Worker "
            "unexpectedly exits with a connection error code 2. End of file. There are some potential root causes. (1) "
            "The process is killed by SIGKILL by OOM killer due to high memory usage.\n")
    f = findings(died)[0]
    assert f.category == "other" and f.node == "10.0.0.3"
    f = findings(f"(ActorModelRayActor pid=2213, ip=10.0.0.3) [rank3]: {OOM}\n" + died)[0]
    assert f.category == "oom" and f.ranks == [3]


def test_the_deepspeed_launcher_names_the_rank_of_an_unprefixed_oom():
    text = "\n".join([
        "[2026-12-05 10:00:02,201] [INFO] [launch.py:146:main] WORLD INFO DICT: {'localhost': [0, 1, 2, 3, 4, 5, 6, 7]}",
        "Traceback (most recent call last):", '  File "main.py", line 355, in main', "    model.backward(loss)", OOM,
        "[2026-12-05 10:41:12,610] [ERROR] [launch.py:325:sigkill_handler] ['/usr/bin/python', '-u', 'main.py', "
        "'--local_rank=6', '--zero_stage', '2'] exits with return code = 1"]) + "\n"
    assert findings(text)[0].ranks == [6]


UNSCHEDULABLE = ("(autoscaler +{t}) Warning: The following resource request cannot be scheduled right now: {{'GPU': 1.0}}. "
                 "This is likely due to all cluster resources being claimed by actors. Consider creating fewer actors or "
                 "adding more nodes to this Ray cluster.\n")


def test_the_autoscaler_waiting_once_is_a_node_starting_twice_a_run_that_cannot_start():
    assert not findings(UNSCHEDULABLE.format(t="14s"))
    fs = findings(UNSCHEDULABLE.format(t="14s") + UNSCHEDULABLE.format(t="49s"))
    assert fs and "cannot be scheduled" in fs[0].evidence[0].text
