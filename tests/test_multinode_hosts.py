"""Which host a multi-node failure is on (part AS): the host a line's prefix or NCCL's own head names,
tied to the rank the line names, or placing a finding whose ranks no line ties to a host. Texts from
the templates of pdsh (dsh.c '%S: %s'), srun --label, mpirun --tag-output, DeepSpeed 0.19.8's
launch.py, NCCL's debug.cc head and DeepSpeed's per-rank timer line (log_dist '[Rank N] ')."""
from __future__ import annotations

from dsdoctor.sources.ungrep import ungrep

from diagnose_text import top

CMD = "['/usr/bin/python3', '-u', 'train.py', '--local_rank={}', '--deepspeed', '--deepspeed_config', 'ds_config.json']"


def _flood(hosts: list[str], n: int = 40) -> list[str]:
    """NCCL_DEBUG=INFO lines of every rank: '{host}:{pid}:{tid} [{dev}] NCCL INFO {msg}'."""
    return [f"{hosts[i % len(hosts)]}:{48000 + i}:{48100 + i} [{i % 8}] NCCL INFO Channel {i % 32:02d}/0 : "
            f"{i}[{i % 8}] -> {i + 8}[{i % 8}] [send] via NET/IB/{i % 8}/GDRDMA" for i in range(n)]


def test_nccl_heads_of_hosts_named_like_node_12_are_no_grep_prefixes():
    # 'gpu-node-12:60312:60588 [6]' reads like grep's 'file-12:60312:' up to the pid; a WARN has its
    # source 'file.cc:line' before 'NCCL'
    hosts = [f"gpu-node-{k:02d}" for k in range(1, 17)]
    text = "\n".join(_flood(hosts) + [
        "gpu-node-12:60312:60588 [6] transport/net_ib.cc:110 NCCL WARN NET/IB : mlx5_6:1 Got async event : port error",
        "gpu-node-12:60312:60588 [6] transport/net_ib.cc:110 (ncclIbAsyncThreadMain) NCCL WARN NET/IB : mlx5_6:1 "
        "Got async event : port error"]) + "\n"
    assert ungrep(text.encode()) == text.encode()
    f = top(text)
    assert f.rule == "nccl-error-ib" and f.node == "gpu-node-12"
    assert f.evidence[0].text.startswith("gpu-node-12:60312:60588 [6]")


def test_nccl_heads_of_aws_hosts_are_no_grep_prefixes():
    # 'ip-10-0-0-5:9092:9160 [0]' reads like grep's 'ip-10-' and a line '0-0-5:...' (part AV: the host was cut
    # to '0-0-5' on every NCCL line of an EC2 node)
    text = ("ip-10-0-0-5:9091:9091 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.5<0>\n"
            "ip-10-0-0-5:9092:9160 [0] init.cc:573 NCCL WARN Duplicate GPU detected : rank 1 and rank 0 both on CUDA "
            "device 1e000\n"
            "ip-10-0-0-5.ec2.internal:9092:9160 [0] NCCL INFO init.cc:840 -> 5\n"
            "RuntimeError: NCCL error in: ../torch/lib/c10d/ProcessGroupNCCL.cpp:825, invalid usage, NCCL version 2.7.8\n")
    assert ungrep(text.encode()) == text.encode()
    f = top(text)
    assert f.rule == "nccl-error-duplicate-gpu" and f.node == "ip-10-0-0-5"
    assert f.evidence[0].text.startswith("ip-10-0-0-5:9092:9160 [0]")


def test_the_launchers_exit_line_under_a_pdsh_prefix_names_its_host():
    hosts = ["gpu-node-01", "gpu-node-02"]
    lines = []
    for i, h in enumerate(hosts):
        lines += [f"{h}: [2026-12-07 10:12:02,001] [INFO] [launch.py:146:main] WORLD INFO DICT: "
                  "{'gpu-node-01': [0, 1, 2, 3], 'gpu-node-02': [0, 1, 2, 3]}",
                  f"{h}: [2026-12-07 10:12:02,001] [INFO] [launch.py:152:main] nnodes=2, num_local_procs=4, node_rank={i}"]
    lines += ["gpu-node-02: [2026-12-07 10:40:02,001] [ERROR] [launch.py:342:sigkill_handler] "
              f"{CMD.format(2)} exits with return code = -9"]
    f = top("\n".join(lines))
    assert (f.category, f.ranks, f.hosts) == ("host_oom", [6], {6: "gpu-node-02"})


def test_an_nccl_warn_under_mpiruns_tag_ties_the_rank_to_the_host_in_its_head():
    f = top("\n".join([
        "[1,23]<stderr>:gpu-node-03:33012:33201 [7] enqueue.cc:1524 NCCL WARN Cuda failure 'uncorrectable ECC error encountered'",
        "[1,23]<stderr>:[rank23]: torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/"
        "ProcessGroupNCCL.cpp:3356, unhandled cuda error (run with NCCL_DEBUG=INFO for details), NCCL version 2.27.3"]))
    assert (f.category, f.hosts) == ("hardware", {23: "gpu-node-03"})


def test_srun_names_the_node_of_the_task_it_lost():
    f = top("\n".join([f"0: step {s} loss {2.0 - s * 0.01:.3f}" for s in range(1, 20)] + [
        "slurmstepd: error: Detected 1 oom_kill event in StepId=99122.0. Some of the step tasks have been OOM Killed.",
        "srun: error: gpu-node-07: task 6: Out Of Memory"]))
    assert f.category == "host_oom" and f.hosts == {6: "gpu-node-07"}


def test_a_slow_ranks_timer_line_under_a_pdsh_prefix_names_its_host():
    lines = []
    for s in range(4):
        for r in range(16):
            fwd = 300.0 + r % 3 + (520 if r == 11 else 0)
            lines.append(f"gpu-node-{r // 8 + 1:02d}: [2026-12-07 10:1{s}:00,000] [INFO] [logging.py:107:log_dist] [Rank {r}] "
                         f"time (ms) | fwd_microstep: {fwd:.2f} | bwd_microstep: {2 * fwd:.2f} | "
                         f"bwd_allreduce_microstep: {30 if r == 11 else 1400:.2f} | step_microstep: 22.0")
    f = top("\n".join(lines))
    assert (f.category, f.ranks, f.hosts) == ("straggler", [11], {11: "gpu-node-02"})


def test_a_rank_the_whole_input_was_given_is_not_tied_to_another_lines_host():
    # torchrun's one root cause lends rank 17 to the paste's rank-less lines; the NCCL warning printed
    # on gpu-node-01 about its peer gpu-node-03 is no line of rank 17
    f = top("\n".join([
        "gpu-node-01:6000:6100 [0] misc/socket.cc:50 NCCL WARN socketProgress: Connection closed by remote peer gpu-node-03<52310>",
        "gpu-node-03: Root Cause (first observed failure):", "gpu-node-03: [0]:",
        "gpu-node-03:   time      : 2026-12-07_10:40:00", "gpu-node-03:   host      : gpu-node-03",
        "gpu-node-03:   rank      : 17 (local_rank: 1)", "gpu-node-03:   exitcode  : -9 (pid: 19922)",
        "gpu-node-03:   error_file: <N/A>", "gpu-node-03:   traceback : Signal 9 (SIGKILL) received by PID 19922"]))
    assert f.ranks == [17] and f.hosts == {17: "gpu-node-03"}
