#!/usr/bin/env python3
"""How fast is `dsdoctor analyze` next to what a user would type, on logs that look real?

    python benchmarks/log_throughput.py                    # 8x1G, 1x1G, 1x64M (3-5 min)
    python benchmarks/log_throughput.py 1x64M --rounds 5   # one quick set
    python benchmarks/log_throughput.py --scaling          # + size 1x256M and 64 files (1x,4x,16x; 1/8/64 files)
    python benchmarks/log_throughput.py 1x4G 1x16G         # big inputs (needs the disk space)
    python benchmarks/log_throughput.py 8x1G --against /tmp/base   # A/B: another checkout in the same rounds

Each set is FILESxSIZE: that many rank logs of one run, SIZE in all, written to a temporary
folder and deleted after its measurement (--keep keeps them). The content is what a DeepSpeed
job's console capture holds, every line drawn at random from seven healthy kinds, each in the
exact format the library prints:

  - `step=..., skipped=..., lr=[...], mom=[...]`     deepspeed/runtime/engine.py: DeepSpeedEngine._report_progress (log_dist)
  - `epoch=/micro_step=/global_step=, RunningAvgSamplesPerSec=...`
                                                     deepspeed/utils/timer.py: ThroughputTimer.stop (logger.info)
  - `time (ms) | fwd_microstep: ... | step_microstep: ...` and the global `fwd: ... | step: ...`
                                                     deepspeed/utils/timer.py: SynchronizedWallClockTimer.log (print_dist)
  - HF Trainer metric dicts, 5.x strings (`{'loss': '2.134', ...}`) or 4.x numbers, written with
    tqdm.write, which clears the bar first     transformers/trainer_callback.py: ProgressCallback.on_log
  - tqdm bars: 1-4 carriage-return redraws with no newline, so the next record is glued to
    the last frame                                   tqdm/std.py: tqdm.display / status_printer
  - Megatron iteration lines (core_v0.6+ layout)     megatron/training/training.py: training_log

At 93 % of each file the run's failure is written: an fp16 loss-scale collapse on rank 0
(OVERFLOW lines from 65536 down to the minimum, then DeepSpeed's 'Current loss scale already
at minimum' exception), a CUDA OOM in backward on rank 3, NCCL watchdog timeouts on the others;
healthy lines go on after it (the tail of a log is not where the story is). A single file holds
all ranks' stories with torchrun's `[rankN]:` prefixes.

Measured side by side, in rounds (page cache warmed first; the order of the commands rotates
from round to round, so a burst of load from other jobs does not always hit the same one):
  - `cat FILES > /dev/null` (the floor: reading the bytes),
  - `LC_ALL=C grep -E -c` with a short error pattern of 14 alternatives (what a user types),
  - `dsdoctor analyze --json FILES`.
Per round: the ratio dsdoctor/grep in wall time and in CPU time (user+sys of the child, from
wait4(): other jobs on the machine inflate wall time, much less CPU time). Printed: median and
min-max over the rounds, throughput, dsdoctor's peak RSS, its fixed start-up cost (the same
command on a 10-line log: ~0.15 s of imports, the cached rules and Hyperscan databases, which
is a third of a 64 MB run) and whether the buried stories were found. dsdoctor runs as installed
(its .pyc files cached, even where PYTHONDONTWRITEBYTECODE is set); the one measured is the one
PYTHONPATH names, else this script's checkout, whatever the working directory (printed first).
`--floor RUNS` prints instead what no Python process can avoid at each set's size (interpreter,
imports, reading, counting lines, the Hyperscan scan alone) beside grep and analyze.

Goals (issue 13): ratio <= 2.0 at 1 GB and at 64 MB, peak RSS < 300 MB whatever the size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATIO_GOAL = 2.0
RSS_GOAL_MB = 300
FAIL_AT = 0.93
OOM_RANK = 3
# What a user greps a crashed run's logs for: 14 alternatives.
GREP_PATTERN = ("Traceback|Error|error:|OVERFLOW|out of memory|Watchdog|timed out|Timeout|Exception|"
                "FAILED|Killed|SIGABRT|NCCL WARN|nan")
DEFAULT_SETS = ("8x1G", "1x1G", "1x64M")
SCALING_SETS = ("1x256M", "64x1G")


# ---------------------------------------------------------------- log generation
def _size(s: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {s!r} (e.g. 200M, 1G)")
    return int(float(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_"))


def _set(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(.+)", s.strip())
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"not a set: {s!r} (FILESxSIZE, e.g. 8x1G)")
    return int(m.group(1)), _size(m.group(2))


def _nccl_init(rank: int, world: int, host: str, pid: int) -> list[str]:
    """NCCL_DEBUG=INFO lines a rank prints while its communicator comes up (NCCL 2.2x)."""
    p = f"{host}:{pid}:{pid} [{rank % 8}] NCCL INFO "
    lines = [p + "Bootstrap : Using eth0:10.0.0.%d<0>" % (rank // 8 + 1),
             p + "NET/Plugin : No plugin found (libnccl-net.so), using internal implementation",
             p + "cudaDriverVersion 12040",
             p + "NCCL version 2.21.5+cuda12.4" if rank == 0 else p + "NCCL_SOCKET_IFNAME set by environment to eth0",
             p + "NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.0.0.1<0>",
             p + "Using non-device net plugin version 0",
             p + "Using network IB",
             p + f"comm 0x55d1c8a0 rank {rank} nranks {world} cudaDev {rank % 8} nvmlDev {rank % 8} busId {rank:x}000 commId 0x9e3b - Init START",
             p + "Setting affinity for GPU %d to ffff,ffffffff" % (rank % 8),
             p + "NVLS multicast support is not available on dev %d" % (rank % 8)]
    for ch in range(24):
        peer = (rank + 1) % world
        lines.append(p + f"Channel {ch:02d}/24 :    {rank}[{rank % 8}] -> {peer}[{peer % 8}] via P2P/CUMEM/read")
    lines += [p + "Connected all rings", p + "Connected all trees",
              p + "threadThresholds 8/8/64 | 64/8/64 | 512 | 512",
              p + "24 coll channels, 24 collnet channels, 0 nvls channels, 32 p2p channels, 32 p2p channels per peer",
              p + "TUNER/Plugin: Plugin load returned 11 : libnccl-tuner.so: cannot open shared object file",
              p + f"ncclCommInitRank comm 0x55d1c8a0 rank {rank} nranks {world} cudaDev {rank % 8} nvmlDev {rank % 8} busId {rank:x}000 commId 0x9e3b - Init COMPLETE"]
    return lines


def _preamble(rank: int, world: int, ts: str) -> list[str]:
    out = [f"[{ts}] [INFO] [real_accelerator.py:260:get_accelerator] Setting ds_accelerator to cuda (auto detect)",
           f"[{ts}] [INFO] [comm.py:658:init_distributed] cdb=None",
           f"[{ts}] [INFO] [comm.py:689:init_distributed] Initializing TorchBackend in DeepSpeed with backend nccl"]
    if rank == 0:
        out += [f"[{ts}] [INFO] [logging.py:123:log_dist] [Rank 0] DeepSpeed info: version=0.19.8, git-hash=unknown, git-branch=unknown",
                f"[{ts}] [INFO] [config.py:735:__init__] Config mesh_device None world_size = {world}",
                f"[{ts}] [INFO] [logging.py:123:log_dist] [Rank 0] Creating torch.float16 ZeRO stage 2 optimizer",
                f"[{ts}] [INFO] [stage_1_and_2.py:151:__init__] Reduce bucket size 500000000",
                f"[{ts}] [INFO] [stage_1_and_2.py:152:__init__] Allgather bucket size 500000000",
                f"[{ts}] [INFO] [logging.py:123:log_dist] [Rank 0] DeepSpeed Final Optimizer = DeepSpeedZeroOptimizer",
                f"[{ts}] [INFO] [config.py:1003:print] DeepSpeedEngine configuration:",
                f"[{ts}] [INFO] [config.py:1007:print]   train_batch_size ............. 256",
                f"[{ts}] [INFO] [config.py:1007:print]   train_micro_batch_size_per_gpu  4",
                f"[{ts}] [INFO] [config.py:1007:print]   gradient_accumulation_steps .. {256 // 4 // world}",
                f"[{ts}] [INFO] [config.py:1007:print]   wall_clock_breakdown ......... True",
                f"[{ts}] [INFO] [logging.py:123:log_dist] [Rank 0] step=0, skipped=0, lr=[0.0003], mom=[(0.9, 0.95)]"]
    return out


# The seven healthy kinds and how often each is drawn (a run prints them all the time).
KINDS = ("ds_step", "ds_throughput", "ds_timers_micro", "ds_timers_global", "hf_metrics", "tqdm", "megatron")
WEIGHTS = (3, 3, 3, 3, 2, 3, 3)
TRAIN_ITERS = 500000
DS_PY = "/usr/local/lib/python3.11/site-packages/deepspeed"


def _pools(rnd: random.Random) -> dict[str, list[str]]:
    """Pre-drawn values (generation must be fast), formatted as each library formats them."""
    def pool(lo: float, hi: float, fmt) -> list[str]:
        return [fmt(rnd.uniform(lo, hi)) for _ in range(997)]
    ms = lambda x: f"{x:.2f}"                    # noqa: E731  SynchronizedWallClockTimer.log
    return {"fwd": pool(110, 118, ms), "bwd": pool(230, 245, ms), "bwdi": pool(200, 210, ms),
            "bwda": pool(28, 36, ms), "stp": pool(40, 44, ms),
            "cur": pool(88, 92, repr), "ravg": pool(89.5, 90.5, repr),    # ThroughputTimer: str(float)
            "lr": pool(2.9e-4, 3.0e-4, repr),                              # log_dist(f"lr={lr}"): a list of floats
            "hf_loss4": pool(2.1, 2.4, lambda x: repr(round(x, 4))),       # 4.x: round(loss, 4)
            "hf_gn4": pool(0.2, 0.4, repr),
            "hf_loss5": pool(2.1, 2.4, lambda x: repr(f"{x:.4g}")),        # 5.x: f"{v:.4g}" strings
            "hf_gn5": pool(0.2, 0.4, lambda x: repr(f"{x:.4g}")),
            "mg_it": pool(2830, 2890, lambda x: f"{x:.1f}"), "mg_tf": pool(148, 151, lambda x: f"{x:.1f}"),
            "mg_lr": pool(2.9e-4, 3.0e-4, lambda x: f"{x:.6E}"), "mg_loss": pool(2.1, 2.4, lambda x: f"{x:.6E}"),
            "mg_gn": pool(0.2, 0.4, lambda x: f"{x:.3f}"), "rate": pool(1.2, 1.4, lambda x: f"{x:5.2f}")}


class Healthy:
    """Healthy lines of one rank's console, drawn at random from KINDS; keeps the step, the
    running skipped total, the tqdm counter and the clock."""

    def __init__(self, rnd: random.Random, hf5: bool):
        self.rnd, self.hf5 = rnd, hf5
        self.p = _pools(rnd)
        self.step = self.skipped = self.bar = self.i = 0
        self.t0 = 1773478800.0                  # 2026-03-14 09:00:00 UTC
        self.last_frame = ""
        self.ts = ""
        self._tick()

    def _tick(self) -> None:
        t = self.t0 + 2.86 * self.step
        self.ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f",{int(t * 1000) % 1000:03d}"

    def _frames(self, k: int) -> str:
        """tqdm redraws: '\\r' + the bar, no newline (tqdm/std.py: tqdm.status_printer)."""
        out = []
        for _ in range(k):
            self.bar += 1
            n, total = self.bar, TRAIN_ITERS
            pct = n * 100 / total
            full = int(pct / 10)
            bar = "█" * full + (" ▏▎▍▌▋▊▉"[int(pct % 10 * 8 / 10)] if full < 10 else "")
            el, rem = int(n / 1.31), int((total - n) / 1.31)
            self.last_frame = (f"\r{pct:3.0f}%|{bar:<10}| {n}/{total} [{el // 3600}:{el // 60 % 60:02d}:{el % 60:02d}"
                               f"<{rem // 3600}:{rem // 60 % 60:02d}:{rem % 60:02d}, {self.p['rate'][n % 997]}it/s]")
            out.append(self.last_frame)
        return "".join(out)

    def step_line(self) -> str:
        self.step += 1
        self._tick()
        return (f"[{self.ts}] [INFO] [logging.py:123:log_dist] [Rank 0] step={self.step}, skipped={self.skipped}, "
                f"lr=[{self.p['lr'][self.step % 997]}], mom=[(0.9, 0.999)]\n")

    def lines(self, kinds: list[int]) -> str:
        p, out, s = self.p, [], self.step
        for k in kinds:
            self.i += 1
            i = self.i % 997
            if k == 0:
                out.append(self.step_line())
                s = self.step
            elif k == 1:
                out.append(f"[{self.ts}] [INFO] [timer.py:264:stop] epoch=0/micro_step={s * 8}/global_step={s}, "
                           f"RunningAvgSamplesPerSec={p['ravg'][i]}, CurrSamplesPerSec={p['cur'][i]}, "
                           f"MemAllocated=31.42GB, MaxMemAllocated=58.9GB\n")
            elif k == 2:
                out.append(f"[Rank 0] time (ms) | fwd_microstep: {p['fwd'][i]} | bwd_microstep: {p['bwd'][i]} | "
                           f"bwd_inner_microstep: {p['bwdi'][i]} | bwd_allreduce_microstep: {p['bwda'][i]} | "
                           f"step_microstep: {p['stp'][i]}\n")
            elif k == 3:
                out.append(f"[Rank 0] time (ms) | fwd: {p['fwd'][i]} | bwd: {p['bwd'][i]} | bwd_inner: {p['bwdi'][i]} | "
                           f"bwd_allreduce: {p['bwda'][i]} | step: {p['stp'][i]}\n")
            elif k == 4:
                # tqdm.write: clear the bar ('\r' + blanks + '\r'), the message, redraw the bar
                v = "5" if self.hf5 else "4"
                lr = repr(f"{float(p['lr'][i]):.4g}") if self.hf5 else p["lr"][i]
                ep = repr(f"{s / 40000:.4g}") if self.hf5 else repr(round(s / 40000, 2))
                clear = "\r" + " " * len(self.last_frame) + "\r" if self.last_frame else ""
                out.append(f"{clear}{{'loss': {p['hf_loss' + v][i]}, 'grad_norm': {p['hf_gn' + v][i]}, "
                           f"'learning_rate': {lr}, 'epoch': {ep}}}\n{self.last_frame}")
            elif k == 5:
                out.append(self._frames(1 + i % 4))
            else:
                out.append(f" [{self.ts[:19]}] iteration {s:8d}/{TRAIN_ITERS:8d} | consumed samples: {s * 256:12d} | "
                           f"elapsed time per iteration (ms): {p['mg_it'][i]} | throughput per GPU (TFLOP/s/GPU): "
                           f"{p['mg_tf'][i]} | learning rate: {p['mg_lr'][i]} | global batch size:   256 | "
                           f"lm loss: {p['mg_loss'][i]} | loss scale: 65536.0 | grad norm: {p['mg_gn'][i]} | "
                           f"number of skipped iterations:   0 | number of nan iterations:   0 |\n")
        return "".join(out)


def _collapse(h: Healthy, pre: str) -> str:
    """fp16 loss-scale collapse: an overflow on every step from 65536 down to the minimum (1),
    then DeepSpeed raises (deepspeed/runtime/fp16/loss_scaler.py: DynamicLossScaler.update_scale)."""
    out = []
    scale = 65536
    while scale > 1:
        out.append(f"[{h.ts}] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. "
                   f"Attempted loss scale: {scale}, reducing to {scale // 2}\n")
        scale //= 2
        h.skipped += 1
        out.append(h.step_line())
        out.append(h.lines(h.rnd.choices(range(1, 7), WEIGHTS[1:], k=3)))
    tb = ["Traceback (most recent call last):",
          '  File "/workspace/train.py", line 201, in <module>',
          "    engine.step()",
          f'  File "{DS_PY}/runtime/engine.py", line 3615, in step',
          "    self._take_model_step(lr_kwargs)",
          f'  File "{DS_PY}/runtime/engine.py", line 3516, in _take_model_step',
          "    self.optimizer.step()",
          f'  File "{DS_PY}/runtime/zero/stage_1_and_2.py", line 3047, in step',
          "    self._update_scale(self.overflow)",
          f'  File "{DS_PY}/runtime/zero/stage_1_and_2.py", line 3291, in _update_scale',
          "    self.loss_scaler.update_scale(has_overflow)",
          f'  File "{DS_PY}/runtime/fp16/loss_scaler.py", line 258, in update_scale',
          "    raise Exception(",
          "Exception: Current loss scale already at minimum - cannot decrease scale anymore. Exiting run."]
    return "".join(out) + "".join(f"{pre}{ln}\n" for ln in tb)


def _story(rank: int, world: int, h: Healthy, prefix: bool) -> str:
    pre = f"[rank{rank}]:" if prefix else ""
    fail_ts = h.ts[:19]
    timeout_ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h.t0 + 2.86 * h.step + 600))
    if rank == 0:
        return _collapse(h, pre)
    text = _failure(rank, world, OOM_RANK, fail_ts, timeout_ts, h.step * 2 + 17)
    return text if prefix else text.replace(f"[rank{rank}]:", "")


def generate(folder: Path, total_bytes: int, files: int, seed: int = 0) -> list[Path]:
    """`files` rank logs of one run, `total_bytes` in all. One file: the whole job's console
    (every rank's story, `[rankN]:` prefixed); several: one rank each, 8 ranks at least."""
    world = max(files, 8)
    paths = []
    per_file = total_bytes // files
    for r in range(files):
        rnd = random.Random(seed * 1000 + r)
        h = Healthy(rnd, hf5=r % 2 == 0)
        p = folder / f"rank{r}.log"
        paths.append(p)
        ts0 = h.ts
        head = _preamble(r, world, ts0) + _nccl_init(r, world, f"node-a{r // 8 + 1}", 2100 + r)
        stories = list(range(world)) if files == 1 else [r]
        with open(p, "w", encoding="utf-8", buffering=1 << 20) as fh:
            written = fh.write("\n".join(head) + "\n")
            fail_at = int(per_file * FAIL_AT)
            failed = False
            while written < per_file:
                if not failed and written >= fail_at:
                    for rank in stories:
                        written += fh.write(_story(rank, world, h, prefix=files == 1))
                    failed = True
                    continue
                chunk = h.lines(rnd.choices(range(len(KINDS)), WEIGHTS, k=2048))
                written += len(chunk.encode()) if not chunk.isascii() else len(chunk)
                fh.write(chunk)
            if not failed:        # a small set whose last chunk jumped past FAIL_AT: the story still ends it
                for rank in stories:
                    fh.write(_story(rank, world, h, prefix=files == 1))
    return paths


def _failure(rank: int, world: int, bad: int, ts_fail: str, ts_timeout: str, seq: int) -> str:
    """The story: `bad` runs out of GPU memory in backward; the others wait in the gradient
    all-reduce until the NCCL watchdog fires (10 minutes later), then torchrun tears down."""
    pre = f"[rank{rank}]:"
    if rank == bad:
        lines = [
            "Traceback (most recent call last):",
            '  File "/workspace/train.py", line 231, in <module>',
            "    main()",
            '  File "/workspace/train.py", line 198, in main',
            "    engine.backward(loss)",
            '  File "/usr/local/lib/python3.11/site-packages/deepspeed/utils/nvtx.py", line 20, in wrapped_fn',
            "    ret_val = func(*args, **kwargs)",
            '  File "/usr/local/lib/python3.11/site-packages/deepspeed/runtime/engine.py", line 2466, in backward',
            "    self.optimizer.backward(loss, retain_graph=retain_graph)",
            '  File "/usr/local/lib/python3.11/site-packages/torch/_tensor.py", line 648, in backward',
            "    torch.autograd.backward(",
            '  File "/usr/local/lib/python3.11/site-packages/torch/autograd/graph.py", line 829, in _engine_run_backward',
            "    return Variable._execution_engine.run_backward(  # Calls into the C++ engine to run the backward pass",
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.82 GiB. GPU 3 has a total capacity of 79.15 GiB "
            "of which 2.19 GiB is free. Including non-PyTorch memory, this process has 76.95 GiB memory in use. Of the "
            "allocated memory 71.20 GiB is allocated by PyTorch, and 4.61 GiB is reserved by PyTorch but unallocated. If "
            "reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
            "fragmentation.  See documentation for Memory Management  "
            "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)",
        ]
        return "".join(f"{pre}{ln}\n" for ln in lines)
    e = f"[E{ts_timeout[5:7]}{ts_timeout[8:10]} {ts_timeout[11:19]}.{412000 + rank:09d} ProcessGroupNCCL.cpp:632] "
    pg = f"[PG ID 0 PG GUID 0(default_pg) Rank {rank}] "
    work = (f"WorkNCCL(SeqNum={seq}, OpType=ALLREDUCE, NumelIn=262144000, NumelOut=262144000, "
            f"Timeout(ms)=600000)")
    lines = [
        f"{e}{pg}Watchdog caught collective operation timeout: {work} ran for 600071 milliseconds before timing out.",
        f"{e}{pg} failure detected by watchdog at work sequence id: {seq} PG status: last enqueued work: {seq}, "
        f"last completed work: {seq - 1}",
        f"{e}{pg}Timeout at NCCL work: {seq}, last enqueued NCCL work: {seq}, last completed NCCL work: {seq - 1}.",
        f"{e}{pg}Some NCCL operations have failed or timed out. Due to the asynchronous nature of CUDA kernels, "
        "subsequent GPU operations might run on corrupted/incomplete data.",
        f"{e}{pg}To avoid data inconsistency, we are taking the entire process down.",
        f"{e}{pg}Process group watchdog thread terminated with exception: {pg}Watchdog caught collective operation "
        f"timeout: {work} ran for 600071 milliseconds before timing out.",
        "terminate called after throwing an instance of 'c10::DistBackendError'",
        f"  what():  {pg}Process group watchdog thread terminated with exception: {pg}Watchdog caught collective "
        f"operation timeout: {work} ran for 600071 milliseconds before timing out.",
    ]
    out = "".join(f"{pre}{ln}\n" for ln in lines)
    if rank == 0:      # torchrun's summary lands in the console capture of the first rank
        t = ts_timeout.replace(",", "_")
        out += (f"W{ts_timeout[5:7]}{ts_timeout[8:10]} {ts_timeout[11:19]}.000000 1234 torch/distributed/elastic/multiprocessing/api.py:908] "
                "Sending process 2101 closing signal SIGTERM\n"
                f"E{ts_timeout[5:7]}{ts_timeout[8:10]} {ts_timeout[11:19]}.000000 1234 torch/distributed/elastic/multiprocessing/api.py:882] "
                f"failed (exitcode: -6) local_rank: 0 (pid: 2100) of binary: /usr/bin/python3\n"
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
                "============================================================\n"
                "train.py FAILED\n"
                "------------------------------------------------------------\n"
                "Failures:\n  <NO_OTHER_FAILURES>\n"
                "------------------------------------------------------------\n"
                "Root Cause (first observed failure):\n"
                "[0]:\n"
                f"  time      : {t}\n  host      : node-a1\n  rank      : 0 (local_rank: 0)\n"
                "  exitcode  : -6 (pid: 2100)\n  error_file: <N/A>\n"
                "  traceback : Signal 6 (SIGABRT) received by PID 2100\n"
                "============================================================\n")
    return out


# ---------------------------------------------------------------- measuring
class _Popen(subprocess.Popen):
    """Popen that reaps its child with wait4() so the child's own rusage is kept."""
    rusage = None

    def _try_wait(self, wait_flags):
        try:
            pid, sts, ru = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            return (self.pid, 0)
        if pid == self.pid:
            self.rusage = ru
        return (pid, sts)


# The commands run in the logs' folder: `python -m dsdoctor` puts its working directory first on
# sys.path, so started from another checkout it would measure that one whatever PYTHONPATH says.
# Measured: the dsdoctor PYTHONPATH names, else this script's checkout (main() prints which).
_CHILD_CWD: str | None = None


def timed(cmd: list[str], env: dict[str, str] | None = None, stdout=subprocess.PIPE) -> dict:
    """Wall seconds, CPU seconds (user+sys), peak RSS bytes, stdout, exit code, stderr of one run."""
    t = time.perf_counter()
    p = _Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=_CHILD_CWD)
    out, err = p.communicate()
    wall = time.perf_counter() - t
    ru = p.rusage
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime if ru else 0.0,
            "rss": ru.ru_maxrss * 1024 if ru else 0, "out": out, "code": p.returncode, "err": err}


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def _findings(doc: dict | None, files: int) -> str:
    """Which of the buried stories came out, and the top findings."""
    found = (doc or {}).get("findings") or []
    want = {"oom": OOM_RANK, "loss_scale_collapse": 0}
    got = {c: any(f["category"] == c and r in f["ranks"] for f in found) for c, r in want.items()}
    timeouts = any("timeout" in f["category"] or "timeout" in f["rule"] or f["category"] in ("hang", "comm")
                   for f in found)
    top = "; ".join(f"{f['rule']} ranks {f['ranks'][:4]}{'…' if len(f['ranks']) > 4 else ''}" for f in found[:4])
    ok = all(got.values()) and timeouts
    return (f"{'found' if ok else 'MISSED some'}: OOM rank {OOM_RANK} {'yes' if got['oom'] else 'NO'}, fp16 "
            f"collapse rank 0 {'yes' if got['loss_scale_collapse'] else 'NO'}, watchdog timeouts "
            f"{'yes' if timeouts else 'NO'} | top: {top}")


