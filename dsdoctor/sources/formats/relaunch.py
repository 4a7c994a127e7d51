"""Lines that start a run (again): a log that holds several runs (crash -> relaunch -> resume
from a checkpoint) is diagnosed by its last run (detect/relaunch.py). `run_start` events.

Texts, from the installed sources (and Megatron-LM, cited):
  deepspeed/__init__.py                 'DeepSpeed info: version={v}, git-hash=..., git-branch=...'
                                        (initialize: every engine start)
  transformers/trainer.py               '***** Running training *****' and '  Resuming training from
                                        checkpoint with epoch {e} and global step {s}' (_inner_training_loop)
  torch/distributed/elastic/agent/server/api.py  '[{role}] Worker group {state}. {n}/{max} attempts
                                        left; will restart worker group' (SimpleElasticAgent._invoke_run)
  Megatron-LM megatron/checkpointing.py '  successfully loaded checkpoint from {dir} at iteration {it}'
                                        (load_checkpoint, print_rank_0; megatron/training/ in core_v0.6+)
  deepspeed/launcher/launch.py          'WORLD INFO DICT: {world_info}' (main: every launch, on every node)
  torch/distributed/run.py              'Setting OMP_NUM_THREADS environment variable for each process to be
                                        {n} in default, ...' (main: every torchrun launch of more than one
                                        process per node, OMP_NUM_THREADS unset)
"""
from __future__ import annotations

import re

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

# literal -> (how, strong): a strong start is a resume or a restart by itself; a weak one
# (any engine start) is a new run only after its input's training ended (detect/relaunch.py)
_STARTS = {
    "DeepSpeed info: version=": ("engine_start", False),
    "***** Running training *****": ("trainer_start", False),
    "Resuming training from checkpoint with epoch": ("trainer_resume", True),
    "will restart worker group": ("elastic_restart", True),
    "successfully loaded checkpoint from": ("checkpoint_loaded", True),
    # a launcher starting again: weak (every node's launcher says it at the same start, and a paste of one
    # node's log after another's is told apart by the time going back), strong after that launcher's own end
    "WORLD INFO DICT: ": ("launcher_start", False),
    "Setting OMP_NUM_THREADS environment variable for each process": ("launcher_start", False),
}


@on(*_STARTS)
def run_start(line: Line, st: StreamState):
    how, strong = next(v for lit, v in _STARTS.items() if lit in line.text)
    if how == "launcher_start" and st.scratch.get("launcher.ended") == (line.host,):
        # the same node's launcher said its launch failed (formats/launcher.py), then started again
        del st.scratch["launcher.ended"]
        strong = True
    return line.event("run_start", how=how, strong=strong)


# The head line of one host's (pod's, file's) log when several are pasted one after the other
# without line prefixes: coreutils head/tail's multi-file header '==> {file} <==' (tail.c
# write_header) and the hand-made ones ('=== gpu-node-02 ===', '----- worker-1 -----', '### node-b',
# '==> pod trainer-worker-1 <=='; a '### node-b' heading only when another literal is on its line). Only a name that looks like a host, pod or file counts (a digit, a
# dot or a hyphen, no spaces): a Markdown heading ('### System Info') or a date is not one.
_HEAD = compile_later(r"^\s*(?:==>|={2,}|-{3,}|#{2,4}|\*{3,})\s*(?:(?:pod|node|host|worker|rank)s?\s+)?"
                      r"([A-Za-z][\w.\-/:]*[\d.\-][\w.\-/:]*)(?:\s*\([^)]{0,40}\))?\s*:?\s*(?:<==|={2,}|-{3,}|#{2,4}|\*{3,})?\s*$")
_DATE_LIKE = compile_later(r"\d{4}-\d\d-\d\d|\d\d:\d\d")


# (no '#' head among the literals: tqdm's ascii bars are runs of '#' and spaces)
@on("==> ", "== ", "--- ", "*** ")
def block_head(line: Line, st: StreamState):
    t = line.text
    if len(t) > 120 or (line.rank is not None and line.rank != st.rank_hint):   # a rank's own prefix
        return None
    m = _HEAD.match(t)
    if m is None or _DATE_LIKE.search(m.group(1)):
        return None
    s = t.strip()
    if not (s.startswith(("==>", "#")) or s.endswith(("=", "-", "*", "<=="))):
        return None                  # '--- a/config.json' opens a diff, not a host's log
    name = m.group(1).rstrip(":.")
    for ext in (".log", ".txt", ".out", ".err"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    # a head naming one rank's file ('==> rank3.log <==' of `tail rank*.log`) gives the unprefixed lines
    # under it that rank, as reading the file itself would (sources/inputs.py: a rank in the file name);
    # any other head (a host, a pod, a worker: a node of several ranks) hands back the input's own
    base = st.scratch.setdefault("block_head.rank_hint", st.rank_hint)
    r = _RANK_FILE.search(name)
    st.rank_hint = int(r.group(1)) if r else base
    return line.event("block_head", name=name)


_RANK_FILE = compile_later(r"(?:^|[^a-z])rank[_-]?(\d+)$", re.I)
