"""Running `dsdoctor run` launches in the multi-node tests: a wall-clock limit, and every process
of the launch ended afterwards (found by the run folder in its environment, so only ours)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK = Path(__file__).resolve().parent / "multinode_task.py"
LIMIT = float(os.environ.get("DSDOCTOR_TEST_MULTINODE_LIMIT", "420"))


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
               DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", DSDOCTOR_ATTACH_GRACE="3")
    env.update(extra)
    return env


def start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def finish(procs: list[subprocess.Popen], marker: str, limit: float = LIMIT) -> list[int | None]:
    """Wait for every process (together at most `limit` s), then end whatever is left of the
    launch: the process groups we started and any process whose environment names `marker`
    (our run folder) — remote ranks started by sshd are in no group of ours."""
    deadline = time.monotonic() + limit
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    codes = [p.poll() for p in procs]
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
    kill_marked(marker)
    return codes


def kill_marked(marker: str) -> None:
    needle = marker.encode()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            if needle in (pid_dir / "environ").read_bytes():
                os.kill(int(pid_dir.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


USER_DEEPSPEED_ENV = "DS_ACCELERATOR=cpu\nOMP_NUM_THREADS=1\n"


def user_work_folder(tmp_path: Path) -> tuple[Path, Path]:
    """The folder a user launches from, holding their own .deepspeed_env (it carries
    DS_ACCELERATOR to the remote side); a launch under dsdoctor must leave that file as it was
    (compare with USER_DEEPSPEED_ENV). Returns (folder, its .deepspeed_env)."""
    work = tmp_path / "work"
    work.mkdir()
    user_env = work / ".deepspeed_env"
    user_env.write_text(USER_DEEPSPEED_ENV)
    return work, user_env


def dsdoctor(*args: str) -> list[str]:
    return [sys.executable, "-m", "dsdoctor", *args]


def events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def analyze_json(*dirs: Path) -> dict:
    r = subprocess.run(dsdoctor("analyze", "--json", *map(str, dirs)), capture_output=True, text=True,
                       timeout=300, env=base_env())
    return json.loads(r.stdout)


def descendants(root: int) -> set[int]:
    """Every live process below `root` (by /proc/<pid>/stat's parent pid)."""
    parent: dict[int, int] = {}
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                parent[int(pid_dir.name)] = int((pid_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out.add(c)
                todo.append(c)
    return out


def marked(marker: str) -> set[int]:
    """Processes whose environment names `marker` (our run folder)."""
    needle, out = marker.encode(), set()
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                if needle in (pid_dir / "environ").read_bytes():
                    out.add(int(pid_dir.name))
            except OSError:
                continue
    return out


def hostname_shim(folder: Path) -> Path:
    """A folder with a `hostname` that answers `-I` with 127.0.0.1 (and runs the real one for
    anything else), to put first on the ranks' PATH: deepspeed/comm/comm.py mpi_discovery takes
    the torch master address from the first word of `hostname -I`, which on this machine is an
    eth0 address; the tests keep every connection on loopback."""
    import shutil
    folder.mkdir(parents=True, exist_ok=True)
    real = shutil.which("hostname") or "/usr/bin/hostname"
    shim = folder / "hostname"
    shim.write_text("#!/bin/sh\n# tests: keep mpi_discovery's master address on loopback\n"
                    f'if [ "$1" = "-I" ]; then echo 127.0.0.1; exit 0; fi\nexec {real} "$@"\n')
    shim.chmod(0o755)
    return folder