def measure(paths: list[Path], rounds: int, startup: dict, against: Path | None = None) -> dict:
    env_c = dict(os.environ, LC_ALL="C")
    env_ds = _installed_env()
    env_base = dict(env_ds, PYTHONPATH=str(against)) if against else None
    files = [str(p) for p in paths]
    cmds = {"cat": ["cat", *files],
            "grep": ["grep", "-E", "-c", GREP_PATTERN, *files],
            "dsdoctor": [sys.executable, "-m", "dsdoctor", "analyze", "--json", *files]}
    if against:                        # another checkout's dsdoctor in the same rounds (A/B)
        cmds["baseline"] = cmds["dsdoctor"]
    envs = {"grep": env_c, "baseline": env_base}
    runs: dict[str, list[dict]] = {k: [] for k in cmds}
    order = list(cmds)
    doc = None
    outs: dict[str, set[bytes]] = {"dsdoctor": set(), "baseline": set()}
    timed(cmds["cat"], stdout=subprocess.DEVNULL)          # warm the page cache
    # and the on-disk cache of the Hyperscan databases this content needs (compiled once per
    # machine and set of steady literals, ~0.1 s, sources/scanner.py: Matcher.fast_hits)
    for env in (env_ds, env_base) if against else (env_ds,):
        timed([sys.executable, "-m", "dsdoctor", "analyze", "--json", files[0]], env)
    for r in range(rounds):
        k = r % len(order)
        for name in order[k:] + order[:k]:
            res = timed(cmds[name], envs.get(name, env_ds),
                        stdout=subprocess.DEVNULL if name == "cat" else subprocess.PIPE)
            if name != "cat" and res["code"] not in (0, 1):
                raise SystemExit(f"{name} failed ({res['code']}): {res['err'].decode(errors='replace')[-1000:]}")
            if name == "dsdoctor":
                doc = json.loads(res["out"])
            if name in outs:
                outs[name].add(res["out"])
            runs[name].append(res)
    total = sum(p.stat().st_size for p in paths)
    mib = total / 2 ** 20
    g, d, c = runs["grep"], runs["dsdoctor"], runs["cat"]
    wall = [x["wall"] / y["wall"] for x, y in zip(d, g)]
    cpu = [x["cpu"] / max(y["cpu"], 1e-3) for x, y in zip(d, g)]
    med = lambda rs, k: statistics.median(x[k] for x in rs)   # noqa: E731
    rss = max(x["rss"] for x in d)
    print(f"  cat > /dev/null   wall {med(c, 'wall'):6.2f} s  cpu {med(c, 'cpu'):6.2f} s  {mib / med(c, 'wall'):6.0f} MiB/s")
    print(f"  grep -E -c (14)   wall {med(g, 'wall'):6.2f} s  cpu {med(g, 'cpu'):6.2f} s  {mib / med(g, 'wall'):6.0f} MiB/s")
    print(f"  dsdoctor analyze  wall {med(d, 'wall'):6.2f} s  cpu {med(d, 'cpu'):6.2f} s  {mib / med(d, 'wall'):6.0f} MiB/s"
          f"  (of which start-up ~{startup['wall']:.2f} s wall, {startup['cpu']:.2f} s cpu)")
    w, c = statistics.median(wall), statistics.median(cpu)
    verdict = lambda x: "OK" if x <= RATIO_GOAL else "OVER"      # noqa: E731
    print(f"  ratio dsdoctor/grep: wall {_spread(wall)}  cpu {_spread(cpu)}  (median [min-max] of {rounds} rounds; "
          f"goal <= {RATIO_GOAL}: cpu {verdict(c)}, wall {verdict(w)})")
    print(f"  dsdoctor peak RSS {rss / 2 ** 20:.0f} MB (goal < {RSS_GOAL_MB} MB: {'OK' if rss < RSS_GOAL_MB * 2 ** 20 else 'OVER'})")
    if against:
        b = runs["baseline"]
        bcpu = [x["cpu"] / max(y["cpu"], 1e-3) for x, y in zip(b, g)]
        paired = [x["cpu"] - y["cpu"] for x, y in zip(d, b)]
        same = len(outs["dsdoctor"]) == 1 and outs["dsdoctor"] == outs["baseline"]
        print(f"  baseline ({against}) cpu {med(b, 'cpu'):6.2f} s, ratio to grep cpu {_spread(bcpu)}; this "
              f"checkout minus baseline, paired per round: {statistics.median(paired) * 1000:+.0f} ms cpu; "
              f"--json output {'byte-identical' if same else 'DIFFERENT'}")
    print(f"  {_findings(doc, len(paths))}")
    return {"ratio_wall": w, "ratio_cpu": statistics.median(cpu), "rss": rss}


