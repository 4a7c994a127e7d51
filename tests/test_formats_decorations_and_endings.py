"""Line decorations and run endings that real logs of every front-end carry: glog heads (no year),
transformers examples' '%m/%d/%Y' timestamps, Open MPI's --tag-output prefix, the DeepSpeed
launcher's local rank, Slurm's step teardown after a killed task, NCCL's informational IB events.

Fast: text in (message templates from the installed torch/deepspeed/transformers sources), no
DeepSpeed needed.
"""
from __future__ import annotations

import time

import pytest

from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.formats.nccl import warn_cause
from dsdoctor.sources.lines import clean
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()

WATCHDOG = ("[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE, NumelIn=8, "
            "NumelOut=8, Timeout(ms)=600000) ran for 600081 milliseconds before timing out.")


def findings(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return [f for f in d.finish() if f.severity != "info"]


def ymd_hms(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


# ---------------------------------------------------------------- timestamps
@pytest.mark.parametrize("raw", [
    "[rank1]:[E1205 10:00:00.123456 2201 torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:616] " + WATCHDOG,
    "E1205 10:00:00.123456 2201 torch/distributed/elastic/multiprocessing/api.py:869] failed (exitcode: 1)",
])
def test_glog_head_gives_a_time_and_keeps_its_text(raw):
    text, rank, t, _ = clean(raw)
    assert text.lstrip("[").startswith("E1205 10:00:00.123456")        # the head (its level) stays
    assert t is not None and ymd_hms(t).endswith("12-05 10:00:00") and abs(t % 1 - 0.123456) < 1e-6
    assert ymd_hms(clean(raw, 2026)[2]) == "2026-12-05 10:00:00"


def test_glog_time_takes_the_year_of_the_log():
    log = ("[2026-12-05 09:59:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step=10, skipped=0, lr=[1e-05], mom=[(0.9, 0.95)]\n"
           f"[rank1]:[E1205 10:00:00.500000 2201 ProcessGroupNCCL.cpp:616] {WATCHDOG}\n")
    (ev,) = [e for e in events_from_text(log) if e.kind == "collective_timeout"]
    assert ymd_hms(ev.time) == "2026-12-05 10:00:00" and ev.rank == 1


def test_glog_times_without_a_dated_line_stay_relative():
    log = (f"[E1205 10:00:00.000000 2201 ProcessGroupNCCL.cpp:616] {WATCHDOG}\n"
           f"[E1205 10:00:05.000000 2202 ProcessGroupNCCL.cpp:616] {WATCHDOG.replace('[Rank 1]', '[Rank 2]')}\n")
    a, b = [e for e in events_from_text(log) if e.kind == "collective_timeout"]
    assert b.time - a.time == pytest.approx(5.0)


def test_feb_29_of_a_year_without_it_is_no_time():
    assert clean("I0229 00:00:01.5 1 a.cc:1] x", 2026)[2] is None


def test_transformers_examples_timestamp():
    # transformers examples: logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
    # datefmt="%m/%d/%Y %H:%M:%S")
    text, _, t, _ = clean("12/05/2026 10:00:00 - ERROR - __main__ - the dataset is empty")
    assert ymd_hms(t) == "2026-12-05 10:00:00" and text.startswith("ERROR - __main__")
    (ev,) = [e for e in events_from_text("12/05/2026 10:00:00 - ERROR - __main__ - the dataset is empty\n")
             if e.kind == "error_line"]
    assert ev.time == t and "dataset is empty" in ev.data["message"]


# ---------------------------------------------------------------- ranks
def test_open_mpi_tag_output_prefix_names_the_rank():
    text, rank, _, _ = clean("[1,3]<stderr>:torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.")
    assert rank == 3 and text.startswith("torch.OutOfMemoryError")
    assert clean("[1,12]<stdout>:hello")[1] == 12


@pytest.mark.parametrize("raw,host", [
    # kubectl logs --prefix (staging/src/k8s.io/kubectl/pkg/cmd/logs: "[pod/NAME/CONTAINER] ")
    ("[pod/llama-worker-1/pytorch] [rank1]: torch.OutOfMemoryError: CUDA out of memory.", "llama-worker-1"),
    # syslog / journald's short format: "MON DD HH:MM:SS HOST IDENT[PID]: "
    ("Dec 05 10:00:01 gpu-node-3 python[4242]: [rank1]: torch.OutOfMemoryError: CUDA out of memory.", "gpu-node-3"),
    ("Dec 05 10:00:01 [rank1]: torch.OutOfMemoryError: CUDA out of memory.", None),       # `ts`
    # a log quoted in a GitHub issue or an e-mail
    ("> [rank1]: torch.OutOfMemoryError: CUDA out of memory.", None),
    (">> [rank1]: torch.OutOfMemoryError: CUDA out of memory.", None),
    # `cat -n`
    ("   412\t[rank1]: torch.OutOfMemoryError: CUDA out of memory.", None),
])
def test_wrappers_a_pasted_log_picks_up_are_stripped(raw, host):
    text, rank, _, h = clean(raw)
    assert text.startswith("torch.OutOfMemoryError") and rank == 1 and h == host


def test_a_time_alone_is_not_taken_for_a_syslog_host():
    text, _, _, host = clean("Dec 05 10:00:01 [2026-12-05 10:00:01,123] [INFO] [engine.py:1] step=4")
    assert host is None and text.startswith("[INFO] [engine.py:1]")


def test_a_quoted_traceback_is_still_a_traceback():
    tb = ("Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n    main()\n"
          "ModuleNotFoundError: No module named 'deepspeed'\n")
    quoted = "".join(f"> {l}\n" for l in tb.splitlines())
    (ev,) = [e for e in events_from_text(quoted) if e.kind == "exception"]
    assert ev.data["type"] == "ModuleNotFoundError"


LAUNCH_EXIT = ("[2026-12-05 10:00:00,000] [ERROR] [launch.py:325:sigkill_handler] ['/usr/bin/python3', '-u', "
               "'train.py', '--local_rank={lr}'] exits with return code = -9\n")


@pytest.mark.parametrize("prelude,local,rank", [
    # launch.py main: 'nnodes={n}, num_local_procs={k}, node_rank={r}'
    ("[2026-12-05 10:00:00,000] [INFO] [launch.py:152:main] nnodes=2, num_local_procs=8, node_rank=1\n", 3, 11),
    # 'WORLD INFO DICT: {world_info}' with one host: local ranks are global ranks
    ("[2026-12-05 10:00:00,000] [INFO] [launch.py:146:main] WORLD INFO DICT: {'localhost': [0, 1, 2, 3]}\n", 2, 2),
    ("", 2, None),
    ("[2026-12-05 10:00:00,000] [INFO] [launch.py:146:main] WORLD INFO DICT: {'a': [0, 1], 'b': [0, 1]}\n", 1, None),
])
def test_deepspeed_launcher_local_rank_is_a_global_rank_when_the_node_is_known(prelude, local, rank):
    (ev,) = [e for e in events_from_text(prelude + LAUNCH_EXIT.format(lr=local)) if e.kind == "killed"]
    assert ev.rank == rank and ev.data["local_rank"] == local


# ---------------------------------------------------------------- endings
def test_task_killed_before_srun_cancels_the_step_is_the_cause():
    log = ("srun: error: gpu-node-09: task 3: Killed\n"
           "srun: launch/slurm: _step_signal: Terminating StepId=77001.0\n"
           "slurmstepd: error: *** STEP 77001.0 ON gpu-node-09 CANCELLED AT 2026-12-05T09:30:01 ***\n"
           "srun: error: gpu-node-09: tasks 0-2: Terminated\n")
    top = findings(log)[0]
    assert top.category == "host_oom" and 3 in top.ranks


def test_scancel_then_killed_tasks_is_a_stop_from_outside():
    log = ("slurmstepd: error: *** STEP 77001.0 ON gpu-node-09 CANCELLED AT 2026-12-05T09:30:01 ***\n"
           "srun: error: gpu-node-09: task 3: Killed\n"
           "srun: error: gpu-node-09: tasks 0-2: Terminated\n")
    assert findings(log)[0].category != "host_oom"


@pytest.mark.parametrize("msg,cause", [
    ("NET/IB : mlx5_2:1 Got async event : port active", None),
    ("NET/IB : mlx5_2:1 Got async event : client reregistration", None),
    ("NET/IB : mlx5_2:1 Got async event : port error", "ib"),
    ("NET/IB : mlx5_2:1 Got async event : local catastrophic error", "ib"),
])
def test_nccl_ib_async_events(msg, cause):
    # nccl transport/net_ib.cc ncclIbAsyncThreadMain; the strings are libibverbs' ibv_event_type_str
    assert warn_cause(msg) == cause


# ---------------------------------------------------------------- exception names without Error
def test_tracebacks_ending_in_stopiteration_or_queue_empty_name_their_exception():
    """CPython prints a message-less exception as its bare name (Lib/traceback.py
    format_exception_only): StopIteration from next() on an exhausted loader, _queue.Empty from a
    get() with a timeout. They are the exception, not a traceback cut off before one."""
    for frame, last in (("    batch = next(iter(train_loader))", "StopIteration"),
                        ("    raise Empty", "_queue.Empty")):
        text = f'Traceback (most recent call last):\n  File "train.py", line 5, in <module>\n{frame}\n{last}\n'
        top = findings(text)[0]
        assert top.rule == "unexplained-failure" and last in top.summary and ': ""' not in top.summary
    assert not findings("Empty\nqueue.Empty is raised when the queue is empty\n")


# ---------------------------------------------------------------- excerpts that start mid-way
def test_an_excerpt_that_starts_inside_a_traceback_is_a_cut_off_traceback():
    text = ('[rank0]:     trainer.train()\n'
            '[rank0]:   File "/venv/lib/python3.11/site-packages/transformers/trainer.py", line 2325, in train\n'
            '[rank0]:     return inner_training_loop(\n'
            '[rank0]:   File "/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py", line 2243, in backward\n')
    (ev,) = [e for e in events_from_text(text) if e.kind == "exception"]
    assert ev.data["truncated"] and ev.rank == 0 and ev.data["phase"] == "backward"


def test_a_stack_printed_further_down_a_healthy_log_is_not_a_failure():
    text = "".join(f"step={s}, loss=2.{s}\n" for s in range(8)) + (
        '  File "/work/train.py", line 10, in <module>\n    main()\n'
        '  File "/work/train.py", line 7, in main\n    traceback.print_stack()\n') + "step=9, loss=2.9\n"
    assert not [e for e in events_from_text(text) if e.kind == "exception"]


def test_the_cuda_errors_advice_without_its_first_line_is_still_a_cuda_error():
    advice = ("CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below "
              "might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n")
    (ev,) = [e for e in events_from_text(advice) if e.kind == "exception"]
    assert "CUDA error" in ev.data["name"]
    whole = "RuntimeError: CUDA error: an illegal memory access was encountered\n" + advice
    (ev,) = [e for e in events_from_text(whole) if e.kind == "exception"]
    assert ev.data["name"] == "RuntimeError"


C10_FRAMES = ("frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x42 (0x1518a06137d2 in /venv/torch/lib/libc10.so)\n"
              "frame #1: c10d::ProcessGroupNCCL::WorkNCCL::finishedGPUExecutionInternal() const + 0x11a (0x15190c6c29ea in "
              "/venv/torch/lib/libtorch_cuda.so)\n"
              "frame #2: c10d::ProcessGroupNCCL::workCleanupLoop() + 0x145 (0x15190c6c6265 in /venv/torch/lib/libtorch_cuda.so)\n")


def test_a_c10_backtrace_without_its_head_is_an_error_thrown_where_frame_1_says():
    (ev,) = [e for e in events_from_text(C10_FRAMES) if e.kind == "exception"]
    assert ev.data["type"] == "c10::Error" and "finishedGPUExecutionInternal" in ev.data["message"]
    head = ("terminate called after throwing an instance of 'c10::Error'\n  what():  CUDA error: unknown error\n"
            "Exception raised from c10_cuda_check_implementation at ../c10/cuda/CUDAException.cpp:44 (most recent call first):\n")
    evs = [e for e in events_from_text(head + C10_FRAMES) if e.kind == "exception"]
    assert not any("its message is not in the log" in e.data["message"] for e in evs), [e.data for e in evs]


def test_glog_time_before_the_first_dated_line_gets_its_year(tmp_path):
    # torch's c10 glog head has no year; the input's first dated line (later in the file) gives it
    text = ("[E1205 10:00:00.000000 140245 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation timeout: "
            "WorkNCCL(SeqNum=4, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600021 milliseconds before timing out.\n"
            "[2026-12-05 10:00:05,000] [INFO] [logging.py:128:log_dist] [Rank 0] step=10, skipped=0, lr=[1e-05], mom=[(0.9, 0.95)]\n")
    evs = [e for e in events_from_text(text) if e.kind in ("collective_timeout", "lr")]
    assert [time.gmtime(e.time).tm_year for e in evs] == [2026, 2026]
    log = tmp_path / "rank1.log"
    log.write_text(text)
    from dsdoctor.sources.inputs import expand
    from dsdoctor.sources.logs import read_log
    evs = [e for inp in expand([str(log)]) for e in read_log(inp) if e.kind == "collective_timeout"]
    assert time.gmtime(evs[0].time).tm_year == 2026


def test_lightning_and_megatron_end_lines_are_run_ends():
    evs = events_from_text("`Trainer.fit` stopped: `max_epochs=2` reached.\n"
                           "[after training is done] datetime: 2026-12-05 12:00:00 \n"
                           "[exiting program after 1190.03 minutes] datetime: 2026-12-05 12:00:00 \n")
    assert [e.data["how"] for e in evs if e.kind == "run_end"] == ["lightning", "megatron", "megatron"]


def all_findings(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return d.finish()


def test_a_log_cut_off_mid_bar_gets_a_note_and_a_finished_one_does_not():
    findings = all_findings
    frames = "\n".join(f" 40%|████      | {n}/1000 [10:00<15:00,  1.50s/it]" for n in range(390, 401))
    cut = findings("{'loss': 1.9, 'grad_norm': 0.5, 'learning_rate': 2e-05, 'epoch': 0.4}\n" + frames + "\n")
    assert [(f.rule, f.severity) for f in cut] == [("log-ends-mid-run", "info")]
    done = findings(frames + "\n100%|██████████| 1000/1000 [25:00<00:00,  1.50s/it]\n")
    assert done == []
