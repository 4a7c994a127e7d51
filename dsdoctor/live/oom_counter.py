"""The kernel's count of OOM kills, read by `dsdoctor run` when the command starts and ends.

A rank killed by SIGKILL looks the same whether the kernel's OOM killer or a person / scheduler /
watchdog sent it. The kernel counts its own kills: node-wide in /proc/vmstat `oom_kill` (Linux 4.13+)
and per memory cgroup (cgroup v2: `memory.events` `oom_kill`; v1: `memory.oom_control` `oom_kill`)
of the cgroup /proc/self/cgroup names. No root is needed to read them. A counter that went up during
the run says the OOM killer acted; every readable counter unchanged says the SIGKILL came from outside.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class OomCounts:
    node: Optional[int] = None          # /proc/vmstat oom_kill
    cgroup: Optional[int] = None        # the job's memory cgroup's oom_kill
    cgroup_file: Optional[str] = None   # where that came from

    def readable(self) -> bool:
        return self.node is not None or self.cgroup is not None


def _field(path: Path, name: str) -> Optional[int]:
    """The value of `name N` in a kernel key/value file, None when unreadable or absent."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def _cgroup_file(proc: Path, sys_cgroup: Path) -> Optional[Path]:
    """This process's memory cgroup's counter file: v2 (`0::/path`) memory.events, v1 (`N:memory:/path`)
    memory.oom_control; v2 may be mounted at /sys/fs/cgroup or, on hybrid hosts, /sys/fs/cgroup/unified."""
    try:
        lines = (proc / "self" / "cgroup").read_text(errors="replace").splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2].lstrip("/")
        elif "memory" in parts[1].split(","):
            v1 = parts[2].lstrip("/")
    candidates = []
    if v1 is not None:
        candidates.append(sys_cgroup / "memory" / v1 / "memory.oom_control")
    if v2 is not None:
        candidates += [sys_cgroup / v2 / "memory.events", sys_cgroup / "unified" / v2 / "memory.events"]
    for path in candidates:
        if path.is_file():
            return path
    return None


def read_oom_counts(proc: str | Path = "/proc", sys_cgroup: str | Path = "/sys/fs/cgroup") -> OomCounts:
    proc, sys_cgroup = Path(proc), Path(sys_cgroup)
    node = _field(proc / "vmstat", "oom_kill")
    where = _cgroup_file(proc, sys_cgroup)
    cgroup = _field(where, "oom_kill") if where is not None else None
    return OomCounts(node, cgroup, str(where) if cgroup is not None else None)


def oom_kill_facts(before: OomCounts, after: OomCounts, several_nodes: bool = False) -> dict:
    """The exit event's facts: how many OOM kills each counter saw during the run and the verdict,
    `rose` (True: the OOM killer acted, False: every readable counter unchanged, absent: unknown).
    Over several nodes this node's counters say nothing of the others: an unchanged count is no verdict."""
    deltas = {}
    if before.node is not None and after.node is not None:
        deltas["node"] = after.node - before.node
    if before.cgroup is not None and after.cgroup is not None and before.cgroup_file == after.cgroup_file:
        deltas["cgroup"] = after.cgroup - before.cgroup
    if not deltas:
        return {}
    facts: dict = {"oom_kills": deltas}
    if any(d > 0 for d in deltas.values()):
        facts["oom_rose"] = True
    elif not several_nodes:
        facts["oom_rose"] = False
    return facts


def oom_kill_text(facts: dict) -> str:
    """The evidence clause of the exit line: what the counters said."""
    deltas = facts.get("oom_kills")
    if not deltas:
        return ""
    where = {"node": "/proc/vmstat oom_kill", "cgroup": "the job's memory cgroup"}
    said = ", ".join(f"{where[k]} +{v}" for k, v in deltas.items())
    if facts.get("oom_rose"):
        return f"; the kernel's OOM killer acted during the run ({said})"
    if facts.get("oom_rose") is False:
        return f"; the kernel's OOM-kill counters did not move during the run ({said})"
    return f"; this node's OOM-kill counters: {said}"
