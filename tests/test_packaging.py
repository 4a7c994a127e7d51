"""The core runs without torch or deepspeed, and the wheel carries every rule."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BLOCK_HEAVY = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'deepspeed', 'tensorboard'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, _Block())
"""


def test_core_imports_and_analyzes_without_torch(tmp_path):
    log = tmp_path / "rank0.log"
    log.write_text("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
                   "GPU 0 has a total capacity of 79.15 GiB of which 1.00 GiB is free.\n")
    code = BLOCK_HEAVY + f"""
from dsdoctor.cli import main
sys.argv = ['dsdoctor', 'analyze', '--json', {str(log)!r}]
main()
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert '"category": "oom"' in r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_wheel_contains_rules(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1:]}")
    wheel = next(tmp_path.glob("dsdoctor-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"dsdoctor/rules/{p.name}" for p in (ROOT / "rules").glob("*.yaml")}
    assert shipped and shipped <= names, sorted(shipped - names)


IMPORT_NAME = {"pyyaml": "yaml", "json-merge-patch": "json_merge_patch", "nvidia-ml-py": "pynvml"}


def _pyproject():
    import tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_declared_dependency_is_imported():
    """No dead weight in the install: each core and optional dependency is imported by dsdoctor
    (test-only packages by the tests)."""
    import re
    from packaging.requirements import Requirement
    proj = _pyproject()["project"]
    code = "\n".join(p.read_text() for p in (ROOT / "dsdoctor").rglob("*.py"))
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    groups = {"core": proj["dependencies"], **proj["optional-dependencies"]}
    for group, reqs in groups.items():
        for spec in reqs:
            name = Requirement(spec).name.lower()
            if name.startswith("pytest-"):           # plugins: used through pytest's configuration
                continue
            mod = IMPORT_NAME.get(name, name.replace("-", "_"))
            where = code + tests if group == "test" else code
            assert re.search(rf"^\s*(import|from) {mod}\b", where, re.M) or \
                re.search(rf"importorskip\([\"']{mod}[\"']", where), f"{group}: {spec} is never imported"


def test_hyperscan_marker_covers_the_wheel_platforms():
    from packaging.requirements import Requirement
    hs = next(Requirement(r) for r in _pyproject()["project"]["dependencies"] if r.startswith("hyperscan"))
    wheels = [("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "x86_64"), ("darwin", "arm64"), ("win32", "AMD64")]
    for plat, machine in wheels:
        assert hs.marker.evaluate({"sys_platform": plat, "platform_machine": machine}), (plat, machine)
    assert not hs.marker.evaluate({"sys_platform": "linux", "platform_machine": "ppc64le"})
