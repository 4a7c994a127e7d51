"""Where one category borders another, the top finding is the root cause: each case with a
twin on the other side of the boundary that must not move. Texts: the NVIDIA driver's Xid 79 report
(kernel-open/nvidia/nv.c), NCCL's CUDACHECK WARN, CPython's CalledProcessError, coreutils tail's
multi-file header, cuDNN's sub-library loader; fixtures/excerpts/gen_l_* are the whole runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from test_golden import analyze

SP = "/usr/local/lib/python3.10/dist-packages"


def top(tmp_path: Path, text: str, name: str = "train.log") -> dict | None:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    _, doc = analyze(p)
    problems = [f for f in doc["findings"] if f["severity"] != "info"]
    return problems[0] if problems else None


UNKNOWN = ("[rank2]:terminate called after throwing an instance of 'c10::DistBackendError'\n"
           "[rank2]:  what():  [PG ID 0 PG GUID 0(default_pg) Rank 2] Process group watchdog thread terminated "
           "with exception: CUDA error: unknown error\n")
XID79 = ("[1716523.123456] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
         "[1716523.123501] NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.\n")


def test_driver_xid_explains_the_cuda_error_it_causes(tmp_path):
    f = top(tmp_path, UNKNOWN + "$ dmesg | grep -i xid\n" + XID79)
    assert f["rule"] == "hw-fell-off-bus"
    # the driver's two lines of one event are one finding
    _, doc = analyze(tmp_path / "train.log")
    assert [x["rule"] for x in doc["findings"]].count("hw-fell-off-bus") == 1
    assert len(f["evidence"]) == 2


def test_cuda_unknown_error_alone_stays_its_own_finding(tmp_path):
    f = top(tmp_path, UNKNOWN)
    assert f["rule"] == "hw-cuda-unknown-error" and f["ranks"] == [2]


NCCL_CUDA = ("gpu-node-07:51003:51103 [3] include/alloc.h:114 NCCL WARN Cuda failure '{err}'\n"
             "[rank3]:torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/"
             "ProcessGroupNCCL.cpp:3356, unhandled cuda error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
             "[rank3]:ncclUnhandledCudaError: Call to CUDA function failed.\n")


@pytest.mark.parametrize("err, category", [("out of memory", "oom"), ("invalid argument", "nccl_error")])
def test_nccl_cuda_failure_out_of_memory_is_a_gpu_oom(tmp_path, err, category):
    assert top(tmp_path, NCCL_CUDA.format(err=err))["category"] == category


CPE = ("Traceback (most recent call last):\n"
       f'  File "{SP}/accelerate/commands/launch.py", line 763, in simple_launcher\n'
       "    raise subprocess.CalledProcessError(returncode=process.returncode, cmd=cmd)\n"
       "subprocess.CalledProcessError: Command '['/usr/bin/python3', 'train.py']' {end}\n")


@pytest.mark.parametrize("end, category", [("died with <Signals.SIGKILL: 9>.", "host_oom"),
                                           ("died with <Signals.SIGSEGV: 11>.", "other"),
                                           ("returned non-zero exit status 1.", "other")])
def test_called_process_error_signal(tmp_path, end, category):
    assert top(tmp_path, CPE.format(end=end))["category"] == category


def _tail(head: str) -> str:
    oom = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a total capacity of "
           "79.15 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.12 GiB memory in use. "
           "Of the allocated memory 74.31 GiB is allocated by PyTorch, and 2.87 GiB is reserved by PyTorch but unallocated.")
    return ("==> rank0.log <==\n[2026-12-05 10:00:09,012] [INFO] [logging.py:128:log_dist] [Rank 0] step=10, skipped=0, "
            "lr=[2e-05], mom=[(0.9, 0.999)]\n\n"
            f"{head}\nTraceback (most recent call last):\n  File \"/workspace/train.py\", line 187, in main\n"
            f"    model_engine.backward(loss)\n{oom}\n")


def test_tail_header_of_a_rank_file_gives_its_rank(tmp_path):
    assert top(tmp_path, _tail("==> rank3.log <=="))["ranks"] == [3]


def test_tail_header_of_a_worker_is_a_node_not_a_rank(tmp_path):
    assert 1 not in top(tmp_path, _tail("==> worker-1.log <=="))["ranks"]


def test_block_head_restores_the_rank_of_the_file_name(tmp_path):
    # a rank's own file holding a pasted host block: the host head gives back the file's rank
    text = _tail("==> gpu-node-02 <==").replace("==> rank0.log <==\n", "==> rank6.log <==\n")
    assert top(tmp_path, text, name="rank5.log")["ranks"] == [5]


def test_cudnn_missing_sub_library_is_the_environment(tmp_path):
    f = top(tmp_path, "Could not load library libcudnn_cnn_infer.so.8. Error: libcudnn_cnn_infer.so.8: cannot open "
                      "shared object file: No such file or directory\n"
                      "Please make sure libcudnn_cnn_infer.so.8 is in your library path!\nAborted (core dumped)\n")
    assert f["rule"] == "log-env-missing-library"


def test_tensorflow_dso_loader_warning_is_no_problem(tmp_path):
    assert top(tmp_path, "2026-12-05 10:00:01.123456: W tensorflow/stream_executor/platform/default/dso_loader.cc:64] "
                         "Could not load dynamic library 'libcudart.so.11.0'; dlerror: libcudart.so.11.0: cannot open "
                         "shared object file: No such file or directory\n"
                         "{'loss': 1.52, 'grad_norm': 0.61, 'learning_rate': 2e-05, 'epoch': 0.5}\n") is None