def _installed_env() -> dict[str, str]:
    """dsdoctor's environment as after `pip install`: compiled modules (.pyc) cached. With
    PYTHONDONTWRITEBYTECODE set (as on the development machines) every run would compile
    ~40 modules again, ~0.1 s that no installed copy pays."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # the dsdoctor of this checkout, unless PYTHONPATH names another (the children run elsewhere)
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    return env


def startup_cost(folder: Path, against: Path | None = None) -> dict:
    """dsdoctor's fixed cost: the same command on a 10-line log (imports, rules, matcher). With
    `against`, that checkout's too, alternately (20 runs each after a warm-up)."""
    p = folder / "tiny.log"
    p.write_text("".join(Healthy(random.Random(1), True).lines([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])))
    cmd = [sys.executable, "-m", "dsdoctor", "analyze", "--json", str(p)]
    env = _installed_env()
    if against is None:
        runs = [timed(cmd, env) for _ in range(4)][1:]
        p.unlink()
        return {"wall": statistics.median(r["wall"] for r in runs), "cpu": statistics.median(r["cpu"] for r in runs)}
    env_b = dict(env, PYTHONPATH=str(against))
    timed(cmd, env), timed(cmd, env_b)
    a, b, wall = [], [], []
    for i in range(20):
        for e, out in ((env, a), (env_b, b)) if i % 2 == 0 else ((env_b, b), (env, a)):
            res = timed(cmd, e)
            out.append(res["cpu"])
            if out is a:
                wall.append(res["wall"])
    p.unlink()
    print(f"start-up, CPU median of 20 alternating runs: this checkout {statistics.median(a) * 1000:.0f} ms, "
          f"baseline {statistics.median(b) * 1000:.0f} ms (paired {statistics.median(x - y for x, y in zip(a, b)) * 1000:+.1f} ms)")
    return {"wall": statistics.median(wall), "cpu": statistics.median(a)}


