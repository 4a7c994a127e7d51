"""Issue pastes in the wordings of the versions users run today (part AW): torch's CUDA initialization warning,
Triton's missing C compiler, accelerate's default config printed by `accelerate env`. Text in, events and
findings out."""
from __future__ import annotations

from tests.diagnose_text import events, top

DRIVER_OLD = (
    "/usr/local/lib/python3.12/dist-packages/torch/cuda/__init__.py:182: UserWarning: CUDA initialization: The NVIDIA "
    "driver on your system is too old (found version 12020). Please update your GPU driver by downloading and installing "
    "a new version from the URL: http://www.nvidia.com/Download/index.aspx Alternatively, go to: https://pytorch.org to "
    "install a PyTorch version that has been compiled with your version of the CUDA driver. (Triggered internally at "
    "/pytorch/c10/cuda/CUDAFunctions.cpp:109.)\n"
    "  return torch._C._cuda_getDeviceCount() > 0\n")


def test_cuda_init_warning_is_the_cause_of_the_no_gpu_error_after_it():
    text = DRIVER_OLD * 4 + "RuntimeError: Unable to proceed, no GPU resources available\n"
    (ev,) = events(text, "env_error")
    assert (ev.data["cause"], ev.data["driver_cuda"]) == ("driver_too_old", "12.2")
    assert ev.data["message"] == "The NVIDIA driver on your system is too old (found version 12020)"
    f = top(text)
    assert f.rule == "env-cuda-init-failed" and f.category == "environment"


def test_cuda_init_error_code_names_its_cause():
    text = ("UserWarning: CUDA initialization: Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions "
            "before calling NumCudaDevices() that might have already set an error? Error 802: system not yet initialized "
            "(Triggered internally at ../c10/cuda/CUDAFunctions.cpp:108.)\n")
    (ev,) = events(text, "env_error")
    assert (ev.data["cause"], ev.data["code"], ev.data["message"]) == ("fabric_manager", 802, "Error 802: system not yet initialized")


def test_triton_without_a_c_compiler_is_the_machine():
    text = ('  File "/usr/local/lib/python3.11/site-packages/triton/runtime/build.py", line 32, in _build\n'
            '    raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")\n'
            "torch._inductor.exc.InductorError: RuntimeError: Failed to find C compiler. Please specify via CC environment "
            "variable.\n")
    f = top(text)
    assert f.rule == "failure-compile-toolchain" and f.category == "environment"


def _watchdog(r: int) -> str:
    return (f"[rank{r}]:[E1015 06:12:31.46258521{r} ProcessGroupNCCL.cpp:632] [PG ID 0 PG GUID 0(default_pg) Rank {r}] "
            "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=41877, OpType=_ALLGATHER_BASE, "
            "NumelIn=262144000, NumelOut=262144000, Timeout(ms)=1800000) ran for 1800090 milliseconds before timing out.\n")


def test_a_paste_that_begins_before_the_timeouts_names_the_rank_that_never_reported():
    """Ranks 1-3 time out; the paste begins with rank 0's own timestamped lines, so it did not cut into the burst
    of timeouts: rank 0 is the rank they waited for (it was writing a checkpoint). A paste that begins with the
    timeouts themselves may have lost the lower ranks' lines (tests/test_formats_comm.py)."""
    head = ("Training hangs at the checkpoint save:\n\n```\n"
            "[2025-03-14 06:42:10,902] [INFO] [logging.py:128:log_dist] [Rank 0] [Torch] Checkpoint global_step2000 "
            "is about to be saved!\n")
    f = top(head + "".join(_watchdog(r) for r in range(1, 4)) + "```\n")
    assert f.rule == "comm-timeout-silent-rank" and f.waited_for == (0,)
    f = top("Training hangs at the checkpoint save:\n\n```\n" + "".join(_watchdog(r) for r in range(1, 4)) + "```\n")
    assert f.waited_for != (0,)


def test_a_long_oom_line_keeps_its_figures_and_drops_the_advice():
    """torch 2.4's OOM with the private-pools clause is ~560 characters: clipped in its middle, its evidence lost
    the allocated / unallocated figures; the allocator's standing advice at its end goes instead."""
    text = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 39.38 GiB "
            "of which 1.02 GiB is free. Including non-PyTorch memory, this process has 38.35 GiB memory in use. Of the "
            "allocated memory 36.11 GiB is allocated by PyTorch, with 21.40 GiB allocated in private pools (e.g., CUDA "
            "Graphs), and 1.28 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try "
            "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
            "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)\n")
    (ev,) = events(text, "oom")
    assert ev.text.endswith("1.28 GiB is reserved by PyTorch but unallocated.") and "private pools" in ev.text
