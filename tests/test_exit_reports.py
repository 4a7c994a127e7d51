"""How the programs around a run report its end (sources/formats/exit_reports.py): bash's job
table (real bash here), a container runner's and an IDE's exit line (their wording, cited)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text

STEPS = "".join(f"[2026-01-01 10:0{i}:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step={100 * i}, skipped=0, "
                f"lr=[1e-05], mom=[(0.9, 0.999)]\n" for i in (1, 2, 3))


def _top(text: str):
    found = [f for f in diagnose(events_from_text(text)) if f.severity in ("critical", "error", "warning")]
    return found[0] if found else None


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_job_table_lines_from_a_real_shell():
    # bash with job control reports a background job's end: 'Exit N' (jobs.c printable_job_status) and,
    # for a signal, 'bash: line 1:  PID Killed   cmd' when it reaps it
    # (the 'Killed' report is racy under load: bash sometimes reaps the killed job without a word, seen
    # at load ~4 here, so the shell is asked up to three times; what is checked is the wording it prints)
    for _ in range(3):
        out = subprocess.run(["bash", "-c", 'set -m; python3 -c "import sys; sys.exit(3)" & wait; sleep 0.1; jobs; '
                              'python3 -c "import time; time.sleep(30)" & sleep 1; kill -9 $!; wait'],
                             capture_output=True, text=True, timeout=60)
        text = out.stdout + out.stderr
        if "Exit 3" in text and "Killed" in text:
            break
    assert "Exit 3" in text and "Killed" in text, text
    exit_line = next(ln for ln in text.splitlines() if "Exit 3" in ln)
    f = _top(STEPS + exit_line + "\n")
    assert f is not None and "exit code 3" in f.title
    killed_line = next(ln for ln in text.splitlines() if "Killed" in ln)
    assert _top(STEPS + killed_line + "\n").category == "host_oom"


@pytest.mark.parametrize("line, category, words", [
    ("[1]+  Killed                  nohup deepspeed train.py > train.log 2>&1", "host_oom", "SIGKILL"),
    ("[2]-  Segmentation fault (core dumped)  python train.py", "other", "SIGSEGV"),
    ("trainer-1 exited with code 137", "host_oom", "SIGKILL"),
    ("Process finished with exit code 137 (interrupted by signal 9:SIGKILL)", "host_oom", "SIGKILL"),
    ("Process finished with exit code 1", "other", "exit code 1"),
])
def test_exit_lines_of_shells_containers_and_ides_end_the_run(line, category, words):
    f = _top(STEPS + line + "\n")
    assert f is not None and f.category == category and words in f.title + f.summary, f


@pytest.mark.parametrize("line", [
    "[1]+  Done                    nohup deepspeed train.py > train.log 2>&1",
    "trainer-1 exited with code 0",
    "Process finished with exit code 0",
])
def test_a_clean_exit_is_no_failure(line):
    assert _top(STEPS + line + "\n") is None


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_a_wrapper_script_traced_with_set_x_ends_on_its_exit_status():
    # a batch file under `set -x` returning the training's status as its own: bash traces '+ rc=139', '+ exit 139'
    out = subprocess.run(["bash", "-c", "set -x; python3 -c 'import os, signal; os.kill(os.getpid(), signal.SIGSEGV)'; "
                          "rc=$?; echo 'training finished'; exit $rc"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 139 and "+ exit 139" in out.stderr, out.stderr
    assert "SIGSEGV" in _top(STEPS + out.stdout + out.stderr).title     # (bash's own 'Segmentation fault' report too)
    # the trace alone (the crash report went to the training's own log, not pasted): the status decides
    traced = "".join(ln + "\n" for ln in (out.stdout + out.stderr).splitlines() if "Segmentation fault" not in ln)
    f = _top(STEPS + traced)
    assert f is not None and "SIGSEGV" in f.title and f.evidence[0].text.strip() == "+ exit 139", f
    # a nested level ('++'), a kill (137: SIGKILL), and a clean or non-status exit: no finding
    assert _top(STEPS + "++ exit 137\n").category == "host_oom"
    for clean in ("+ exit 0\n", "+ exit\n", "+ exit $rc\n", "echo + exit 3 done\n"):
        assert _top(STEPS + clean) is None, clean


DIE = "import os, signal, sys; os.kill(os.getpid(), getattr(signal, sys.argv[1]))"


def _under_a_terminal(cmd: str, stdin: str | None = None) -> str:
    # zsh and fish print a job's end only when interactive: `script` gives them a terminal
    p = subprocess.run(["script", "-qc", cmd, "/dev/null"], input=stdin, capture_output=True, text=True, timeout=60)
    return p.stdout + p.stderr


@pytest.mark.skipif(shutil.which("zsh") is None or shutil.which("script") is None, reason="no zsh (or script)")
@pytest.mark.parametrize("sig, category, words", [("SIGKILL", "host_oom", "SIGKILL"), ("SIGSEGV", "other", "SIGSEGV"),
                                                   ("SIGBUS", "other", "SIGBUS")])
def test_a_run_killed_under_zsh(tmp_path, sig, category, words):
    (tmp_path / "die.py").write_text(DIE)
    out = _under_a_terminal(f"zsh -f -i -c 'python3 {tmp_path / 'die.py'} {sig}; true'")
    assert "zsh: " in out, out
    f = _top(STEPS + out)
    assert f is not None and f.category == category and words in f.title + f.summary, (out, f)


@pytest.mark.skipif(shutil.which("fish") is None or shutil.which("script") is None, reason="no fish (or script)")
def test_a_run_killed_under_fish(tmp_path):
    (tmp_path / "die.py").write_text(DIE)
    out = _under_a_terminal("fish -i", stdin=f"python3 {tmp_path / 'die.py'} SIGKILL\nexit\n")
    assert "terminated by signal SIGKILL" in out, out
    f = _top(STEPS + out)
    assert f is not None and f.category == "host_oom", (out, f)


@pytest.mark.parametrize("line, rank, category", [
    ("torch.multiprocessing.spawn.ProcessExitedException: process 1 terminated with signal SIGKILL", 1, "host_oom"),
    ("torch.multiprocessing.spawn.ProcessExitedException: process 2 terminated with signal SIGSEGV", 2, "other"),
    ("torch.multiprocessing.spawn.ProcessExitedException: process 0 terminated with exit code 1", 0, "other"),
])
def test_torch_spawn_names_the_process_that_ended(line, rank, category):
    # torch/multiprocessing/spawn.py ProcessContext.join, its exact words
    f = _top(STEPS + "Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n"
             "    mp.spawn(main, nprocs=4)\n" + line + "\n")
    assert f is not None and f.category == category and rank in f.ranks, f


def test_lightnings_launcher_names_the_child_rank_that_died():
    # lightning_fabric/strategies/launchers/subprocess_script.py _ChildProcessObserver._run, with
    # lightning_utilities' rank_prefixed_message; real line from fixtures/excerpts/gen_p_lightning_child_killed.log
    from dsdoctor.sources.logs import events_from_text
    line = ("[rank: 1] Child process with PID 25443 terminated with code -9. Forcefully terminating all other "
            "processes to avoid zombies 🧟\n")
    ev = [e for e in events_from_text(line) if e.kind == "killed"]
    assert len(ev) == 1 and ev[0].rank == 1 and ev[0].data["signal"] == 9 and ev[0].data["who"] == "lightning"
    ev = [e for e in events_from_text(line.replace("-9.", "1.")) if e.kind == "process_exit"]
    assert len(ev) == 1 and ev[0].rank == 1 and ev[0].data["exitcode"] == 1
    assert not [e for e in events_from_text("[rank: 1] Seed set to 42\n") if e.kind in ("killed", "process_exit")]
    from dsdoctor.sources.lines import clean
    assert clean("[rank: 1] Seed set to 42")[1] == 1        # Lightning's own rank-prefixed messages


# Slurm's own programs refusing to launch ('srun: error: ...', src/common/log.c; the pmix plugin that
# could not load, seen here): the error line is the evidence, not 'No problems found'
SRUN_REFUSED = ("srun: error: MPI: Cannot create context for mpi/pmix\n"
                "srun: error: MPI: Unable to load any plugin\n"
                "srun: error: Invalid MPI type 'pmix', --mpi=list for acceptable types\n")


def test_srun_refusing_to_launch_is_quoted():
    evs = [e for e in events_from_text(SRUN_REFUSED) if e.kind == "error_line"]
    assert [e.data["message"] for e in evs][-1] == "Invalid MPI type 'pmix', --mpi=list for acceptable types"
    f = _top(SRUN_REFUSED)
    assert f is not None and "Invalid MPI type" in f.evidence[-1].text
    # a task's exit line is an exit, not an error line of srun's own
    assert not [e for e in events_from_text("srun: error: node2: task 1: Exited with exit code 3\n")
                if e.kind == "error_line"]


def test_an_exit_without_a_traceback_quotes_the_last_error_line():
    text = SRUN_REFUSED + "[1]+  Exit 1                  srun python train.py\n"     # bash's job table
    f = _top(text)
    assert f is not None and any("Invalid MPI type" in e.text for e in f.evidence), f.evidence


@pytest.mark.parametrize("bar_then_killed", [
    # a terminal: bash's message lands where the cursor is, after a tqdm bar that never got its newline
    "Loading checkpoint shards:  33%|███▎      | 1/3 [00:10<00:20, 10.12s/it]Killed",
    "Gathering sharded weights:  40%|████      | 19/48 [00:41<01:02,  2.17s/it, rank=0]Killed",
    # a script: 'NAME: line N: PID Killed  CMD' after the bar (real: bash 5.2 here, zero_to_fp32.py killed)
    "Saving checkpoint shards:   0%|          | 0/1 [00:00<?, ?it/s]killer.sh: line 5: 32701 Killed"
    "                  python zero_to_fp32.py ckpt out",
])
def test_killed_glued_to_a_progress_bar(bar_then_killed):
    top = _top(bar_then_killed + "\n")
    assert top is not None and top.category == "host_oom", top


def test_a_word_ending_in_killed_after_a_bracket_is_not_a_kill():
    assert _top(STEPS + "[worker] process was not Killed\n") is None


# Each shell here, asked to start a launcher that is not on its PATH (or an interpreter path that does not
# exist): its own words, read as the run that never started (exit status 127)
_NOT_THERE = ("deepspeed --num_gpus 2 train.py", "/opt/no-such-venv/bin/python -u -m deepspeed.launcher.launch")


@pytest.mark.parametrize("shell", ["bash", "sh", "zsh", "fish"])
@pytest.mark.parametrize("command", _NOT_THERE)
def test_a_launcher_the_shell_cannot_find_is_the_environment(tmp_path, shell, command):
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell}")
    script = tmp_path / "run.sh"
    script.write_text(command + "\n")
    out = subprocess.run([shell, str(script)], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"})
    assert out.returncode == 127, (out.returncode, out.stderr)
    f = _top(out.stdout + out.stderr)
    assert f is not None and f.rule == "env-command-not-found", (out.stderr, f)
    assert command.split()[0] in f.title and f.evidence[0].text.strip() in out.stderr


def test_a_shebangs_missing_interpreter_and_slurms_execve(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("#!/usr/bin/env python3.99\nprint('never')\n")
    script.chmod(0o755)
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 127, out.stderr
    assert _top(out.stderr).rule == "env-command-not-found", out.stderr
    # slurmstepd's execve() failure (cited: 'slurmstepd: error: execve(): {cmd}: No such file or directory')
    f = _top("slurmstepd: error: execve(): torchrun: No such file or directory\n"
             "srun: error: node07: task 0: Exited with exit code 2\n")
    assert f.rule == "env-command-not-found" and "torchrun" in f.title


@pytest.mark.parametrize("line", [
    "bash: nvidia-smi: command not found",                      # a helper tool: not why a run failed
    "cat: /data/python: No such file or directory",            # another program's file argument
    "FileNotFoundError: [Errno 2] No such file or directory: 'python'",
    "ls: cannot access 'deepspeed': No such file or directory",
])
def test_a_missing_helper_or_file_is_not_a_launcher_not_found(line):
    assert not [e for e in events_from_text(line + "\n") if e.kind == "env_error"]
