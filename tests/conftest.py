"""Shared test set-up: DeepSpeed on the CPU (gloo), no GPU assumed."""
from __future__ import annotations

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "1")     # 2-core machines: ranks must not oversubscribe

import re
import signal
import subprocess
import sys
import time
import warnings

import pytest

import beside

# DeepSpeed on the CPU JIT-compiles its shared-memory comm op in every process's first
# init_distributed (deepspeed/comm/torch.py build_shm_op) into TORCH_EXTENSIONS_DIR: ~40 s on a
# fresh venv on 2 quiet cores, minutes under load. Built here once, before the first test, in a
# process of the session's own: no test's time limit includes the compile, and no test that
# kills its run at a limit kills the build while it holds the op's 'lock' file (every later
# DeepSpeed start would then wait on that file for ever: seen, 3 tests x 240 s).
PREBUILD = "from deepspeed.comm.torch import build_shm_op\nbuild_shm_op()\n"
PREBUILD_LIMIT = 900


# what a test module that starts DeepSpeed processes says (the helpers and scripts they run)
STARTS_DEEPSPEED = re.compile(r"init_distributed|deepspeed\.initialize|torch\.distributed\.run|dsdoctor\.demo|"
                              r"demo/train|multinode_helpers|make_fixtures|lr_task|accelerate_task")


def _starts_deepspeed(path) -> bool:
    try:
        return STARTS_DEEPSPEED.search(path.read_text(encoding="utf-8", errors="replace")) is not None
    except OSError:
        return False


def pytest_collection_finish(session):
    if session.config.option.collectonly or os.environ.get("DS_ACCELERATOR") != "cpu":
        return
    if not any(_starts_deepspeed(p) for p in {i.path for i in session.items}):
        return
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-c", PREBUILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=PREBUILD_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out = p.communicate()[0]
    if p.returncode != 0:          # the tests that need the op fail and say why; the rest run
        warnings.warn(f"building DeepSpeed's shm comm op failed ({p.returncode}): {out[-500:]!r}")
    elif time.monotonic() - t0 > 20:
        print(f"\nconftest: DeepSpeed's shm comm op built in {time.monotonic() - t0:.0f} s", file=sys.stderr)


@pytest.hookimpl(trylast=True)       # after -k / -m / --deselect have chosen the items
def pytest_collection_modifyitems(config, items):
    # the in-process modules run beside the rest, in a child pytest at nice 19 (tests/beside.py)
    beside.keep_own(items)
    config._dsdoctor_beside = beside.split(config, items)


def pytest_sessionfinish(session, exitstatus):
    # processes started ahead of their tests (tests/run_ahead.py) that no test read to the end
    run_ahead = sys.modules.get("run_ahead")
    if run_ahead is not None:
        run_ahead.stop_all()
    child = getattr(session.config, "_dsdoctor_beside", None)
    if child is None:
        return
    if session.shouldstop or session.shouldfail or exitstatus == pytest.ExitCode.INTERRUPTED:
        child.stop()
        child.rc = -1
    else:
        child.rc = child.wait()
    if child.rc != 0 and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    child = getattr(config, "_dsdoctor_beside", None)
    if child is None or not hasattr(child, "rc"):
        return
    text = child.report().rstrip()
    terminalreporter.write_sep("=", f"{child.count} in-process tests run beside the rest (tests/beside.py)")
    if child.rc == 0:
        terminalreporter.write_line(text.splitlines()[-1] if text else "(no output)")
    elif child.rc is None:
        terminalreporter.write_line(f"{text[-20000:]}\nFAILED: the in-process tests did not end within "
                                    f"{beside.LIMIT_AFTER_PARENT} s of the others; stopped")
    elif child.rc == -1:
        terminalreporter.write_line("stopped with the session")
    else:
        terminalreporter.write_line(text[-100000:])
        terminalreporter.write_line(f"FAILED: the in-process tests ended with exit code {child.rc}")
    child.clean()
