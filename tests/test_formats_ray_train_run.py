"""Ray Train as it prints when run for real (Ray 2.60, generalisation round 6 part M): the worker
table that names each worker's rank, the memory monitor's kill as the driver raises it, and Ray
Train v2's wrapper of a worker's error.

Fast: text in. The lines are taken from runs of TorchTrainer + DeepSpeed on the CPU here (the whole
captured consoles are fixtures/excerpts/gen_m_ray_train_*.log); the templates are in
ray/train/v2/_internal/execution/worker_group/worker_group.py (WorkerGroup._start),
ray/train/_internal/backend_executor.py, ray/train/v2/api/exceptions.py and the raylet's
'%d worker(s) were killed due to the node running low on memory. %s'.
"""
from __future__ import annotations

from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()
TABLE = ["(TrainController pid=22634) Started training worker group of size 2: ",
         "(TrainController pid=22634) - (ip=10.0.0.2, pid=22930) world_rank=0, local_rank=0, node_rank=0",
         "(TrainController pid=22634) - (ip=10.0.0.2, pid=22956) world_rank=1, local_rank=1, node_rank=0"]
V1_TABLE = ["(TorchTrainer pid=811) Started distributed worker processes: ",
            "(TorchTrainer pid=811) - (node_id=5b1a0e7c, ip=10.0.0.2, pid=22930) world_rank=0, local_rank=0, node_rank=0",
            "(TorchTrainer pid=811) - (node_id=5b1a0e7c, ip=10.0.0.2, pid=22956) world_rank=1, local_rank=1, node_rank=0"]
WORKER_ERROR = ["(RayTrainWorker pid=22956) Error in training function:",
                "(RayTrainWorker pid=22956) Traceback (most recent call last):",
                '(RayTrainWorker pid=22956)   File "/job/train.py", line 34, in train_loop',
                "(RayTrainWorker pid=22956)     _ = labels[idx]",
                "(RayTrainWorker pid=22956) IndexError: list index out of range"]


def findings(lines: list[str]):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text("\n".join(lines) + "\n"))
    return [f for f in d.finish() if f.severity != "info"]


def test_the_worker_table_gives_a_worker_line_its_rank():
    for table in (TABLE, V1_TABLE):
        f = findings(table + ["(RayTrainWorker pid=22956) step 8 loss nan"])[0]
        assert f.category == "nan_loss" and f.ranks == [1]
        f = findings(table + WORKER_ERROR)[0]
        assert f.category == "other" and f.ranks == [1] and "IndexError" in f.evidence[0].text


def test_a_worker_line_without_the_table_or_from_another_pid_has_no_rank():
    assert findings(["(RayTrainWorker pid=22956) step 8 loss nan"])[0].ranks == []
    assert findings(TABLE + ["(RayTrainWorker pid=31337) step 8 loss nan"])[0].ranks == []
    # behind kubectl's prefix the worker's pid still names it
    f = findings([f"[pod/head-0/ray] {t}" for t in TABLE + ["(RayTrainWorker pid=22930) step 8 loss nan"]])[0]
    assert f.ranks == [0]


def test_ray_train_v2_wrapper_leaves_the_worker_error_the_cause():
    driver = ["Traceback (most recent call last):",
              '  File "/job/train.py", line 61, in <module>',
              "    result = trainer.fit()",
              "ray.train.WorkerGroupError: Training failed due to worker errors:",
              "[Rank 1 Error Snippet]:",
              "Traceback (most recent call last):",
              '  File "/job/train.py", line 34, in train_loop',
              "    _ = labels[idx]",
              "IndexError: list index out of range"]
    f = findings(TABLE + WORKER_ERROR + driver)[0]
    assert "IndexError" in f.evidence[0].text and f.ranks == [1]


def test_the_memory_monitor_kill_as_the_driver_raises_it_is_a_host_oom():
    raised = ("ray.exceptions.OutOfMemoryError: 1 worker(s) were killed due to the node running low on memory. Memory "
              "on the node (IP: 10.0.0.2, ID: 8465d20bf16b22ed) was 22.37GB used / 23.54GB limit (0.950308)")
    f = findings(["Traceback (most recent call last):", '  File "/job/train.py", line 61, in <module>',
                  "    result = trainer.fit()", raised,
                  "OOM kill reason: Memory usage 24014938112B exceeded threshold of 24012392448B (95.0% of "
                  "25276203008B limit)"])[0]
    assert (f.category, f.rule, f.node) == ("host_oom", "host-oom-ray-memory-monitor", "10.0.0.2")
    assert "were killed due to the node running low on memory" in f.evidence[0].text
    # none killed: no finding
    assert not findings(["0 worker(s) were killed due to the node running low on memory. "])


def test_ray_worker_log_file_names_hold_no_rank():
    from dsdoctor.sources.inputs import _rank_hint
    assert _rank_hint("worker-62ef00443d7756fc1957fe772b88edcfdc0598cddc4b65ae5f57b2fb-01000000-28043.err") is None
    assert _rank_hint("python-core-worker-06b365bfc879d3542bd7c9ea54ce4a81540f106002260c4707877a22_5574.log") is None
    assert _rank_hint("worker-3.log") == 3 and _rank_hint("rank1.out") == 1


