"""Issue pastes in the wordings of older versions (part AT): torch 1.10-2.3, DeepSpeed 0.5-0.14, NCCL 2.10-2.21,
transformers 4.2x-4.4x, and the tools pasted beside them (nvidia-smi, py-spy). Texts from the templates of
/work/shared/log-formats.md and the installed sources each test cites."""
from __future__ import annotations

from diagnose_text import events, top

# torch 2.1-2.3's OOM (c10/cuda/CUDACachingAllocator.cpp, 1e of log-formats.md) raised in a container: NVML's
# pid of the failing process is not its getpid(), so it is listed as 'Process N has ...', not 'this process has'
_CONTAINER_OOM = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB. GPU 3 has a total "
                  "capacity of 79.15 GiB of which 1.12 GiB is free. Process 33120 has 78.02 GiB memory in use. Of the "
                  "allocated memory 74.40 GiB is allocated by PyTorch, and 2.73 GiB is reserved by PyTorch but "
                  "unallocated. If reserved but unallocated memory is large try setting "
                  "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
                  "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")


def test_an_oom_in_a_container_names_its_own_process_by_pid():
    ev = events(_CONTAINER_OOM + "\n", "oom")[0]
    assert ev.data["this_process"] > 0 and "other_process_bytes" not in ev.data
    assert top(_CONTAINER_OOM + "\n").rule != "oom-other-process"


def test_a_second_process_beside_the_own_one_is_still_another_process():
    text = _CONTAINER_OOM.replace("Process 33120 has 78.02 GiB memory in use.",
                                  "Process 33120 has 42.02 GiB memory in use. Process 9001 has 37.00 GiB memory in use."
                                  ).replace("74.40 GiB is allocated", "38.40 GiB is allocated")
    ev = events(text + "\n", "oom")[0]
    assert ev.data["other_processes"] == 1 and ev.data["this_process"] > ev.data["other_process_bytes"]
    assert top(text + "\n").rule == "oom-other-process"


def test_an_oom_whose_listed_processes_are_all_smaller_than_its_reserve_lists_others():
    text = _CONTAINER_OOM.replace("78.02 GiB memory in use", "12.00 GiB memory in use")
    assert events(text + "\n", "oom")[0].data["other_processes"] == 1


# py-spy dump of every process (src/dump.rs print_traces: 'Process {pid}: {cmdline}', 'Python v{ver} ({exe})',
# then each thread and its frames 'func (file.py:line)', innermost first)
_PYSPY = """Process 41001: python -u train.py --local_rank=0
Python v3.8.10 (/usr/bin/python3.8)

Thread 41001 (active): "MainThread"
    write (zipfile.py:1136)
    _write (torch/serialization.py:316)
    save (torch/serialization.py:380)
    _save_checkpoint (deepspeed/runtime/engine.py:2920)
    save_checkpoint (deepspeed/runtime/engine.py:2801)

Process 41002: python -u train.py --local_rank=1
Python v3.8.10 (/usr/bin/python3.8)

Thread 41002 (active): "MainThread"
    barrier (torch/distributed/distributed_c10d.py:2786)
    save_checkpoint (deepspeed/runtime/engine.py:2812)
"""


def test_a_pyspy_process_head_names_the_rank_of_its_threads():
    st = events(_PYSPY, "stack")
    assert [(e.rank, e.data["where"]) for e in st] == [(0, "checkpoint"), (1, "collective")]


def test_ranks_waiting_in_a_collective_for_one_in_torch_save_blame_the_save():
    f = top("The run freezes, no output for an hour. py-spy dumps:\n\n```\n" + _PYSPY + "```\n")
    assert f.rule == "comm-stall-checkpoint-io" and f.ranks == [0]
    assert "torch/serialization.py" in f.evidence[0].text


def test_a_lone_dump_in_torch_save_is_no_hang():
    # a dump taken while rank 0 saves, no rank waiting: nothing to blame
    f = top(_PYSPY.split("Process 41002")[0])
    assert f is None or f.rule != "comm-stall-checkpoint-io"


def test_nvidia_smi_that_cannot_reach_a_gpu_after_a_crash_names_the_gpu():
    text = ("After the crash (`RuntimeError: CUDA error: unspecified launch failure` on local rank 2) nvidia-smi prints:\n"
            "```\n$ nvidia-smi\nUnable to determine the device handle for GPU 0000:41:00.0: Unknown Error\n```\n")
    f = top(text)
    assert f.category == "hardware" and "Unable to determine the device handle" in f.evidence[0].text
    assert top(text.replace("Unknown Error", "GPU is lost.  Reboot the system to recover this GPU")).rule == f.rule


# megatron/core/timers.py _get_global_min_max_time_string, one report pasted into an issue
_MINMAX = """(min, max) time across ranks (ms):
    forward-backward ...............................: (4321.02, 8911.74)
    forward-compute ................................: (1401.33, 1412.09)
    backward-compute ...............................: (2890.41, 2911.88)
    batch-generator ................................: ({lo}, {hi})
    all-grads-sync .................................: (31.21, {sync})
    optimizer ......................................: (40.11, 41.32)
"""


def test_one_megatron_timer_report_with_a_rank_seconds_late_names_the_straggler():
    f = top(_MINMAX.format(lo=2.11, hi=4512.63, sync=4689.55))
    assert f.rule == "slow-rank-timer-spread" and "batch-generator" in f.evidence[0].text


def test_one_report_with_a_small_spread_is_still_noise():
    # 120 ms late in one report: a hiccup; three reports are needed for that (rank_spread MIN_REPORTS)
    assert top(_MINMAX.format(lo=0.04, hi=120.2, sync=151.0)) is None


def test_anomaly_modes_function_is_quoted_beside_the_first_nan_reading():
    # torch/csrc/autograd/python_anomaly_mode.cpp / engine.cpp validate_outputs (torch 1.10+ wording)
    f = top("step=299, loss=2.1021\nstep=300, loss=nan\nTraceback (most recent call last):\n"
            '  File "train.py", line 150, in <module>\n    engine.backward(loss)\n'
            "RuntimeError: Function 'LogSoftmaxBackward0' returned nan values in its 0th output.\n")
    assert f.category == "nan_loss" and f.evidence[0].text == "step=300, loss=nan"
    assert any("LogSoftmaxBackward0" in e.text for e in f.evidence)


def test_numpys_unable_to_allocate_is_host_memory():
    # numpy/_core/_exceptions.py _ArrayMemoryError.__str__ (numpy 1.17+; numpy.core in 1.x, numpy._core in 2.x)
    f = top("Traceback (most recent call last):\n  File \"prepare.py\", line 44, in <module>\n"
            "    arr = np.concatenate(chunks)\nnumpy.core._exceptions._ArrayMemoryError: Unable to allocate 93.1 GiB "
            "for an array with shape (24985661440,) and data type float32\n")
    assert f.category == "host_oom" and "Unable to allocate 93.1 GiB" in f.evidence[0].text
