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
"""
from __future__ import annotations

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
}


@on(*_STARTS)
def run_start(line: Line, st: StreamState):
    how, strong = next(v for lit, v in _STARTS.items() if lit in line.text)
    return line.event("run_start", how=how, strong=strong)