def test_a_sigkilled_worker_is_the_raylets_death_record_with_the_workers_rank():
    died = ("(raylet) A worker died or was killed while executing a task by an unexpected system error. To troubleshoot "
            "the problem, check the logs for the dead worker. Lease ID: 05 Worker ID: 06 Node ID: e9 Worker IP address: "
            "10.0.0.2 Worker port: 45687 Worker PID: 22956 Worker exit type: SYSTEM_ERROR Worker exit detail: Worker "
            "unexpectedly exits with a connection error code 2. End of file. Some common causes include: (1) the "
            "process was killed by the OOM killer due to high memory usage, (2) ray stop --force was called, or (3) the "
            "worker crashed unexpectedly due to SIGSEGV or another unexpected error.")
    summary = ["(TrainController pid=22634) Error: Training failed due to worker errors:",
               "(TrainController pid=22634) [Rank 1 Error Snippet]:",
               "(TrainController pid=22634) A worker health check failed."]
    f = findings(TABLE + ["(RayTrainWorker pid=22956) step 5 loss 0.3982", died] + summary)[0]
    assert f.ranks == [1] and "Worker PID: 22956" in f.evidence[0].text
    # the controller's summary alone is still reported, quoting itself
    f = findings(summary)[0]
    assert "Training failed due to worker errors" in f.evidence[0].text


def test_the_drivers_copy_under_a_rank_snippet_is_that_ranks_error():
    def driver(head: str) -> list[str]:
        return ["Traceback (most recent call last):", '  File "/job/train.py", line 61, in <module>',
                "    result = trainer.fit()", "ray.train.WorkerGroupError: Training failed due to worker errors:",
                head, "Traceback (most recent call last):", '  File "/job/train.py", line 34, in train_loop',
                "    _ = labels[idx]", "IndexError: list index out of range"]
    f = findings(driver("[Rank 1 Error Snippet]:"))[0]
    assert "IndexError" in f.evidence[0].text and f.ranks == [1]
    # one error from several ranks names none of them; no snippet, no rank
    assert findings(driver("[Rank 0,1 Error Snippet]:"))[0].ranks == []
    assert findings(driver(""))[0].ranks == []


TRANSIENT = ["(TrainController pid=22634) Failed to send resource request for train-e765. If this only happens "
             "transiently during network partition or CPU being overloaded, it's safe to ignore this error. If this "
             "error persists, file a GitHub issue.",
             "(TrainController pid=22634) Traceback (most recent call last):",
             '(TrainController pid=22634)   File "/venv/ray/_private/worker.py", line 1007, in get_objects',
             "(TrainController pid=22634)     ] = self.core_worker.get_objects(",
             '(TrainController pid=22634)   File "python/ray/includes/common.pxi", line 107, in ray._raylet.check_status',
             "(TrainController pid=22634) ray.exceptions.GetTimeoutError: Get timed out: some object(s) not ready."]


def report(n: int, pid: int = 22930, loss: str = "0.6256") -> str:
    return (f"(RayTrainWorker pid={pid}) Reporting training result {n}: TrainingReport(checkpoint=None, "
            f"metrics={{'loss': {loss}, 'step': {n}}}, validation=False) from rank 0")


def test_ray_train_reports_are_progress_a_handled_error_before_them_is_not_the_failure():
    assert not findings(TRANSIENT + TABLE + [report(n) for n in range(1, 6)])
    # with no report after it, the same traceback is what the run ended with
    assert "GetTimeoutError" in findings(TRANSIENT + TABLE + [report(1)])[0].evidence[0].text
    f = findings(TABLE + [report(1), report(2), report(3, loss="nan")])[0]
    assert f.category == "nan_loss" and f.ranks == [0] and f.steps[0] == 3


def test_abseils_signal_record_is_how_the_run_ended():
    stop = "*** SIGTERM received at time=1796531088 on cpu 0 ***"
    f = findings(TABLE + [report(n) for n in range(1, 6)] + [stop, "PC: @     0x7efd73d162ec  (unknown)  __read", stop])[0]
    assert f.rule == "failure-stopped-from-outside" and "SIGTERM received" in f.evidence[0].text
    f = findings(TABLE + [report(1), "[2026-12-06 04:24:49,016 E 27310 27310] logging.cc:474: *** SIGSEGV received "
                                     "at time=1796531089 on cpu 1 ***"])[0]
    assert f.severity == "error" and "SIGSEGV" in f.evidence[0].text
    # the words in prose are no signal
    assert not findings(TABLE + [report(n) for n in range(1, 6)] + ["a SIGTERM received at time=noon is fine"])


def test_a_workers_own_file_takes_the_rank_its_reports_name():
    own = [":job_id:01000000", ":actor_name:RayTrainWorker"] + [r[len("(RayTrainWorker pid=22930) "):].replace(
        "from rank 0", "from rank 1") for r in (report(1), report(2))] + WORKER_ERROR[1:]
    own = [ln.replace("(RayTrainWorker pid=22956) ", "") for ln in own]
    f = findings(own)[0]
    assert "IndexError" in f.evidence[0].text and f.ranks == [1]
    # the driver's console holds every rank's reports: none is lent
    both = own[:3] + [own[3].replace("from rank 1", "from rank 0")] + own[4:]
    assert findings(both)[0].ranks == []
