"""The versions an issue body states: the tools' own reports pasted by the user (DeepSpeed's
`ds_report`, `transformers env`, `accelerate env`, `python -m torch.utils.collect_env`, `pip
list` / `pip freeze`, `nvidia-smi`). Each pattern is the tool's own wording (the file that prints
it is named), anchored at the line's start so prose that mentions a version is not read.

The facts are the names Context uses (ds_version, torch_version, gpu_name) plus the other
versions (context.FACTS)."""
from __future__ import annotations

import re

_V = r"(\d+(?:\.\d+)+[\w.+-]*)"
# (fact, pattern): the first match of each fact wins, and a later tool's line does not replace it
_PATTERNS = [
    # deepspeed/env_report.py: ("torch version", ...), ("deepspeed info", "0.19.8, hash, branch"),
    # ("torch cuda version", ...), ("nvcc version", ...), dots padded to a column
    ("torch_version", rf"^torch version \.+ {_V}"),
    ("ds_version", rf"^deepspeed info \.+ {_V}"),
    ("cuda_version", rf"^torch cuda version \.+ {_V}"),
    # transformers/cli/system.py and accelerate/commands/env.py: '- `transformers` version: 5.25.0',
    # '- DeepSpeed version: 0.19.8', '- PyTorch version (accelerator?): 2.13.0+cpu (NA)', '- GPU type: ...'
    ("transformers_version", rf"^- `transformers` version: {_V}"),
    ("accelerate_version", rf"^- (?:`Accelerate`|Accelerate) version: {_V}"),
    ("ds_version", rf"^- DeepSpeed version: {_V}"),
    ("torch_version", rf"^- PyTorch version(?: \([^)]*\))?: {_V}"),
    ("python_version", rf"^- Python version: {_V}"),
    ("gpu_name", r"^- GPU type: (.+?)\s*$"),
    # torch/utils/collect_env.py: 'PyTorch version: 2.13.0+cpu', 'CUDA used to build PyTorch: 12.1',
    # 'Python version: 3.11.7 (main, ...)', 'GPU models and configuration: GPU 0: NVIDIA A100 ...',
    # '[pip3] deepspeed==0.19.8'
    ("torch_version", rf"^PyTorch version: {_V}"),
    ("cuda_version", rf"^CUDA used to build PyTorch: {_V}"),
    ("python_version", rf"^Python version: {_V}"),
    ("gpu_name", r"^GPU models and configuration: (?:GPU 0: )?(.+?)(?: \(UUID.*)?\s*$"),
    ("gpu_name", r"^GPU 0: (.+?)(?: \(UUID.*)?\s*$"),
    # pip list ('deepspeed   0.19.8') and pip freeze / collect_env ('deepspeed==0.19.8', '[pip3] ...')
    ("ds_version", rf"^(?:\[(?:pip3?|conda)\] )?deepspeed(?:==|\s+){_V}\s*$"),
    ("torch_version", rf"^(?:\[(?:pip3?|conda)\] )?torch(?:==|\s+){_V}\s*(?:\S+\s*)?$"),
    ("transformers_version", rf"^(?:\[(?:pip3?|conda)\] )?transformers(?:==|\s+){_V}\s*$"),
    ("accelerate_version", rf"^(?:\[(?:pip3?|conda)\] )?accelerate(?:==|\s+){_V}\s*$"),
    ("nccl_version", rf"^(?:\[(?:pip3?|conda)\] )?nvidia-nccl-cu\d+(?:==|\s+){_V}\s*$"),
    # nvidia-smi's table (its header '| NVIDIA-SMI 535.161.08   Driver Version: 535.161.08   CUDA Version:
    # 12.2 |' and GPU 0's row '|   0  NVIDIA A100-SXM4-80GB        On  | 00000000:07:00.0 Off |') and
    # `nvidia-smi -q` ('Driver Version                            : 550.54.15', 'Product Name : ...'),
    # as in fixtures/excerpts/gen_e_env_cuda_devices_busy_two_attempts.log and gen_c_..._nvsmi.log
    ("driver_version", rf"^\|\s*NVIDIA-SMI \S+\s+Driver Version: {_V}"),
    ("gpu_name", r"^\|\s+0\s+(\S.*?)\s+(?:On|Off)\s+\|"),
    ("driver_version", rf"^Driver Version\s+: {_V}"),
    ("gpu_name", r"^Product Name\s+: (.+?)\s*$"),
]
_COMPILED = [(fact, re.compile(p)) for fact, p in _PATTERNS]
# the line starts every pattern above has (one search per line; the patterns run only after it)
_START = re.compile(r"(?i)^(?:torch|deepspeed|- |PyTorch|CUDA|Python|GPU|\[(?:pip|conda)|transformers|accelerate|"
                    r"nvidia-nccl|\|\s*(?:NVIDIA-SMI|0\s)|Driver|Product)")
_NA = ("n/a", "na", "none", "not found", "could not collect", "no cuda")


def stated_versions(lines: list[str]) -> dict[str, tuple[str, int]]:
    """fact -> (value, line number) of the first line that states it."""
    out: dict[str, tuple[str, int]] = {}
    for n, raw in enumerate(lines, 1):
        text = raw.strip().lstrip("> ").strip() if raw[:1] in " >\t" else raw.rstrip()
        if len(text) > 300 or not _START.match(text):
            continue
        for fact, rx in _COMPILED:
            if fact in out:
                continue
            m = rx.match(text)
            if m and m.group(1).strip().lower() not in _NA:
                out[fact] = (m.group(1).strip(), n)
    return out