# both as analyze does it: glibc keeps freed blocks (sources/scanner.py: _keep_freed_blocks),
# else every 16 MiB read is a fresh mmap whose every page faults
_KEEP_BLOCKS = "import ctypes; ctypes.CDLL(None).mallopt(-3, 64 << 20); ctypes.CDLL(None).mallopt(-1, 128 << 20)\n"
_SCAN_ONLY = _KEEP_BLOCKS + """import sys, hyperscan
db = hyperscan.loadb(open(sys.argv[1], 'rb').read(), mode=hyperscan.HS_MODE_BLOCK)
db.scratch = hyperscan.Scratch(db)
with open(sys.argv[2], 'rb') as f:
    while b := f.read(16 << 20):
        db.scan(b, match_event_handler=lambda *a: None)
"""
_SCAN_COUNT = _SCAN_ONLY.replace("lambda *a: None)", "lambda *a: None)\n        len(b) - len(b.replace(b'\\n', b''))")
_READ_COUNT = _KEEP_BLOCKS + """import sys
n = 0
with open(sys.argv[1], 'rb') as f:
    while b := f.read(16 << 20):
        n += len(b) - len(b.replace(b'\\n', b''))
"""


def _scan_database(path: Path, folder: Path) -> Path:
    """The Hyperscan database analyze's fast path scans `path` with (its first block's),
    written where a bare process can load it."""
    import hyperscan
    from dsdoctor.sources import scanner
    m = scanner.matcher()
    with open(path, "rb") as f:
        head = f.read(scanner.STEADY_WINDOW)
    rest = tuple(i for i, lit in m.steady_literals if lit not in head)
    db = m._fast_database(rest) if len(rest) < len(m.steady_literals) else m.fast
    out = folder / "fast.hsdb"
    out.write_bytes(hyperscan.dumpb(db))
    return out


