#!/usr/bin/env python3
"""How fast is `dsdoctor analyze` next to grep, and how much memory does it take?

    python benchmarks/log_throughput.py                 # 1 GiB over 8 rank logs
    python benchmarks/log_throughput.py --size 200M     # a quicker run
    python benchmarks/log_throughput.py --keep --dir /tmp/bench   # keep the logs

Generates realistic multi-rank logs of a DeepSpeed job into a temporary folder (deleted
afterwards unless --keep): mostly healthy lines in the proportions a real run prints them
(DeepSpeed INFO, step, throughput and wall_clock_breakdown timer lines on rank 0, NCCL INFO
init lines on every rank, tqdm bars glued with carriage returns, HF Trainer metric dicts,
Megatron iteration lines on the last rank, the training script's own per-rank lines), with a
failure buried at the end: a CUDA OOM in backward on one rank, then NCCL watchdog timeouts on
all the others, then the torchrun summary.

Then, side by side in one run (page cache warmed first, each command run twice, best time
kept): `dsdoctor analyze --json DIR` and `LC_ALL=C grep -E -c` with the same trigger literals
dsdoctor's block scanner looks for (dsdoctor.sources.scanner._trigger_list). Prints both times,
the ratio, dsdoctor's peak RSS (from wait4() on the child), and whether dsdoctor found the
buried story (top finding: the OOM, on the right rank).

Goals (issue 2): ratio <= 2.0, peak RSS < 300 MB whatever the input size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

RATIO_GOAL = 2.0
RSS_GOAL_MB = 300


# ---------------------------------------------------------------- log generation
def _size(s: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {s!r} (e.g. 200M, 1G)")
    return int(float(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_"))


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
        out += [f"[{ts}] [INFO] [logging.py:128:log_dist] [Rank 0] DeepSpeed info: version=0.19.8, git-hash=unknown, git-branch=unknown",
                f"[{ts}] [INFO] [config.py:735:__init__] Config mesh_device None world_size = {world}",
                f"[{ts}] [INFO] [logging.py:128:log_dist] [Rank 0] Creating torch.bfloat16 ZeRO stage 2 optimizer",
                f"[{ts}] [INFO] [stage_1_and_2.py:151:__init__] Reduce bucket size 500000000",
                f"[{ts}] [INFO] [stage_1_and_2.py:152:__init__] Allgather bucket size 500000000",
                f"[{ts}] [INFO] [logging.py:128:log_dist] [Rank 0] DeepSpeed Final Optimizer = DeepSpeedZeroOptimizer",
                f"[{ts}] [INFO] [config.py:1003:print] DeepSpeedEngine configuration:",
                f"[{ts}] [INFO] [config.py:1007:print]   train_batch_size ............. 256",
                f"[{ts}] [INFO] [config.py:1007:print]   train_micro_batch_size_per_gpu  4",
                f"[{ts}] [INFO] [config.py:1007:print]   gradient_accumulation_steps .. {256 // 4 // world}",
                f"[{ts}] [INFO] [config.py:1007:print]   wall_clock_breakdown ......... True",
                f"[{ts}] [INFO] [logging.py:128:log_dist] [Rank 0] step=0, skipped=0, lr=[0.0003], mom=[(0.9, 0.95)]"]
    return out


# Templates of one training step. `%(...)s` fields are filled per step; numbers come from
# small pools of pre-drawn values so generation is fast and the run looks steady.
STEP_RANK0 = (
    "[%(ts)s] [INFO] [logging.py:128:log_dist] [Rank 0] step=%(step)d, skipped=0, lr=[%(lr)s], mom=[(0.9, 0.95)]\n"
    "[%(ts)s] [INFO] [timer.py:264:stop] epoch=0/micro_step=%(micro)d/global_step=%(step)d, "
    "RunningAvgSamplesPerSec=%(ravg)s, CurrSamplesPerSec=%(cur)s, MemAllocated=31.42GB, MaxMemAllocated=58.9GB\n"
    "[Rank 0] time (ms) | fwd_microstep: %(fwd)s | bwd_microstep: %(bwd)s | bwd_inner_microstep: %(bwdi)s | "
    "bwd_allreduce_microstep: %(bwda)s | step_microstep: %(stp)s\n"
    "[Rank 0] time (ms) | fwd: %(fwd)s | bwd: %(bwd)s | bwd_inner: %(bwdi)s | bwd_allreduce: %(bwda)s | step: %(stp)s\n"
    "%(tqdm)s\n"
)
STEP_ANY = (
    "%(ts)s - INFO - train.py:214 - rank=%(rank)d step=%(step)d micro_batch=%(mb)d tokens=16384 "
    "loss=%(loss)s data_wait_ms=%(dw)s\n"
    "[%(ts)s] [INFO] [data.py:88:__iter__] prefetched shard %(shard)05d (%(ns)d samples) into pinned buffer\n"
)
STEP_LAST = (
    " [%(ts)s] iteration %(step)8d/  500000 | consumed samples: %(cons)12d | elapsed time per iteration (ms): %(it)s | "
    "throughput per GPU (TFLOP/s/GPU): %(tf)s | learning rate: %(lr6)s | global batch size:   256 | lm loss: %(lml)s | "
    "loss scale: 1.0 | grad norm: %(gn)s | number of skipped iterations:   0 | number of nan iterations:   0 |\n"
)
HF_EVERY = 10
HF_LINE = "{'loss': %(loss)s, 'grad_norm': %(gn)s, 'learning_rate': %(lr)s, 'epoch': %(ep)s}\n"


def _tqdm(step: int, total: int) -> str:
    """tqdm redraws its bar with carriage returns: several frames on one physical line."""
    frames = []
    for k in range(3):
        n = step * 3 + k
        pct = 100 * n // (total * 3)
        bar = "█" * (pct // 10) + " " * (10 - pct // 10)
        frames.append(f"\r{pct:3d}%|{bar}| {n}/{total * 3} [1:02:03<4:05:06,  2.{(n * 7) % 100:02d}it/s]")
    return "".join(frames)


def _pools(rnd: random.Random) -> dict[str, list[str]]:
    def pool(lo: float, hi: float, fmt: str, n: int = 997) -> list[str]:
        return [fmt % rnd.uniform(lo, hi) for _ in range(n)]
    return {"fwd": pool(110, 118, "%.2f"), "bwd": pool(230, 245, "%.2f"), "bwdi": pool(200, 210, "%.2f"),
            "bwda": pool(28, 36, "%.2f"), "stp": pool(40, 44, "%.2f"), "cur": pool(88, 92, "%.6f"),
            "ravg": pool(89.5, 90.5, "%.6f"), "loss": pool(2.1, 2.4, "%.4f"), "dw": pool(0.2, 3.0, "%.1f"),
            "it": pool(2830, 2890, "%.1f"), "tf": pool(148, 151, "%.1f"), "lml": pool(2.1, 2.4, "%.6E"),
            "gn": pool(0.2, 0.4, "%.3f")}


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


def generate(folder: Path, total_bytes: int, ranks: int, bad_rank: int, seed: int = 0) -> list[Path]:
    """Write `ranks` logs of one run, about `total_bytes` in all (rank 0 prints the most)."""
    rnd = random.Random(seed)
    pools = _pools(rnd)
    t0 = datetime(2026, 3, 14, 9, 0, 0, tzinfo=timezone.utc)
    paths = []
    # bytes per step, to know how many steps fill the budget (rank 0 prints the most)
    sample = {k: v[0] for k, v in pools.items()}
    sample.update(ts="2026-03-14 09:00:00,000", step=100000, micro=100000, rank=0, mb=4, shard=1, ns=4096,
                  lr="0.0003", lr6="3.000000E-04", cons=25600000, ep="1.25",
                  tqdm=_tqdm(100000, 500000))
    # every rank prints STEP_ANY; rank 0 also the DeepSpeed/tqdm lines, the last rank Megatron's
    def nbytes(tpl: str) -> int:
        return len((tpl % sample).encode())
    step_bytes = (nbytes(STEP_RANK0) + ranks * nbytes(STEP_ANY) + nbytes(STEP_LAST)
                  + nbytes(HF_LINE) // HF_EVERY)
    steps = max(50, total_bytes // step_bytes)
    stamps = [(t0 + timedelta(seconds=2.86 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(steps + 1)]
    seq_fail = steps * 2 + 17          # the gradient all-reduce of the last step
    for r in range(ranks):
        p = folder / f"rank{r}.log"
        paths.append(p)
        with open(p, "w", encoding="utf-8", buffering=1 << 20) as fh:
            ts0 = stamps[0] + ",001"
            head = _preamble(r, ranks, ts0) + _nccl_init(r, ranks, f"node-a{r // 8 + 1}", 2100 + r)
            fh.write("\n".join(head) + "\n")
            d = {"rank": r, "mb": 4, "ns": 4096, "lr": "0.0003", "lr6": "3.000000E-04"}
            parts = []
            for s in range(1, steps + 1):
                i = s % 997
                d.update(ts=f"{stamps[s]},{(s * 37) % 1000:03d}", step=s, micro=s * 8, shard=s // 50,
                         fwd=pools["fwd"][i], bwd=pools["bwd"][i], bwdi=pools["bwdi"][i], bwda=pools["bwda"][i],
                         stp=pools["stp"][i], cur=pools["cur"][i], ravg=pools["ravg"][i],
                         loss=pools["loss"][(i + r) % 997], dw=pools["dw"][(i * 3 + r) % 997], it=pools["it"][i],
                         tf=pools["tf"][i], lml=pools["lml"][i], gn=pools["gn"][i], cons=s * 256)
                if r == 0:
                    d["tqdm"] = _tqdm(s, steps)
                    parts.append(STEP_RANK0 % d)
                    if s % HF_EVERY == 0:
                        d["ep"] = f"{s / steps:.2f}"
                        parts.append(HF_LINE % d)
                parts.append(STEP_ANY % d)
                if r == ranks - 1:
                    parts.append(STEP_LAST % d)
                if len(parts) > 2000:
                    fh.write("".join(parts))
                    parts = []
            fh.write("".join(parts))
            fail_ts = stamps[steps]
            timeout_ts = (datetime.strptime(fail_ts, "%Y-%m-%d %H:%M:%S") + timedelta(seconds=600)).strftime(
                "%Y-%m-%d %H:%M:%S")
            fh.write(_failure(r, ranks, bad_rank, fail_ts, timeout_ts, seq_fail))
    return paths


# ---------------------------------------------------------------- measuring
def ere_escape(lit: str) -> str:
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", lit)


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


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, bytes, int, bytes]:
    """(seconds, peak RSS bytes, stdout, exit code, stderr) of one run of `cmd`."""
    t = time.perf_counter()
    p = _Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    dt = time.perf_counter() - t
    rss = p.rusage.ru_maxrss * 1024 if p.rusage is not None else 0
    return dt, rss, out, p.returncode, err


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(16 << 20):
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=_size, default=_size("1G"), help="total log size (default 1G)")
    ap.add_argument("--ranks", type=int, default=8, help="number of rank logs (default 8)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the logs (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated logs")
    ap.add_argument("--reuse", action="store_true", help="reuse logs already in --dir instead of generating")
    ap.add_argument("--runs", type=int, default=2, help="runs of each command; the best is kept (default 2)")
    args = ap.parse_args(argv)
    bad_rank = min(3, args.ranks - 1)

    folder = args.dir or Path(tempfile.mkdtemp(prefix="dsdoctor-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if args.reuse and any(folder.glob("rank*.log")):
            paths = sorted(folder.glob("rank*.log"))
        else:
            t = time.perf_counter()
            paths = generate(folder, args.size, args.ranks, bad_rank)
            print(f"generated {len(paths)} logs in {time.perf_counter() - t:.1f} s")
        total = sum(p.stat().st_size for p in paths)
        print(f"input: {folder} · {len(paths)} files · {total / 2**20:.0f} MiB")

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from dsdoctor.sources import scanner
        scanner._triggers()
        literals = list(scanner._trigger_list)
        grep_cmd = ["grep", "-E", "-c"] + [a for lit in literals for a in ("-e", ere_escape(lit))] + [str(p) for p in paths]
        ds_cmd = [sys.executable, "-m", "dsdoctor", "analyze", "--json", str(folder)]
        env_c = dict(os.environ, LC_ALL="C")

        warm(paths)
        best = {"grep": None, "dsdoctor": None}
        rss = 0
        doc = None
        grep_hits = 0
        for _ in range(args.runs):
            dt, _, out, code, err = timed(grep_cmd, env_c)
            if code not in (0, 1):
                print(f"grep failed ({code}): {err.decode(errors='replace')[:500]}", file=sys.stderr)
                return 2
            grep_hits = sum(int(ln.rsplit(b":", 1)[-1]) for ln in out.splitlines() if ln)
            best["grep"] = dt if best["grep"] is None else min(best["grep"], dt)
            dt, r, out, code, err = timed(ds_cmd)
            if code not in (0, 1):
                print(f"dsdoctor failed ({code}): {err.decode(errors='replace')[-1000:]}", file=sys.stderr)
                return 2
            rss = max(rss, r)
            doc = json.loads(out)
            best["dsdoctor"] = dt if best["dsdoctor"] is None else min(best["dsdoctor"], dt)

        g, d = best["grep"], best["dsdoctor"]
        ratio = d / g
        mib = total / 2**20
        print(f"grep -E -c ({len(literals)} literals): {g:6.2f} s  {mib / g:7.0f} MiB/s  {grep_hits} matching lines")
        print(f"dsdoctor analyze --json:      {d:6.2f} s  {mib / d:7.0f} MiB/s")
        print(f"ratio dsdoctor/grep: {ratio:.2f}  (goal <= {RATIO_GOAL})  {'OK' if ratio <= RATIO_GOAL else 'OVER'}")
        print(f"dsdoctor peak RSS: {rss / 2**20:.0f} MB  (goal < {RSS_GOAL_MB} MB)  "
              f"{'OK' if rss < RSS_GOAL_MB * 2**20 else 'OVER'}")
        top = (doc or {}).get("findings") or []
        if top:
            f = top[0]
            found = f["category"] == "oom" and bad_rank in f["ranks"]
            print(f"top finding: {f['rule']} ({f['category']}) ranks {f['ranks']} -> "
                  f"{'the buried OOM on rank %d: found' % bad_rank if found else 'NOT the buried OOM'}")
            for other in top[1:4]:
                print(f"  then: {other['rule']} ({other['category']}) ranks {other['ranks']}"
                      f"{' [consequence of ' + other['consequence_of'] + ']' if other.get('consequence_of') else ''}")
        else:
            print("top finding: none -> the buried OOM was NOT found")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"logs kept in {folder}")


if __name__ == "__main__":
    sys.exit(main())
