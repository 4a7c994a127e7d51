"""Real processes a test module reads, started one ahead of the test that reads them.

A test that runs a real process (a Python one-liner importing torch, one DeepSpeed rank) waits for it
with one of the machine's two cores idle: the process is single-threaded (OMP_NUM_THREADS=1) and
pytest only waits. A module lists such processes, in the order its tests read them (`QUEUE.add(...)`,
`register(key, ...)`; test_failure.py's `ahead(code)` for its `output_of`), with the same command,
environment, input and time limit the test gave subprocess.run; when a test asks
for one, the next one on the list starts too, so it runs while this one is waited for and while the
in-process tests in between run: at most two of the listed processes at a time. What a test reads
is that process's own exit code, stdout and stderr, as subprocess.run returns them.

Each process runs in a session of its own; at its time limit its whole group is killed (and the test
that reads it gets subprocess.TimeoutExpired, as from subprocess.run), and `stop_all()` (conftest.py,
at the end of the pytest session) kills the group of any still running, whatever happened. A
process no selected test reads (`pytest -k`) is started at most once ahead, and killed at the end.
`Background` does the same for a helper that runs and reads a whole run (one rank of `dsdoctor run`).
Not for a process whose timing is what the test checks (stragglers, stall verdicts, a healthy 2-rank
run): that one runs alone, as before."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import Callable

_lock = threading.Lock()
_running: dict[int, subprocess.Popen] = {}        # pid -> process, until it has been reaped
_scratch: list[str] = []
_stopped = False
_threads: list[threading.Thread] = []     # every thread started here (each ends at its process's limit)


class Ahead:
    """One real process: started at most once, read as often as asked."""

    def __init__(self, queue: "Queue", args: list[str] | Callable[[], list[str]], *, timeout: float, env: dict | Callable[[], dict] | None,
                 cwd: str | None, input: str | None, merge: bool, text: bool, setup: Callable[[], None] | None,
                 cleanup: Callable[[], None] | None):
        self.queue, self.args, self.timeout, self.env, self.cwd, self.input = queue, args, timeout, env, cwd, input
        self.merge, self.text, self.setup, self.cleanup = merge, text, setup, cleanup
        self._thread: threading.Thread | None = None
        self._result: subprocess.CompletedProcess | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        with _lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="run-ahead", daemon=True)
            _threads.append(self._thread)
            self._thread.start()

    def _run(self) -> None:
        try:
            if self.setup is not None:
                self.setup()
            env = self.env() if callable(self.env) else self.env
            if callable(self.args):
                self.args = self.args()
            p = subprocess.Popen(self.args, stdin=subprocess.PIPE if self.input is not None else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT if self.merge else subprocess.PIPE,
                                 text=self.text, env=env, cwd=self.cwd, start_new_session=True)
            with _lock:
                _running[p.pid] = p
                if _stopped:                  # the session ended while this one was being started
                    _kill_group(p)
            try:
                out, err = p.communicate(self.input, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(p)
                out, err = p.communicate()
                self._error = subprocess.TimeoutExpired(self.args, self.timeout, out, err)
                return
            finally:
                with _lock:
                    _running.pop(p.pid, None)
                if self.cleanup is not None:       # what the process started in sessions of its own
                    self.cleanup()
            self._result = subprocess.CompletedProcess(self.args, p.returncode, out, err)
        except BaseException as e:        # handed to the test that reads the process
            self._error = e

    def run(self) -> subprocess.CompletedProcess:
        """This process's result (started now if it was not yet; the next one on the list starts too)."""
        self.start()
        self.queue.start_after(self)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


class Queue:
    """A module's processes in the order its tests read them."""

    def __init__(self) -> None:
        self.items: list[Ahead] = []

    def add(self, args: list[str] | Callable[[], list[str]], *, timeout: float, env: dict | Callable[[], dict] | None = None,
            cwd: str | None = None, input: str | None = None, merge: bool = False, text: bool = True,
            setup: Callable[[], None] | None = None, cleanup: Callable[[], None] | None = None) -> Ahead:
        """`args` run as subprocess.run(args, env=env, cwd=cwd, input=input, timeout=timeout, text=text,
        capture_output=True) would (`merge`: stderr into stdout, as stderr=STDOUT); `setup` runs first
        (writes what the command reads), `cleanup` after it ended (kills what it left in other sessions)."""
        a = Ahead(self, args, timeout=timeout, env=env, cwd=cwd, input=input, merge=merge, text=text, setup=setup,
                  cleanup=cleanup)
        self.items.append(a)
        return a

    def start_after(self, item: Ahead) -> None:
        i = self.items.index(item)
        if i + 1 < len(self.items):
            self.items[i + 1].start()


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def scratch(prefix: str) -> str:
    """A folder of this session for what processes started ahead write (a test's tmp_path does not
    exist yet when they start); removed by stop_all()."""
    d = tempfile.mkdtemp(prefix=f"dsdoctor-ahead-{prefix}-")
    _scratch.append(d)
    return d


def stop_all() -> None:
    """Kill the process group of every process still running (the end of the pytest session)."""
    global _stopped
    with _lock:
        _stopped = True
        left = list(_running.values())
    for p in left:
        _kill_group(p)
    for t in list(_threads):      # their clean-up (kill_marked) runs; a Background run ends at its own limit
        t.join()
    for d in _scratch:
        shutil.rmtree(d, ignore_errors=True)


# one list for the whole session: modules add theirs as pytest imports them (in the order it runs them)
QUEUE = Queue()
_by_key: dict = {}


def register(key, args, **how) -> Ahead:
    """Add a process to the session's list under `key` (what the test will look it up by)."""
    a = _by_key[key] = QUEUE.add(args, **how)
    return a


def registered(key) -> Ahead | None:
    return _by_key.get(key)


class Background:
    """A function (a test helper that runs a real run and reads it) called in a thread of its own, started
    before the test that needs its result: for a module's runs of one rank each, so the next one runs on
    the other core. The helper keeps its own time limit and clean-up; stop_all() waits for it to end."""

    def __init__(self, fn: Callable[[], object]):
        self.fn = fn
        self._thread: threading.Thread | None = None
        self._value: object = None
        self._error: BaseException | None = None

    def start(self) -> "Background":
        with _lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="run-ahead-background", daemon=True)
                _threads.append(self._thread)
                self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._value = self.fn()
        except BaseException as e:        # pytest.fail and the like: raised in the test that reads it
            self._error = e

    def result(self):
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
