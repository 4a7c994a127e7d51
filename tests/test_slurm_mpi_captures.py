"""What `dsdoctor analyze` says about Slurm's and MPI's own messages, from logs of REAL runs made on
this machine (fixtures/excerpts/gen_n_*.log: tests/local_slurm.py's two-node Slurm 22.05 cluster,
sbatch/srun with and without --label, per-task --output files; Open MPI 4.1 and MPICH 4.0 mpirun;
a small DeepSpeed CPU/gloo training whose rank 1 raised, exited, was killed or crashed, or whose job
Slurm ended: time limit, scancel, memory limit, node failure). fixtures/expected.yaml checks the
category; this checks the rule, the culprit's rank and node, and that echoes stay echoes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor import cli

if not cli.app.registered_commands:
    cli._register()

EXCERPTS = Path(__file__).resolve().parent.parent / "fixtures" / "excerpts"

# fixture -> (top rule, words in its title, its ranks exactly (None: not checked))
CASES = {
    "srun_label_task_raised": ("unexplained-failure", "ValueError", [1]),
    "srun_kill_on_bad_exit": ("unexplained-failure", "ValueError", [1]),
    "srun_label_task_sigkill": ("host-oom-killed", "SIGKILL", [1]),
    # srun's 'task 1: Segmentation fault' / 'Aborted': rank 0's gloo 'Connection reset by peer' is the echo
    "srun_label_task_segfault": ("failure-crash-signal", "Rank 1 crashed with SIGSEGV", [1]),
    "srun_task_aborted": ("failure-crash-signal", "Rank 1 crashed with SIGABRT", [1]),
    "sbatch_time_limit_in_startup": ("failure-stopped-from-outside", "time limit", None),
    "sbatch_time_limit_training": ("failure-stopped-from-outside", "time limit", None),
    "sbatch_step_time_limit": ("failure-stopped-from-outside", "time limit", None),
    "sbatch_usr1_then_time_limit": ("failure-stopped-from-outside", "time limit", None),
    "sbatch_scancel": ("failure-stopped-from-outside", "scancel", None),
    "sbatch_requeued": ("failure-stopped-from-outside", "job requeue", None),
    # the same job id run twice (scontrol requeue, --open-mode=append): the last run's stop is the one
    "sbatch_requeued_then_scancel": ("failure-stopped-from-outside", "scancel", None),
    # slurmstepd's OverMemoryKill: the node over its limit holds the culprit; the other node's
    # 'task N: Killed' is the step torn down after it
    "sbatch_mem_limit_node2": ("host-oom-killed-cgroup", "memory limit (Slurm)", [1]),
    "sbatch_mem_limit_node1": ("host-oom-killed-cgroup", "memory limit (Slurm)", [0]),
    # srun's 'Node failure on node2' names the node; slurmstepd's ' ON node1' is the node reporting it
    "sbatch_node_failure": ("slurm-node-failure", "node node2 failed", []),
    "sbatch_output_pertask_main": ("node-exited-first", "node2", [1]),
    "deepspeed_launcher_slurm_raise": ("unexplained-failure", "ValueError", [1]),
    "mpirun_rank_exit_code": ("mpi-rank-exited-first", "exit code 3", [1]),
    "mpirun_rank_sigkill": ("host-oom-killed", "SIGKILL", [1]),
    # MPICH's hydra box names a PID and host, not a rank
    "mpich_rank_sigkill": ("host-oom-killed", "SIGKILL", []),
    # a plain non-zero exit: hydra prints nothing, the survivor's lost connection is all there is
    "mpich_rank_exit": ("gloo-connection-closed", "closed", [0]),
}


def analyze_text(path: Path) -> dict:
    r = CliRunner().invoke(cli.app, ["analyze", "--json", str(path)])
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_capture_top_finding(name):
    rule, words, ranks = CASES[name]
    doc = analyze_text(EXCERPTS / f"gen_n_{name}.log")
    top = doc["findings"][0]
    assert top["rule"] == rule and words in top["title"], [(f["rule"], f["title"]) for f in doc["findings"]]
    if ranks is not None:
        assert top["ranks"] == ranks, top
    assert top["evidence"]
    # every other error is an echo of it
    for f in doc["findings"][1:]:
        if f["severity"] == "error":
            assert f.get("consequence_of") == rule, (f["rule"], f.get("consequence_of"))


def test_node_failure_without_srun_naming_the_node_does_not_blame_the_reporting_node(tmp_path):
    text = (EXCERPTS / "gen_n_sbatch_node_failure.log").read_text()
    p = tmp_path / "nodefail.log"
    p.write_text("".join(ln for ln in text.splitlines(keepends=True) if "Node failure on" not in ln))
    top = analyze_text(p)["findings"][0]
    assert top["rule"] == "slurm-node-failure" and "one of its nodes" in top["title"] and "node1" not in top["title"]


def test_time_limit_fix_names_the_job_and_step_limits_and_a_usr1_handler():
    top = analyze_text(EXCERPTS / "gen_n_sbatch_step_time_limit.log")["findings"][0]
    advice = json.dumps(top["fixes"])
    assert "srun --time=" in advice and "#SBATCH --time=" in advice and "--signal=USR1@" in advice


def test_a_memory_limit_line_alone_is_slurms_limit_and_a_bare_killed_task_is_not(tmp_path):
    p = tmp_path / "mem.log"
    p.write_text("slurmstepd-gpu-node-7: error: Job 4242 exceeded memory limit (9000000000 > 8589934592), being killed\n"
                 "slurmstepd-gpu-node-7: error: Exceeded job memory limit\n")
    assert analyze_text(p)["findings"][0]["rule"] == "host-oom-killed-cgroup"
    p.write_text("srun: error: gpu-node-7: task 5: Killed\n")
    assert analyze_text(p)["findings"][0]["rule"] == "host-oom-killed"
