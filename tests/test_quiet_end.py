"""Hangs that leave no error (detect/quiet_end.py): a person's word that the run hangs
(sources/formats/paste.py: hang_prose), torch's store barrier still waiting, and a JIT op's build
lock (torch/utils/cpp_extension.py: _jit_compile -> file_baton.py FileBaton.wait), the last one
provoked for real: a stale `lock` in TORCH_EXTENSIONS_DIR, DeepSpeed's init_distributed, Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text
from ports import free_port

DS = "[2026-01-01 10:0{m}:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step={s}, skipped=0, lr=[1e-05], mom=[(0.9, 0.999)]"
STEPS = "\n".join(DS.format(m=i, s=100 * i) for i in (1, 2, 3)) + "\n"
INIT = "[2026-01-01 10:00:03,456] [INFO] [comm.py:689:init_distributed] Initializing TorchBackend in DeepSpeed with backend nccl\n"


def _problems(text: str):
    return [f for f in diagnose(events_from_text(text)) if f.severity in ("critical", "error", "warning")]


@pytest.mark.parametrize("said", [
    "The training hangs at step 300, no error.",
    "it gets stuck after these lines",
    "Training is stuck forever here:",
    "nothing happens after step 300, GPU util stays at 100%",
    "the job does not proceed after this point",
    "训练卡住了，没有报错",
    "学習がここで止まってしまいます",
    "When I use zero3 with 8 GPUs, the training freezes after the first step",
    "All ranks are stuck in all_reduce after step 300",
])
def test_a_hang_said_in_the_paste_is_a_finding_that_quotes_it(said):
    found = _problems(said + "\n" + STEPS)
    assert found and found[0].rule == "hang-reported" and found[0].category == "comm_stall"
    assert found[0].evidence[0].text.strip() == said and "step=300" in found[0].evidence[1].text


@pytest.mark.parametrize("said", [
    "Could this warning cause a hang?",
    "It no longer hangs after setting NCCL_P2P_DISABLE=1.",
    "My loss is stuck at 2.3, is that normal?",
    "To avoid a deadlock, I set num_workers=0.",
    "I want to change the learning rate schedule.",
    "Detected kernel version 5.4.0, which is below the recommended minimum of 5.5.0; this can cause the process to hang.",
    "I am stuck with this error for two days, please help",
    "I froze the embedding layers and trained LoRA adapters only.",
    # the libraries' own sentences (torch DataLoader, tokenizers, DeepSpeed ZeRO checkpoints)
    "/usr/lib/python3/site-packages/torch/utils/data/dataloader.py:617: UserWarning: This DataLoader will create 16 "
    "worker processes in total. Please be aware that excessive worker creation might get DataLoader running slow or "
    "even freeze, lower the worker number to avoid potential slowness/freeze if necessary.",
    "huggingface/tokenizers: The current process just got forked, after parallelism has already been used. "
    "Disabling parallelism to avoid deadlocks...",
    "Found frozen_param_shapes: {'lm_head.weight': torch.Size([32000, 4096])}",
])
def test_words_about_hangs_that_report_none_are_no_finding(said):
    assert _problems(said + "\n" + STEPS) == []


def test_a_said_hang_gives_way_to_the_failure_the_log_shows():
    text = ("Training gets stuck at step 300:\n" + STEPS +
            "torch.distributed.DistBackendError: [Rank 1] Watchdog caught collective operation timeout: "
            "WorkNCCL(SeqNum=812, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600012 "
            "milliseconds before timing out.\n")
    assert [f.rule for f in _problems(text)][0] != "hang-reported"


def test_where_a_said_hang_stops_picks_the_advice():
    start = _problems("It hangs here, no error:\n" + INIT)[0]
    assert start.rule == "hang-reported-start-up" and "torch.distributed was set up" in start.title
    assert "NCCL_P2P_DISABLE=1" in str(start.fixes)
    lock = _problems("It hangs here, no error:\n" + INIT + "Using /root/.cache/torch_extensions/py310_cu121 as "
                     "PyTorch extensions root...\n")[0]
    assert lock.rule == "hang-reported-op-lock" and "lock" in str(lock.fixes)
    end = _problems("The process hung at the end, I had to kill it.\n" + STEPS + "{'train_runtime': 51.2, "
                    "'train_samples_per_second': 75.3, 'train_steps_per_second': 0.588, 'train_loss': 1.71, 'epoch': 1.0}\n")[0]
    assert end.rule == "hang-reported" and "after it finished training" in end.title


def test_a_model_load_bar_is_not_training_progress():
    # 'Loading checkpoint shards: 100%|...| 3/3' counts shards: the run never reached step 3
    f = _problems("nothing happens after this:\nLoading checkpoint shards: 100%|██████████| 3/3 [00:12<00:00,  4.10s/it]\n")[0]
    assert f.rule == "hang-reported-start-up" and "loading the model weights" in f.title


def test_the_store_barrier_names_how_many_ranks_never_joined():
    text = "".join(f"INFO:torch.distributed.distributed_c10d:Waiting in store based barrier to initialize process group "
                   f"for rank: {r}, key: store_based_barrier_key:1 (world_size=16, worker_count=8, timeout=0:30:00)\n"
                   for r in range(8))
    f = _problems(text)[0]
    assert f.rule == "store-barrier-waiting" and "8 of 16" in f.title
    done = text + ("INFO:torch.distributed.distributed_c10d:Rank 0: Completed store-based barrier for key:"
                   "store_based_barrier_key:1 with 16 nodes.\n" + STEPS)
    assert _problems(done) == []


CHILD = """
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1, file=open(sys.argv[1], "w"), all_threads=False)
import deepspeed
deepspeed.init_distributed(dist_backend="gloo")
"""


@pytest.mark.slow
def test_a_stale_op_build_lock_is_named_from_a_real_interrupted_run(tmp_path):
    """Every DeepSpeed op is JIT-built under TORCH_EXTENSIONS_DIR/<op>/ with a `lock` file; one left by a
    killed build makes every later run wait forever. Provoked for real, interrupted like a user would."""
    pytest.importorskip("deepspeed")
    ext = tmp_path / "ext"
    (ext / "deepspeed_shm_comm").mkdir(parents=True)
    (ext / "deepspeed_shm_comm" / "lock").touch()
    dump = tmp_path / "stack.txt"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TORCH_EXTENSIONS_DIR": str(ext), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(dump)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and p.poll() is None:      # until its stack waits in the baton
            time.sleep(1.0)
            p.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
            if "file_baton.py" in dump.read_text(errors="replace"):
                break
        assert p.poll() is None, "the run ended on its own"
        assert "file_baton.py" in dump.read_text(errors="replace"), "never reached the lock wait"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert "KeyboardInterrupt" in out and "file_baton.py" in out
    found = _problems(out)
    assert found[0].rule == "op-build-lock-stopped" and found[0].category == "environment", [f.rule for f in found]
    assert "TORCH_EXTENSIONS_DIR" in str(found[0].fixes)


@pytest.mark.parametrize("warn", [
    "node1:123:456 [0] misc/socket.cc:538 NCCL WARN Net : Connection closed by remote peer node2<56032>",
    "node1:123:456 [0] NCCL WARN Call to recv from 10.0.0.2<43311> failed : Connection reset by peer",
])
def test_a_log_that_ends_on_nccl_losing_a_peer_is_an_echo_finding(warn):
    f = _problems(STEPS + warn + "\n")[0]
    assert f.rule == "nccl-peer-lost" and f.category == "nccl_error" and f.evidence[0].text.endswith(warn.split("WARN ")[1])
    # after the run's own end the same warning is the teardown
    end = "{'train_runtime': 51.2, 'train_samples_per_second': 75.3, 'train_steps_per_second': 0.588, 'train_loss': 1.71, 'epoch': 1.0}\n"
    assert _problems(STEPS + end + warn + "\n") == []
    # training went on after it: not the end
    assert _problems(warn + "\n" + STEPS) == []


@pytest.mark.parametrize("line, rule", [
    # torch <= 1.4's THC wording (THCudaCheck 'cuda runtime error (%d) : %s at %s:%d')
    ("RuntimeError: cuda runtime error (2) : out of memory at /opt/conda/conda-bld/pytorch_1565272279342/work/aten/"
     "src/THC/THCCachingAllocator.cpp:510", "oom-unknown-phase"),
    ("RuntimeError: cuda runtime error (77) : an illegal memory access was encountered at /pytorch/aten/src/THC/"
     "THCCachingHostAllocator.cpp:265", "hw-illegal-access"),
])
def test_the_old_thc_wording_of_cuda_errors(line, rule):
    assert _problems(STEPS + line + "\n")[0].rule == rule
