"""The world size the launch command pasted in an issue body gives: `deepspeed --num_gpus 8
[--num_nodes 2]`, `torchrun --nproc_per_node 4 --nnodes 2`, `accelerate launch --num_processes 8`,
`srun -N 2 --ntasks-per-node 8`, `mpirun -np 16`. A command line is one that starts with the
launcher (after a shell prompt, a list marker or a backtick); a log line that quotes one does
not start with it. Only counts both factors of a product when both are given."""
from __future__ import annotations

import re

_LAUNCHER = re.compile(r"^(?:[\w@.~:/-]*[$#]\s*|\d+\.\s+|[-*+]\s+|`+|(?:\w+=\S+\s+)*)*"
                       r"(deepspeed|torchrun|accelerate launch|python3? -m torch\.distributed\.(?:run|launch)|"
                       r"srun|mpirun|mpiexec)\b(.*)$")
_LAUNCHER_NAMES = re.compile(r"`((?:deepspeed|torchrun|accelerate launch|srun|mpirun|mpiexec)\b[^`]*)`")  # inline code in prose
_OPT = re.compile(r"(--?[\w-]+)(?:[= ]+([^\s`'\"]+))?")
_DS_CONFIG = re.compile(r"--(?:deepspeed_config|deepspeed|ds_config|deepspeed_config_file)[= ]+([^\s`'\"]+\.json)")
_PER_NODE = ("--num_gpus", "--num-gpus", "--nproc_per_node", "--nproc-per-node", "--ntasks-per-node",
             "--gpus-per-node")
_NODES = ("--num_nodes", "--num-nodes", "--nnodes", "-N", "--nodes", "--num_machines")
_TOTAL = ("--num_processes", "-np", "-n", "--ntasks", "--np")


def _int(v: str | None) -> int | None:
    return int(v) if v and v.isdigit() and 0 < int(v) <= 1 << 20 else None


def launch_commands(lines: list[str]) -> list[tuple[int, str, int | None, str | None]]:
    """(line number, command, world size or None, ds_config file name it passes or None)."""
    out = []
    for n, raw in enumerate(lines, 1):
        text = raw.strip().lstrip("> ").strip()
        m = _LAUNCHER.match(text) if len(text) < 2000 else None
        if not m:
            inline = _LAUNCHER_NAMES.search(text) if "`" in text and len(text) < 2000 else None
            if not inline:
                continue
            text = inline.group(1)
        opts: dict[str, str] = {}
        for o in _OPT.finditer(text):
            if o.group(2) is not None:
                opts.setdefault(o.group(1), o.group(2))
        per = next((_int(opts[k]) for k in _PER_NODE if k in opts), None)
        if per is None and "--include" in opts:        # deepspeed --include localhost:0,1
            hosts = opts["--include"].split("@")
            if len(hosts) == 1 and ":" in hosts[0]:
                per = len(hosts[0].split(":", 1)[1].split(","))
        nodes = next((_int(opts[k]) for k in _NODES if k in opts), None)
        total = next((_int(opts[k]) for k in _TOTAL if k in opts), None)
        ws = total if total else per * (nodes or 1) if per and (nodes or not any(k in opts for k in _NODES)) else None
        cfg = _DS_CONFIG.search(text)
        out.append((n, text[:200], ws, cfg.group(1).rsplit("/", 1)[-1] if cfg else None))
    return out
