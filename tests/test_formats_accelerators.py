"""Runs on other accelerators and platforms (generalisation part AF): the allocator messages of ROCm, Intel XPU,
Ascend NPU, Apple MPS and Gaudi read as the CUDA one is, torch_npu's HCCL watchdog and error code, ROCm's memory
access fault, and how Windows reports a native crash.

Fast: text in, built from the message templates cited in the recognisers (sources/formats/memory.py, nccl.py,
hardware.py, rank_head.py, launcher.py, exit_reports.py).
"""
from __future__ import annotations

import pytest

from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()


def events(text: str, kind: str):
    return [e for e in events_from_text(text) if e.kind == kind]


def top(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    found = [f for f in d.finish() if f.severity != "info"]
    return found[0] if found else None


@pytest.mark.parametrize("line, device, requested, total, free", [
    ("torch.OutOfMemoryError: HIP out of memory. Tried to allocate 3.91 GiB. GPU 1 has a total capacity of 63.98 GiB of "
     "which 2.12 GiB is free. Of the allocated memory 58.73 GiB is allocated by PyTorch, and 1.84 GiB is reserved by "
     "PyTorch but unallocated.", "hip", 3.91, 63.98, 2.12),
    ("RuntimeError: NPU out of memory. Tried to allocate 4.64 GiB (NPU 3; 60.97 GiB total capacity; 54.02 GiB already "
     "allocated; 54.02 GiB current active; 3.21 GiB free; 56.88 GiB reserved in total by PyTorch) If reserved memory is "
     ">> allocated memory try setting max_split_size_mb to avoid fragmentation.", "npu", 4.64, 60.97, 3.21),
    ("torch.OutOfMemoryError: XPU out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 47.98 GiB. "
     "Of the allocated memory 45.02 GiB is allocated by PyTorch, and 1.37 GiB is reserved by PyTorch but unallocated. "
     "Please use `empty_cache` to release all unoccupied cached memory.", "xpu", 1.50, 47.98, None),
    ("RuntimeError: MPS backend out of memory (MPS allocated: 17.66 GB, other allocations: 384.00 KB, max allowed: "
     "18.13 GB). Tried to allocate 500.00 MB on private pool. Use PYTORCH_MPS_HIGH_WATERMARK_RATIO=0.0 to disable upper "
     "limit for memory allocations (may cause system failure).", "mps", 500 / 1024, 18.13, None),
    ("RuntimeError: [Rank:4] FATAL ERROR :: MODULE:PT_DEVMEM Allocation failed for size::1073741824 (1024)MB",
     "hpu", 1.0, None, None),
])
def test_every_accelerators_oom_is_an_oom_with_its_sizes(line, device, requested, total, free):
    (ev,) = events(line, "oom")
    gib = lambda x: None if x is None else round(x / (1 << 30), 2)
    assert ev.data["device"] == device
    assert gib(ev.data["requested"]) == round(requested, 2)
    assert gib(ev.data.get("total")) == total
    assert gib(ev.data.get("free")) == free
    f = top(line)
    assert f.category == "oom" and not f.title.startswith("CUDA")


def test_the_npu_oom_names_its_npu_and_the_fragmentation_fix_its_variable():
    f = top("RuntimeError: NPU out of memory. Tried to allocate 20.00 MiB (NPU 2; 60.97 GiB total capacity; 40.02 GiB "
            "already allocated; 40.02 GiB current active; 1.00 MiB free; 58.88 GiB reserved in total by PyTorch)")
    assert "(NPU 2)" in f.title
    envs = {k for fx in f.fixes for k in (fx.env or {})}
    assert "PYTORCH_NPU_ALLOC_CONF" in envs and "PYTORCH_CUDA_ALLOC_CONF" not in envs


def test_a_cuda_oom_keeps_its_words():
    f = top("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.69 GiB total capacity; "
            "22.91 GiB already allocated; 11.06 MiB free; 23.03 GiB reserved in total by PyTorch)")
    assert f.title.startswith("CUDA out of memory") and "(GPU 0)" in f.title


def test_the_hccl_watchdog_timeout_is_read_with_its_fields_and_hccl_advice():
    text = ("[rank5]:[E1201 09:37:41.112233445 ProcessGroupHCCL.cpp:1633] [Rank 5] Watchdog caught collective operation "
            "timeout: WorkHCCL(SeqNum=1843, OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1800212 milliseconds before "
            "timing out.\n")
    (ev,) = events(text, "collective_timeout")
    assert (ev.data["backend"], ev.data["seq"], ev.data["op"], ev.data["timeout_ms"]) == ("hccl", 1843, "ALLREDUCE",
                                                                                          1800000)
    f = top(text)
    assert f.rule == "comm-timeout-hccl"
    envs = {k for fx in f.fixes for k in (fx.env or {})}
    assert envs and not any(k.startswith(("NCCL_", "TORCH_NCCL_")) for k in envs)


def test_torch_npus_error_code_line_names_the_rank_that_raised():
    text = ("Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n    f()\n"
            "RuntimeError: NPU out of memory. Tried to allocate 2.00 GiB (NPU 6; 60.97 GiB total capacity; 58.00 GiB "
            "already allocated; 58.00 GiB current active; 1.00 GiB free; 59.00 GiB reserved in total by PyTorch)\n"
            "[ERROR] 2024-11-08-16:05:17 (PID:3310761, Device:6, RankID:14) ERR00006 PTA memory error\n")
    (head,) = events(text, "rank_head")
    assert head.data["head_rank"] == 14 and head.data["gpu"] == 6
    assert 14 in top(text).ranks
    (before_init,) = events("[ERROR] 2024-11-08-16:05:17 (PID:1, Device:0, RankID:-1) ERR00100 PTA call acl api failed",
                            "rank_head")
    assert before_init.data["head_rank"] is None


def test_rocms_memory_access_fault_is_the_gpu_not_a_bare_sigabrt():
    text = ("Memory access fault by GPU node-4 (Agent handle: 0x55c6b7a0e2f0) on address 0x7f1b8c200000. Reason: Page "
            "not present or supervisor privilege.\n"
            "[2025-04-20 13:02:19,660] [ERROR] [launch.py:325:sigkill_handler] ['python', '-u', 'train.py', "
            "'--local_rank=2'] exits with return code = -6\n")
    (ev,) = events(text, "hardware")
    assert ev.data["error"] == "rocm_memory_fault" and ev.data["gpu_node"] == 4
    assert ev.data["reason"] == "Page not present or supervisor privilege"
    f = top(text)
    assert f.category == "hardware" and any("AMD_SERIALIZE_KERNEL" in (fx.env or {}) for fx in f.fixes)


@pytest.mark.parametrize("line", [
    "Process finished with exit code -1073741819 (0xC0000005)",
    "[2025-03-01 18:21:02,119] [ERROR] [launch.py:341:sigkill_handler] ['python.exe', '-u', 'train.py', "
    "'--local_rank=0'] exits with return code = 3221225477",
    "Windows fatal exception: access violation",
])
def test_a_windows_access_violation_is_a_native_crash(line):
    f = top("{'loss': 2.0412, 'grad_norm': 1.7703, 'learning_rate': 1.9e-05, 'epoch': 0.1}\n" + line + "\n")
    assert f.rule == "failure-crash-signal" and "access violation" in f.title


def test_a_windows_fatal_exception_the_run_survived_is_no_crash():
    loss = "{'loss': 2.0, 'grad_norm': 1.7, 'learning_rate': 1.9e-05, 'epoch': %s}\n"
    text = loss % 0.1 + "Windows fatal exception: access violation\n" + "".join(loss % (e / 10) for e in range(2, 6))
    assert top(text) is None


def test_other_exit_codes_of_an_ide_are_unchanged():
    (ev,) = events("Process finished with exit code 137 (interrupted by signal 9:SIGKILL)", "killed")
    assert ev.data["signal"] == 9
    assert not events("Process finished with exit code -1", "process_exit")
    assert not events("Process finished with exit code -1", "killed")
