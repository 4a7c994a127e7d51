"""A SIGKILL from the kernel's OOM killer told apart from one sent from outside (part BA).

`dsdoctor run` reads the kernel's OOM-kill counters (/proc/vmstat oom_kill; the job's memory cgroup:
v2 memory.events, v1 memory.oom_control) when the command starts and ends (live/oom_counter.py); a
SIGKILL that left them unchanged is `killed-from-outside`, one with a counter that rose is
`host-oom-killed` with the counter as evidence, unread counters change nothing. The reading is tested
on fake /proc and /sys trees; the verdict on a run folder with the real launcher line (part BA's
`kill -9`); and for real: a child SIGKILLed by the test (~3 s), and a child OOM-killed inside a
memory cgroup the test makes (~5 s; skipped where no memory cgroup can be made).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsdoctor.api import analyze
from dsdoctor_run_child import dsdoctor_run
from dsdoctor.live.oom_counter import OomCounts, oom_kill_facts, oom_kill_text, read_oom_counts


def _tree(tmp: Path, cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, sys_cg = tmp / "proc", tmp / "cg"
    (proc / "self").mkdir(parents=True)
    (proc / "vmstat").write_text("nr_free_pages 123\noom_kill 7\nnr_unstable 0\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    for rel, text in files.items():
        (sys_cg / rel).parent.mkdir(parents=True, exist_ok=True)
        (sys_cg / rel).write_text(text)
    return proc, sys_cg


def test_cgroup_v2_memory_events(tmp_path):
    proc, cg = _tree(tmp_path, "0::/job/42\n", {"job/42/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n"})
    c = read_oom_counts(proc, cg)
    assert (c.node, c.cgroup) == (7, 2) and c.cgroup_file.endswith("job/42/memory.events")


def test_cgroup_v1_oom_control_and_hybrid_unified(tmp_path):
    proc, cg = _tree(tmp_path, "12:pids:/\n4:memory:/slurm/job9\n0::/\n",
                     {"memory/slurm/job9/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"})
    assert read_oom_counts(proc, cg).cgroup == 5
    proc2, cg2 = _tree(tmp_path / "h", "0::/user.slice\n", {"unified/user.slice/memory.events": "oom_kill 1\n"})
    assert read_oom_counts(proc2, cg2).cgroup == 1


def test_unreadable_counters_say_nothing(tmp_path):
    c = read_oom_counts(tmp_path / "no-proc", tmp_path / "no-cg")
    assert c == OomCounts() and not c.readable()
    assert oom_kill_facts(c, c) == {}
    # a kernel older than 4.13: no oom_kill line in vmstat, no cgroup file
    proc, cg = _tree(tmp_path, "0::/\n", {})
    (proc / "vmstat").write_text("nr_free_pages 1\n")
    assert not read_oom_counts(proc, cg).readable()


def test_the_verdict_of_two_readings():
    before = OomCounts(node=3, cgroup=0, cgroup_file="f")
    assert oom_kill_facts(before, OomCounts(4, 1, "f")) == {"oom_kills": {"node": 1, "cgroup": 1}, "oom_rose": True}
    still = oom_kill_facts(before, before)
    assert still == {"oom_kills": {"node": 0, "cgroup": 0}, "oom_rose": False}
    assert "did not move" in oom_kill_text(still)
    # over several nodes this node's counters say nothing of the others: no verdict unless one rose
    assert "oom_rose" not in oom_kill_facts(before, before, several_nodes=True)
    assert oom_kill_facts(before, OomCounts(4, 0, "f"), several_nodes=True)["oom_rose"] is True
    # the process moved to another cgroup between the readings: only the node's count compares
    assert oom_kill_facts(before, OomCounts(3, 9, "g")) == {"oom_kills": {"node": 0}, "oom_rose": False}


LAUNCHER = ("[2026-12-07 22:29:55,628] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python3', '-u', "
            "'train.py', '--local_rank=1'] exits with return code = -9\n")


def _run_folder(tmp: Path, kernel: dict) -> Path:
    run = tmp / "run"
    run.mkdir()
    (run / "console.log").write_text("step 5 loss 0.9\n" + LAUNCHER)
    exit_ev = {"kind": "exit", "rank": None, "step": None, "time": 1796682600.0,
               "data": {"exitcode": 247, "command": "deepspeed --num_gpus 2 train.py", **kernel},
               "text": "dsdoctor run: `deepspeed --num_gpus 2 train.py` exited with code 247" + oom_kill_text(kernel)}
    (run / "events-run.jsonl").write_text(json.dumps(exit_ev) + "\n")
    return run


def test_a_sigkill_the_counters_did_not_see_is_from_outside(tmp_path):
    run = _run_folder(tmp_path, {"oom_kills": {"node": 0, "cgroup": 0}, "oom_rose": False})
    top = analyze(run).findings[0]
    assert top.rule == "killed-from-outside" and top.category == "other"
    assert not any(f.category == "host_oom" for f in analyze(run).findings)
    assert any("did not move" in e.text for e in top.evidence)


def test_a_counter_that_rose_is_the_oom_killer_with_its_evidence(tmp_path):
    run = _run_folder(tmp_path, {"oom_kills": {"node": 1}, "oom_rose": True})
    top = analyze(run).findings[0]
    assert top.rule == "host-oom-killed" and "counter went up" in top.summary
    assert "see dmesg" not in top.summary
    assert any("OOM killer acted" in e.text for e in top.evidence)


def test_counters_not_read_leave_the_verdict_as_it_was(tmp_path):
    top = analyze(_run_folder(tmp_path, {})).findings[0]
    assert top.rule == "host-oom-killed" and "see dmesg" in top.summary


CHILD = ("import sys, time\n"
         "keep = []\n"
         "for s in range(600):\n"
         "    print(f'step {s} loss 1.0', flush=True)\n"
         "    if sys.argv[1] == 'leak': keep.append(bytearray(32 << 20))\n"
         "    time.sleep(0.05)\n")


def _kill_9_the_command(p: subprocess.Popen) -> None:
    """From outside, as a person's `kill -9 PID`: the command dsdoctor run started."""
    child = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    os.kill(int(child[0]), signal.SIGKILL)


