"""How runs end, as users paste them (generalisation round 3, part D): the rank of a traceback
inside torchelastic's error record, SageMaker's Open MPI prefix, JSON-lines records, pasted tails,
aborts that echo the NCCL watchdog, NCCL version banners that differ between nodes.

Fast: text in, built from the message templates of the installed torch (elastic/multiprocessing/
errors/__init__.py, ProcessGroupNCCL), deepspeed (runtime/config.py) and NCCL's src/init.cc banner.
"""
from __future__ import annotations

import pytest

from dsdoctor.detect.failure import _task_ranks
from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.lines import clean
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()


def findings(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return [f for f in d.finish() if f.severity != "info"]


def record(rank: int, code: int, message: list[str], prefix: str = "") -> str:
    """One torchelastic ChildFailedError table (errors/__init__.py _MSG_FORMAT_TEMPLATE) whose root
    cause record holds `message` in its 'traceback :' field."""
    lines = ["torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ", "=" * 40, "train.py FAILED",
             "-" * 40, "Failures:", "  <NO_OTHER_FAILURES>", "-" * 40, "Root Cause (first observed failure):", "[0]:",
             "  time      : 2026-12-05_10:42:17", "  host      : node-a", f"  rank      : {rank} (local_rank: {rank % 8})",
             f"  exitcode  : {code} (pid: 4242)", "  error_file: /tmp/torchelastic_x/none_0/attempt_0/0/error.json",
             "  traceback : " + message[0], *message[1:], "=" * 40]
    return "".join(prefix + ln + "\n" for ln in lines)


BATCH_TB = ["Traceback (most recent call last):",
            '  File "/usr/lib/python3/site-packages/deepspeed/runtime/config.py", line 649, in _set_batch_related_parameters',
            "    assert False, \\",
            "AssertionError: Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided"]


@pytest.mark.parametrize("prefix", ["", "node1: "])
def test_a_traceback_inside_the_error_record_takes_the_records_rank(prefix):
    (f,) = findings(record(5, 1, BATCH_TB, prefix))
    assert f.category == "config_error" and f.ranks == [5]


def test_the_lent_rank_ends_with_the_traceback():
    text = record(5, 1, BATCH_TB) + "some later line\nValueError: an unrelated error\n"
    evs = [e for e in events_from_text(text) if e.kind == "exception" and "ChildFailedError" not in e.data["type"]]
    assert [e.rank for e in evs] == [5, None]


def test_a_chained_exception_inside_the_record_keeps_the_rank():
    chained = ["Traceback (most recent call last):", '  File "train.py", line 3, in <module>', "    cfg = load()",
               "KeyError: 'train_batch_size'", "", "The above exception was the direct cause of the following exception:",
               "", "Traceback (most recent call last):", '  File "train.py", line 5, in <module>', "    raise RuntimeError('bad config')",
               "RuntimeError: bad config"]
    evs = [e for e in events_from_text(record(6, 1, chained)) if e.kind == "exception" and "ChildFailedError" not in e.data["type"]]
    assert [e.rank for e in evs] == [6, 6]


def test_a_signal_record_lends_no_rank():
    text = record(2, -6, ["Signal 6 (SIGABRT) received by PID 4242"]) + "ValueError: later\n"
    assert [e.rank for e in events_from_text(text) if e.kind == "exception" and "ChildFailedError" not in e.data["type"]] == [None]


@pytest.mark.parametrize("raw,rank", [
    ("[1,mpirank:3,algo-1]<stderr>:RuntimeError: CUDA error: an illegal memory access was encountered", 3),
    ("[1,mpirank:12,algo-2]<stdout>:hello", 12),
    ('{"level": "ERROR", "rank": 6, "msg": "RuntimeError: CUDA error: uncorrectable ECC error encountered"}', 6),
    ('{"level": "ERROR", "local_rank": 6, "msg": "x"}', None),
])
def test_rank_of_sagemaker_prefix_and_json_records(raw, rank):
    assert clean(raw)[1] == rank


def test_kubectl_prefix_is_the_pods_and_comes_off():
    # kubectl logs --prefix: '[pod/{pod}/{container}] ' before every line, a traceback's too
    assert clean("[pod/ft-worker-2/pytorch] [rank3]:RuntimeError: CUDA error: x") == \
        ("RuntimeError: CUDA error: x", 3, None, "ft-worker-2")
    text = "".join("[pod/ft-worker-2/pytorch] " + ln + "\n" for ln in BATCH_TB)
    assert findings(text)[0].category == "config_error"


def timeout(r: int) -> str:
    return (f"{r}: [E1205 10:41:1{r % 10}.1 ProcessGroupNCCL.cpp:632] [PG ID 0 PG GUID 0(default_pg) Rank {r}] Watchdog caught "
            f"collective operation timeout: WorkNCCL(SeqNum=44, OpType=ALLREDUCE, NumelIn=8, NumelOut=8, "
            f"Timeout(ms)=600000) ran for 600081 milliseconds before timing out.\n")


def test_a_tail_that_starts_inside_the_timeouts_names_no_silent_rank():
    text = "".join(timeout(r) for r in range(4, 8)) + "srun: error: node-a: tasks 0-7: Aborted (core dumped)\n"
    (f,) = findings(text)
    assert f.category == "comm_stall" and f.rule != "comm-timeout-silent-rank"


def test_a_rank_missing_in_the_middle_is_still_silent():
    text = "training...\n" + "".join(timeout(r) for r in (0, 1, 3))
    assert findings(text)[0].rule == "comm-timeout-silent-rank"


def test_heartbeat_monitor_abort_is_not_a_native_crash():
    text = ("[1,mpirank:9,algo-2]<stderr>:[E1205 10:40:01.223 ProcessGroupNCCL.cpp:1484] [PG ID 0 PG GUID 0(default_pg) "
            "Rank 9] Heartbeat monitor timed out! Process will be terminated after dumping debug info. workMetaList_.size()=3\n"
            "mpirun.real noticed that process rank 9 with PID 0 on node algo-2 exited on signal 6 (Aborted).\n")
    assert findings(text)[0].category == "comm_stall"


def test_srun_task_lists():
    assert _task_ranks("0-3,8") == {0, 1, 2, 3, 8} and _task_ranks(None) == set() and _task_ranks("x") == set()


BANNER = "{h}: {h}:55{n}:55{n} [0] NCCL INFO NCCL version {v}\n"


def test_nodes_with_different_nccl_releases():
    text = BANNER.format(h="node-a", n=10, v="2.18.1+cuda12.1") + BANNER.format(h="node-b", n=11, v="2.21.5+cuda12.4")
    (f,) = findings(text)
    assert f.rule == "nccl-version-mismatch" and "2.18.1" in f.title and "2.21.5" in f.title


def test_the_same_process_printing_a_new_release_is_a_rerun():
    text = "[rank0]:" + BANNER.format(h="node-a", n=10, v="2.18.1+cuda12.1") + "[rank0]:" + BANNER.format(
        h="node-a", n=10, v="2.21.5+cuda12.4") + "[rank1]:" + BANNER.format(h="node-b", n=11, v="2.21.5+cuda12.4")
    assert findings(text) == []


def test_torchs_nccl_version_in_an_error_is_no_banner():
    evs = events_from_text("torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/"
                           "NCCLUtils.hpp:317, unhandled system error, NCCL version 2.21.5\n")
    assert not [e for e in evs if e.kind == "nccl_version"]


def test_nccls_shm_segment_in_torchs_last_error_line_is_ncclS():
    text = ("torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/NCCLUtils.hpp:317, "
            "unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
            "ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error. \n"
            "Last error:\n"
            "Error while creating shared memory segment /dev/shm/nccl-0cN1hV (size 9637888), error: No space left on device (28)\n")
    assert findings(text)[0].category == "nccl_error"


PDSH_TIMEOUT = ("{h}: [E ProcessGroupNCCL.cpp:821] [Rank {r}] Watchdog caught collective operation timeout: WorkNCCL("
                "SeqNum=77, OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1806271 milliseconds before timing out.\n")


def test_pdsh_node_whose_ranks_only_timed_out_is_not_the_root_cause():
    text = PDSH_TIMEOUT.format(h="node1", r=0) + PDSH_TIMEOUT.format(h="node1", r=1) + \
        "pdsh@vm: node1: ssh exited with exit code 250\n"
    assert findings(text)[0].category == "comm_stall"


def test_pdsh_node_with_an_error_of_its_own_stays_first():
    text = (PDSH_TIMEOUT.format(h="node1", r=0) +
            "node1: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has a total capacity of 79.15 GiB of which 1.10 GiB is free.\n"
            + PDSH_TIMEOUT.format(h="node2", r=8) +
            "pdsh@vm: node1: ssh exited with exit code 1\npdsh@vm: node2: ssh exited with exit code 1\n")
    fs = findings(text)
    assert fs[0].category == "oom" and not any("node2" in f.title for f in fs)


XID74 = "kernel: NVRM: Xid (PCI:0000:3b:00): 74, pid={pid}, name=python, NVLink: fatal error detected on link 4\n"


@pytest.mark.parametrize("text,ranks", [
    # the pid of the Xid is the pid of rank 3's NCCL WARN line
    ("[1,mpirank:3,algo-1]<stderr>:algo-1:311:402 [3] enqueue.cc:1403 NCCL WARN Cuda failure 'an illegal memory access was encountered'\n"
     "[1,mpirank:5,algo-1]<stderr>:algo-1:313:404 [5] enqueue.cc:1403 NCCL WARN Cuda failure 'an illegal memory access was encountered'\n"
     + XID74.format(pid=311), [3]),
    # no pid to match: the only rank with a GPU error
    ("[1,6]<stderr>:RuntimeError: CUDA error: uncorrectable ECC error encountered\n" + XID74.format(pid=999), [6]),
    # two ranks and no pid: none named
    ("[1,6]<stderr>:RuntimeError: CUDA error: uncorrectable ECC error encountered\n"
     "[1,7]<stderr>:RuntimeError: CUDA error: uncorrectable ECC error encountered\n" + XID74.format(pid=999), []),
])
def test_the_rank_behind_a_driver_xid(text, ranks):
    (f,) = [f for f in findings(text) if f.rule == "hw-xid-gpu-fault"]
    assert f.ranks == ranks


def test_a_watchdog_abort_reported_by_the_launcher_is_no_vanished_rank():
    # launch.py's 'exits with return code = -6' of a rank the watchdog took down: no host OOM
    text = ("[2026-12-05 10:00:00,000] [INFO] [launch.py:146:main] WORLD INFO DICT: {'localhost': [0, 1, 2, 3]}\n"
            "[2026-12-05 10:00:00,000] [INFO] [launch.py:163:main] dist_world_size=4\n"
            + "".join(f"[E ProcessGroupNCCL.cpp:828] [Rank {r}] Watchdog caught collective operation timeout: WorkNCCL("
                      f"SeqNum=2412, OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1800572 milliseconds before timing out.\n"
                      for r in (0, 1, 2))
            + "[2026-12-05 10:41:00,001] [INFO] [launch.py:315:sigkill_handler] Killing subprocess 5501\n"
            "[2026-12-05 10:41:00,002] [ERROR] [launch.py:321:sigkill_handler] ['/usr/bin/python', '-u', 'train.py', "
            "'--local_rank=0'] exits with return code = -6\n")
    f = findings(text)[0]
    assert f.rule == "comm-timeout-silent-rank" and 3 in f.ranks     # dist_world_size=4: rank 3 never reported


def test_a_task_that_crashed_before_srun_cancelled_the_step_is_the_cause():
    text = ("srun: error: gpu-node-07: task 3: Segmentation fault (core dumped)\nsrun: Terminating StepId=5512.0\n"
            "0: slurmstepd: error: *** STEP 5512.0 ON gpu-node-07 CANCELLED AT 2026-12-05T10:50:01 ***\n")
    f = findings(text)[0]
    assert f.rule == "failure-crash-signal" and 3 in f.ranks


def test_a_config_value_left_as_a_string_is_named_by_its_engine_accessor():
    # a real DeepSpeed 0.19 run with "gradient_clipping": "auto" given to deepspeed.initialize
    text = ("[rank0]:   File \"/usr/lib/python3/site-packages/deepspeed/runtime/engine.py\", line 3506, in _take_model_step\n"
            "[rank0]:     if self.gradient_clipping() > 0.0:\n"
            "[rank0]:        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
            "[rank0]: TypeError: '>' not supported between instances of 'str' and 'float'\n")
    f = findings(text)[0]
    assert f.rule == "log-cfg-auto-left" and f.key == "gradient_clipping" and f.ranks == [0]


def test_auto_passed_to_a_compiled_optimizer_op():
    # a real DeepSpeed 0.19 run with optimizer.params {"lr": "auto", "weight_decay": "auto"} (FusedAdam's op)
    text = ("[rank0]:   File \"/usr/lib/python3/site-packages/deepspeed/ops/adam/multi_tensor_apply.py\", line 17, in __call__\n"
            "[rank0]: TypeError: multi_tensor_adam(): incompatible function arguments. The following argument types are supported:\n"
            "[rank0]:     1. (arg0: typing.SupportsInt | typing.SupportsIndex, arg1: torch.Tensor) -> None\n"
            "[rank0]: \n[rank0]: Invoked with: 65536, tensor([0], dtype=torch.int32), [[tensor([[-0.0971, -0.1312],\n"
            "[rank0]:         [0., 0.]])]], 'auto', 0.9, 0.999, 1e-08, 1, 1, 1, 'auto'\n")
    f = findings(text)[0]
    assert f.rule == "log-cfg-auto-left" and f.key == "optimizer.params"


@pytest.mark.parametrize("model,field,value,patch", [
    # pydantic prints input_value as a Python repr; a nested field as its dotted path
    ("DeepSpeedBF16Config", "enable", "True", {"bf16": {"enable": None, "enabled": True}}),
    ("DeepSpeedZeroConfig", "offload_param.pin_memroy", "True",
     {"zero_optimization": {"offload_param": {"pin_memroy": None, "pin_memory": True}}}),
])
def test_a_misspelt_pydantic_field_is_renamed_with_its_value(model, field, value, patch):
    text = (f"pydantic_core._pydantic_core.ValidationError: 1 validation error for {model}\n{field}\n"
            f"  Extra inputs are not permitted [type=extra_forbidden, input_value={value}, input_type=bool]\n")
    (ev,) = [e for e in events_from_text(text) if e.kind == "config_error"]
    assert ev.data["patch"] == patch
