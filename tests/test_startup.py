"""What a plain `dsdoctor analyze` imports: its start-up is most of the cost of a small log
(issue 13), so typer/click (~40 ms) stay unloaded on the fast path (commands/params.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import io, json, sys
from dsdoctor.cli import main
out, sys.stdout = sys.stdout, io.StringIO()
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
report, sys.stdout = sys.stdout.getvalue(), out
print(json.dumps({"code": code, "report": report, "modules": sorted(sys.modules)}))
"""


def _probe(*args: str, cwd: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         env=env, timeout=120, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_plain_analyze_runs_without_typer(tmp_path):
    log = tmp_path / "rank0.log"
    log.write_text("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n")
    got = _probe("analyze", str(log), "--json")
    assert got["code"] == 1 and json.loads(got["report"])["findings"]
    loaded = [m for m in got["modules"] if m.split(".")[0] in ("typer", "click", "pydantic")]
    assert loaded == []


def test_other_command_lines_still_go_to_typer(tmp_path):
    got = _probe("analyze", "--help")
    assert got["code"] == 0 and "Usage: dsdoctor analyze" in got["report"]
    assert "typer" in got["modules"]


def test_small_log_loads_no_ctypes_nor_datetime(tmp_path):
    # ctypes only tunes glibc for inputs read in large blocks (sources/scanner.py:
    # keep_freed_blocks); log times are read by arithmetic (sources/lines.py: utc_seconds)
    log = tmp_path / "rank0.log"
    log.write_text("[2026-03-14 09:00:02,860] [INFO] [logging.py:123:log_dist] [Rank 0] step=1, skipped=0, "
                   "lr=[0.0003], mom=[(0.9, 0.999)]\n"
                   "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n")
    # (run outside the checkout: its pyproject.toml is read for settings, with tomllib and datetime)
    got = _probe("analyze", str(log), "--json", cwd=tmp_path)
    assert got["code"] == 1 and json.loads(got["report"])["findings"]
    assert [m for m in got["modules"] if m.split(".")[0] in ("ctypes", "datetime", "_datetime")] == []
