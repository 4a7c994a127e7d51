"""`dsdoctor run -- COMMAND` in its own process group, acted on once a line of its output appears
(tests/test_run_stops.py: SIGINTs to dsdoctor run; tests/test_oom_counter.py: a kill -9 to the command)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "DSDOCTOR_TENSORBOARD": "0"}


def dsdoctor_run(tmp_path: Path, command: list[str], at_line: Optional[str] = None,
                 act: Optional[Callable[[subprocess.Popen], None]] = None) -> tuple[int, str]:
    """Run it with DIR tmp_path/run; when a line starts with `at_line`, call act(process); return the
    exit code and all it printed. Nothing is left running, whatever happens."""
    p = subprocess.Popen([sys.executable, "-m", "dsdoctor", "run", "--out", str(tmp_path / "run"), "--", *command],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                         cwd=str(tmp_path), start_new_session=True)
    try:
        assert p.stdout is not None
        lines = []
        for line in p.stdout:
            lines.append(line)
            if at_line is not None and act is not None and line.startswith(at_line):
                act(p)
                break
        text, _ = p.communicate(timeout=60)
        return p.returncode, "".join(lines) + text
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
