"""Recogniser: OpenRLHF's status line after each PPO/GRPO step (openrlhf/trainer/ppo_trainer.py
PPOTrainer.fit: `logger.info(f"✨ Global step {global_step}: {log_status}")`, where log_status is the step's
status dict: 'policy_loss', 'actor_lr', 'kl', 'reward', ..., and the step's wall times in seconds,
'timing/generation', 'timing/make_experience', 'timing/ppo_train', 'timing/broadcast' and their sum
'timing/step_total').

One line per RL step (a rollout, then the updates): its number is the step, its policy loss a loss
reading and its total time an iteration time, so the divergence and slowdown detectors read OpenRLHF
runs. A non-finite value is formats/hf.py metrics' (the same dict, read for every training metric).
"""
from __future__ import annotations

import math

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on
from .deepspeed import NUM, num, set_step

_STATUS = compile_later(r"Global step (\d+): \{")
_POLICY_LOSS = compile_later(r"'policy_loss': (" + NUM + ")")
_STEP_TOTAL = compile_later(r"'timing/step_total': (" + NUM + ")")


@on("Global step ")
def global_step(line: Line, st: StreamState):
    t = line.text
    m = _STATUS.search(t)
    if not m:
        return None
    step = int(m.group(1))
    set_step(st, line.rank, step)
    out = []
    if (lm := _POLICY_LOSS.search(t)) and (v := num(lm.group(1))) is not None and math.isfinite(v):
        out.append(line.event("loss", step, value=v, name="policy_loss"))
    if (tm := _STEP_TOTAL.search(t)) and (s := num(tm.group(1))) is not None and math.isfinite(s) and s > 0:
        out.append(line.event("throughput", step, iter_ms=s * 1000.0))
    return out or None
