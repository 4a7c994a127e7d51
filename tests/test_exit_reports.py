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
    out = subprocess.run(["bash", "-c", 'set -m; python3 -c "import sys; sys.exit(3)" & wait; sleep 0.1; jobs; '
                          'python3 -c "import time; time.sleep(30)" & sleep 0.3; kill -9 $!; wait'],
                         capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
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
