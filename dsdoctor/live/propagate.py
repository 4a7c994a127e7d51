"""Getting `dsdoctor run`'s variables to the ranks on the other nodes, by each launcher's own means.

deepspeed (pdsh, openmpi, mpich, impi, mvapich, slurm runners): deepspeed/launcher/runner.py
  main() passes on only the variables whose names start with EXPORT_ENVS (MLFLOW, PYTHON, MV2,
  UCX + the accelerator's) and the KEY=VALUE lines of the file named by $DS_ENV_FILE (default
  '.deepspeed_env'), looked for in ~ and in the current folder (DEEPSPEED_ENVIRONMENT_PATHS:
  os.path.join(path, name), so an absolute name is read as it is). DSDOCTOR_* match no prefix.
  So `dsdoctor run` writes DIR/deepspeed_env: the lines of the user's own ~/.deepspeed_env and
  ./.deepspeed_env (in the runner's order, so the same later-wins result), then ours, and sets
  DS_ENV_FILE to it. The user's files are read, never written; nothing is left to clean up
  outside DIR. Each runner then exports the lines on every node (pdsh: `export K=V; ...` before
  `cd <cwd>; python -u -m deepspeed.launcher.launch`; the mpi runners: -x/-genv; slurm:
  --export=ALL,K=V).
torchrun --nnodes N --node_rank K: one `dsdoctor run -- torchrun ...` per node; each one's
  environment reaches its own ranks directly.
srun: --export=ALL is srun's default, so `dsdoctor run -- srun ...` reaches every task.
accelerate launch: a DeepSpeed config with deepspeed_multinode_launcher 'standard' runs
  torchrun per node (as above); 'pdsh'/'openmpi'/... go through deepspeed's runner (as above).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ENV_FILE_VAR = "DS_ENV_FILE"                 # deepspeed/launcher/runner.py DEEPSPEED_ENVIRONMENT_NAME
DEFAULT_ENV_FILE = ".deepspeed_env"
FILE_NAME = "deepspeed_env"                  # in the run folder; no dot: listed, not hidden
_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def user_env_files(env: dict[str, str], cwd: Path) -> list[Path]:
    """The files the runner would read without us, in its order (runner.py main)."""
    name = env.get(ENV_FILE_VAR) or DEFAULT_ENV_FILE
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    out = []
    for base in (home, cwd):
        p = Path(os.path.join(str(base), name))
        if p.is_file():
            out.append(p)
    return out


def write_env_file(env: dict[str, str], ours: dict[str, str], out: Path, cwd: Path | None = None) -> Path:
    """DIR/deepspeed_env = the user's lines + ours; returns its absolute path."""
    cwd = cwd or Path.cwd()
    lines: list[str] = []
    for f in user_env_files(env, cwd):
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        # the runner splits every line at '=' (runner.py main): a blank line would make it fail
        lines.extend(ln for ln in text.splitlines() if _LINE.match(ln))
    for k, v in ours.items():
        if "\n" not in v:
            lines.append(f"{k}={v}")
    path = (out / FILE_NAME).resolve()
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    return path


def for_other_nodes(env: dict[str, str]) -> dict[str, str]:
    """What ranks on other nodes need from `dsdoctor run`'s environment: every DSDOCTOR_*
    variable and the Flight Recorder's. (PYTHON* reaches them through EXPORT_ENVS already.)"""
    keep = ("DSDOCTOR_", "TORCH_FR_", "TORCH_NCCL_TRACE_BUFFER_SIZE", "TORCH_NCCL_DEBUG_INFO_TEMP_FILE")
    return {k: v for k, v in env.items() if k.startswith(keep)}