@pytest.mark.timeout(60)
@pytest.mark.skipif(not read_oom_counts().readable(), reason="no OOM-kill counter to read on this OS")
def test_real_kill_9_from_outside(tmp_path):
    rc, text = dsdoctor_run(tmp_path, [sys.executable, "-c", CHILD, "steady"], "step 5 ", _kill_9_the_command)
    assert rc == 128 + signal.SIGKILL, text
    assert "(killed-from-outside, other)" in text and "host-oom" not in text, text


def _memory_cgroup(tmp_path: Path, limit: int) -> Path | None:
    """A child memory cgroup of this process's, limited to `limit` bytes (v2 memory.max, v1
    memory.limit_in_bytes), or None where none can be made (no root, no delegation)."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = next((ln.split(":", 2)[2] for ln in lines if "memory" in ln.split(":")[1].split(",")), None)
    v2 = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
    for base, limit_file in ((f"/sys/fs/cgroup/memory{v1}", "memory.limit_in_bytes"),
                             (f"/sys/fs/cgroup{v2}", "memory.max")):
        if (v1 is None and "memory/" in base) or (v2 is None and limit_file == "memory.max"):
            continue
        cg = Path(base) / f"dsdoctor-test-{os.getpid()}"
        try:
            cg.mkdir()
            (cg / limit_file).write_text(str(limit))
            return cg
        except OSError:
            try:
                cg.rmdir()
            except OSError:
                pass
    return None


@pytest.mark.timeout(90)
@pytest.mark.skipif(not read_oom_counts().readable(), reason="no OOM-kill counter to read on this OS")
def test_real_oom_kill_inside_a_memory_cgroup(tmp_path):
    cg = _memory_cgroup(tmp_path, 256 << 20)
    if cg is None:
        pytest.skip("no memory cgroup can be made here")
    try:
        # only the command goes into the limited cgroup; dsdoctor run reads the node's counter
        shell = f"echo $$ > {cg}/cgroup.procs && exec {sys.executable} -c \"$0\" leak"
        rc, text = dsdoctor_run(tmp_path, ["sh", "-c", shell, CHILD])
    finally:
        for _ in range(20):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.2)
    assert rc == 128 + signal.SIGKILL, text
    assert "(host-oom-killed, host_oom)" in text and "counter went up" in text, text
