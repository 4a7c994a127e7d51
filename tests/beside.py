"""The suite's in-process test modules, run beside the rest in a second pytest process at the lowest
CPU priority.

Most of the suite waits for real processes (DeepSpeed ranks, `dsdoctor run`, sshd, Chromium) and
uses about one core of two (the seventeenth session's measure: 1,095 s of CPU in 1,058 s of wall
time); the modules listed here are the opposite: ~155 s of pure CPU in pytest's own process (~4,000
analyses of the golden fixtures, the sampling checks, the rules' examples) and nothing else (no
process, no clock, no thread, no file outside their tmp_path). They run in a child pytest started at
`nice 19` when the session begins, so they take what the other core leaves: a test whose timing
is its point (stragglers, stall verdicts, which run alone) competes with a nice-19 process that the
kernel gives ~1.5 % of a core when both want it. Every test and assertion is the same; the child
gets exactly the selected tests of these modules (their node ids, after `-k` / `-m` / `--deselect`),
and the session fails when it fails (its report is printed in the summary).

Only when the session holds both kinds: `pytest tests/test_golden.py` runs in-process as before,
and so does `--collect-only`, a run under xdist, or one with DSDOCTOR_TESTS_BESIDE=0.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# pure CPU, in-process (checked: no subprocess, sleep, clock, thread or signal in them or the helpers
# they call); the larger ones only: a child's start-up (~2 s) must be worth it
MODULES = ("test_golden.py", "test_sampling.py", "test_scan_ids.py", "test_rules.py",
           "test_issue_wrappings.py", "test_estimate.py", "test_architecture.py",
           # (twenty-first session: ~70 s more under load, measured with --durations=0)
           "test_ci_output.py", "test_detector_step_path.py", "test_scanner.py", "test_lines_clean.py",
           "test_event_kinds.py", "test_stats.py", "test_slurm_mpi_captures.py", "test_formats_training.py",
           "test_formats_translated.py", "test_steady_split.py")
IDS_ENV = "DSDOCTOR_TESTS_BESIDE_IDS"     # set in the child: the node ids it runs
LIMIT_AFTER_PARENT = 1200                 # s the parent waits for the child once its own tests are done


def _lowest_priority_tied_to_parent() -> None:
    """In the child, before pytest starts: nice 19, and killed when the parent pytest dies (it runs in
    a session of its own, so a signal to the parent's process group would not reach it)."""
    os.nice(19)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG (linux/prctl.h)
    except (OSError, AttributeError):
        pass


class Beside:
    """The child pytest, from start to its report."""

    def __init__(self, config, items: list) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dsdoctor-beside-"))
        ids = self.dir / "ids.txt"
        ids.write_text("".join(f"{i.nodeid}\n" for i in items), encoding="utf-8")
        self.log = self.dir / "child.out"
        files = sorted({str(i.path) for i in items})
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(self.dir / "tmp"),
                "-o", "console_output_style=classic", "--rootdir", str(config.rootpath)]
        if config.option.maxfail:
            args.append(f"--maxfail={config.option.maxfail}")
        self.count = len(items)
        self.proc = subprocess.Popen([*args, *files], cwd=str(config.invocation_params.dir),
                                     env={**os.environ, IDS_ENV: str(ids)},
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_lowest_priority_tied_to_parent)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def wait(self) -> int | None:
        """The child's exit code, or None when it did not end within LIMIT_AFTER_PARENT."""
        try:
            os.setpriority(os.PRIO_PGRP, self.proc.pid, 0)     # nothing else left to give way to
        except OSError:                                         # not allowed unprivileged: stays at 19
            pass
        try:
            return self.proc.wait(timeout=LIMIT_AFTER_PARENT)
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def report(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def clean(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def split(config, items: list) -> Beside | None:
    """In the parent: start the child with this session's items of MODULES and take them out of
    `items` (in place). None, and `items` as it was, when there is no reason to split."""
    if (os.environ.get(IDS_ENV) or os.environ.get("DSDOCTOR_TESTS_BESIDE") == "0" or config.option.collectonly
            or hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None)):
        return None
    beside = [i for i in items if i.path.name in MODULES]
    if not beside or len(beside) == len(items):
        return None
    child = Beside(config, beside)
    items[:] = [i for i in items if i.path.name not in MODULES]
    return child


def keep_own(items: list) -> None:
    """In the child: only the node ids the parent handed over, in their order."""
    ids = os.environ.get(IDS_ENV)
    if not ids:
        return
    wanted = set(Path(ids).read_text(encoding="utf-8").splitlines())
    items[:] = [i for i in items if i.nodeid in wanted]
