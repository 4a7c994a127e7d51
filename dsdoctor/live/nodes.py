"""Which node a rank runs on, read from what the launchers put in its environment, and the
per-node run folder that follows from it.

Launchers and the variables they set on every rank (checked in the installed sources):
  deepspeed (pdsh/openmpi/mpich/slurm runners -> deepspeed/launcher/launch.py main)
            CROSS_RANK (node index), CROSS_SIZE (nodes), LOCAL_SIZE (ranks on this node)
  torchrun  (torch/distributed/elastic/agent/server/local_elastic_agent.py _start_workers)
            GROUP_RANK, GROUP_WORLD_SIZE, LOCAL_WORLD_SIZE
  srun      SLURM_NODEID, SLURM_NNODES, SLURM_NTASKS_PER_NODE (only with --ntasks-per-node) or
            SLURM_TASKS_PER_NODE ('2(x3)': 2 tasks on each of 3 nodes; srun -n sets only this one)
  mpirun    Open MPI 4 (orte): OMPI_COMM_WORLD_LOCAL_SIZE, OMPI_MCA_orte_num_nodes, and the node
            index from OMPI_MCA_orte_local_daemon_uri '<jobid>.<daemon vpid>;tcp://...': one orted
            daemon per node, numbered in the order of the allocation, mpirun's own node being 0
            (orte/mca/plm/base/plm_base_launch_support.c). When mpirun runs on a host without
            ranks, the first node with ranks is therefore node 1. Other MPIs: the host name only.

In a run over several nodes every rank writes to DIR/node<K>-<host>/: on a shared file system
all nodes' folders sit side by side in DIR; otherwise each node has its own folder on its own
disk, named so that copying them all into one DIR (see README "Multi-node") loses nothing.
A single-node run keeps the flat layout (DIR/events-rank<N>.jsonl).
"""
from __future__ import annotations

import base64
import json
import os
import re
import socket
from dataclasses import dataclass
from typing import Any


_ORTE_DAEMON = re.compile(r"\d+\.(\d+);")      # '<jobid>.<vpid>;tcp://127.0.0.1:39011'


def _int(env: Any, *names: str) -> int | None:
    for n in names:
        v = env.get(n)
        if v not in (None, ""):
            try:
                return int(str(v).split("(")[0].split(",")[0])   # SLURM_NTASKS_PER_NODE='2(x3)'
            except ValueError:
                continue
    return None


@dataclass
class NodeInfo:
    host: str                   # socket.gethostname()
    node: int | None            # node index (node rank) when the launcher says it
    nnodes: int | None          # number of nodes when the launcher says it
    local_size: int | None      # ranks on this node
    launcher: str               # 'deepspeed' | 'torchrun' | 'slurm' | 'mpi' | 'unknown'

    def multi_node(self, world_size: int) -> bool:
        if self.nnodes is not None:
            return self.nnodes > 1
        return self.local_size is not None and world_size > self.local_size

    @property
    def label(self) -> str:
        """How findings name this node: the host, and its index when known (two nodes of a
        test, or of a container cluster, can share one host name)."""
        return self.host if self.node is None else f"{self.host} (node {self.node})"

    @property
    def folder(self) -> str:
        safe = re.sub(r"[^\w.-]", "_", self.host) or "host"
        return safe if self.node is None else f"node{self.node}-{safe}"

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "node": self.node, "nnodes": self.nnodes, "local_size": self.local_size,
                "launcher": self.launcher, "label": self.label}


def node_info(env: Any = None) -> NodeInfo:
    env = os.environ if env is None else env
    host = socket.gethostname()
    if env.get("CROSS_RANK") is not None and env.get("CROSS_SIZE") is not None:
        return NodeInfo(host, _int(env, "CROSS_RANK"), _int(env, "CROSS_SIZE"), _int(env, "LOCAL_SIZE"), "deepspeed")
    if env.get("GROUP_RANK") is not None and env.get("TORCHELASTIC_RUN_ID") is not None:
        return NodeInfo(host, _int(env, "GROUP_RANK"), _int(env, "GROUP_WORLD_SIZE"),
                        _int(env, "LOCAL_WORLD_SIZE"), "torchrun")
    if env.get("SLURM_NODEID") is not None and env.get("SLURM_PROCID") is not None:
        return NodeInfo(host, _int(env, "SLURM_NODEID"), _int(env, "SLURM_NNODES", "SLURM_JOB_NUM_NODES"),
                        _int(env, "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"), "slurm")
    if env.get("OMPI_COMM_WORLD_LOCAL_SIZE") is not None:
        m = _ORTE_DAEMON.match(env.get("OMPI_MCA_orte_local_daemon_uri") or "")
        return NodeInfo(host, int(m.group(1)) if m else None, _int(env, "OMPI_MCA_orte_num_nodes"),
                        _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE"), "mpi")
    return NodeInfo(host, None, None, _int(env, "LOCAL_WORLD_SIZE", "LOCAL_SIZE"), "unknown")


def launcher_hosts(cmdline: list[str] | None = None) -> list[tuple[str, int]] | None:
    """Hosts and slot counts of a deepspeed launch, in node order, from the --world_info the
    runner hands to deepspeed/launcher/launch.py (the parent of every rank): the only place a
    rank can learn the host names of ranks that never attached. None when not available."""
    if cmdline is None:
        try:
            with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
                cmdline = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except OSError:
            return None
    for a in cmdline:
        if a.startswith("--world_info="):
            try:
                info = json.loads(base64.urlsafe_b64decode(a.split("=", 1)[1]))
                return [(str(h), len(s) if isinstance(s, list) else int(s)) for h, s in info.items()]
            except (ValueError, TypeError):
                return None
    return None


def host_of_rank(rank: int, hosts: list[tuple[str, int]]) -> tuple[str, int] | None:
    """(host, node index) of a global rank under deepspeed's launch.py numbering: node by node,
    slots in order (launch.py main: dist_rank = global_rank_mapping[local_node][local_rank])."""
    start = 0
    for i, (h, n) in enumerate(hosts):
        if start <= rank < start + n:
            return h, i
        start += n
    return None