def floor(path: Path, runs: int, against: Path | None = None) -> None:
    """What a Python process cannot avoid on one input, each part in its own process, CPU
    (user+sys) median [min-max] of `runs` interleaved runs, beside grep and analyze: is
    <= 2x grep possible at this size at all? With `against`, that checkout's import, start-up
    and analyze in the same rounds."""
    import hyperscan
    py, env = sys.executable, _installed_env()
    bare = dict(env, PYTHONPATH=str(Path(hyperscan.__file__).resolve().parent.parent))   # for -S
    tiny = path.parent / "tiny.log"
    tiny.write_text("".join(Healthy(random.Random(1), True).lines([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])))
    db = _scan_database(path, path.parent)
    rows = [
        ("python -S -c pass (the interpreter)", [py, "-S", "-c", "pass"], env),
        ("python -c pass (+ site, the venv)", [py, "-c", "pass"], env),
        ("python -c 'import dsdoctor.cli'", [py, "-c", "import dsdoctor.cli"], env),
        ("analyze --json of a 10-line log (start-up)", [py, "-m", "dsdoctor", "analyze", "--json", str(tiny)], env),
        ("python -S: read in 16 MiB blocks + count lines", [py, "-S", "-c", _READ_COUNT, str(path)], bare),
        ("python -S: read + Hyperscan scan (analyze's database)", [py, "-S", "-c", _SCAN_ONLY, str(db), str(path)], bare),
        ("python -S: read + scan + count lines (the three together)", [py, "-S", "-c", _SCAN_COUNT, str(db), str(path)],
         bare),
        ("cat > /dev/null", ["cat", str(path)], env),
        ("LC_ALL=C grep -E -c (14 alternatives)", ["grep", "-E", "-c", GREP_PATTERN, str(path)], dict(env, LC_ALL="C")),
        ("dsdoctor analyze --json", [py, "-m", "dsdoctor", "analyze", "--json", str(path)], env),
    ]
    if against:
        env_b = dict(env, PYTHONPATH=str(against))
        rows += [(f"baseline: {name}", cmd, env_b) for name, cmd, _ in rows
                 if cmd[1:3] == ["-m", "dsdoctor"] or "import dsdoctor.cli" in cmd]
        timed(rows[-1][1], env_b)
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    timed([py, "-m", "dsdoctor", "analyze", "--json", str(path)], env)   # caches warm (page cache, databases, .pyc)
    for r in range(runs):
        for name, cmd, e in rows[r % len(rows):] + rows[:r % len(rows)]:
            res = timed(cmd, e, stdout=subprocess.DEVNULL if name.startswith("cat") else subprocess.PIPE)
            if res["code"] not in (0, 1):
                raise SystemExit(f"{name} failed ({res['code']}): {res['err'].decode(errors='replace')[-500:]}")
            cpu[name].append(res["cpu"])
    g = statistics.median(cpu["LC_ALL=C grep -E -c (14 alternatives)"])
    print(f"\nfloor at {path.stat().st_size / 2 ** 20:.0f} MiB, CPU seconds (user+sys), median [min-max] of {runs} "
          f"interleaved runs, and the median as a multiple of grep's:")
    for name, _, _ in rows:
        xs = cpu[name]
        print(f"  {name:<66} {statistics.median(xs):6.3f} [{min(xs):.3f}-{max(xs):.3f}]  {statistics.median(xs) / g:5.2f}x")
    tiny.unlink()
    db.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", type=_set, help=f"FILESxSIZE sets (default {' '.join(DEFAULT_SETS)})")
    ap.add_argument("--scaling", action="store_true",
                    help=f"add {' '.join(SCALING_SETS)}: size 1x/4x/16x (64M/256M/1G) and 1/8/64 files at 1G")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three commands per set (default 3)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the logs (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated logs")
    ap.add_argument("--against", type=Path, metavar="CHECKOUT", default=None,
                    help="also run the dsdoctor of another checkout (its folder, as PYTHONPATH) in the same rounds: "
                         "its ratio, the paired CPU difference, and whether both print the same JSON")
    ap.add_argument("--floor", type=int, metavar="RUNS", default=0,
                    help="instead of the ratio rounds: the floor table of each set's first file (interpreter, "
                         "imports, read, Hyperscan scan alone, grep, analyze), RUNS interleaved runs")
    args = ap.parse_args(argv)
    sets = list(args.sets) or [_set(s) for s in DEFAULT_SETS]
    if args.scaling:
        sets += [_set(s) for s in SCALING_SETS if _set(s) not in sets]
    root = args.dir or Path(tempfile.mkdtemp(prefix="dsdoctor-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    global _CHILD_CWD
    _CHILD_CWD = str(root)
    try:
        where = timed([sys.executable, "-c", "import dsdoctor; print(dsdoctor.__file__)"], _installed_env())
        print(f"measuring dsdoctor from {where['out'].decode().strip()}")
        startup = startup_cost(root, args.against)
        if args.against is None:
            print(f"dsdoctor start-up (analyze --json on a 10-line log): {startup['wall']:.2f} s wall, "
                  f"{startup['cpu']:.2f} s cpu")
        for files, size in sets:
            folder = root / f"{files}x{size}"
            folder.mkdir(exist_ok=True)
            t = time.perf_counter()
            paths = generate(folder, size, files)
            total = sum(p.stat().st_size for p in paths)
            print(f"\n{files} file{'s' if files > 1 else ''}, {total / 2 ** 20:.0f} MiB "
                  f"(generated in {time.perf_counter() - t:.0f} s)")
            if args.floor:
                floor(paths[0], args.floor, args.against)
            else:
                measure(paths, args.rounds, startup, args.against)
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs kept in {root}")


if __name__ == "__main__":
    sys.exit(main())
