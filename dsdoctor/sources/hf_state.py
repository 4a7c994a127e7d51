"""HF Trainer's `trainer_state.json` -> events.

transformers/trainer_callback.py: TrainerState.save_to_json writes the state with
json.dumps(asdict(state), indent=2, sort_keys=True): `log_history` is a list of the dicts the
Trainer logged, e.g. {"epoch": 0.5, "grad_norm": 1.2, "learning_rate": 5e-05, "loss": 2.3,
"step": 10} (a NaN is written as the bare word NaN, which json.loads reads back), evaluation
entries {"eval_loss": ..., "step": ...} and one end-of-training summary {"train_runtime": ...,
"train_loss": ...}. Training entries become loss / grad_norm / lr events at their step; the
summary and evaluation entries are no point of the training curve.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from ..events import Event

_STEP_LINE = re.compile(r'^\s*"step":\s*(\d+)')
METRIC_KINDS = (("loss", "loss"), ("grad_norm", "grad_norm"), ("learning_rate", "lr"))


def load(path: Path) -> dict[str, Any] | None:
    """The state if `path` is a trainer_state.json (a dict with a log_history list), else None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            d = json.load(fh)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("log_history"), list) else None


def _step_lines(path: Path) -> list[int]:
    """Line numbers of the `"step": N` keys inside log_history, in order (one per entry)."""
    out: list[int] = []
    inside = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not inside:
                inside = line.lstrip().startswith('"log_history"')
                continue
            if line.startswith("  ]"):              # the end of log_history (indent=2)
                break
            if _STEP_LINE.match(line):
                out.append(n)
    return out


def read(inp, warnings: list[str] | None) -> Iterator[Event]:
    state = load(inp.path)
    if state is None:
        if warnings is not None:
            warnings.append(f"{inp.name}: not a trainer_state.json (no log_history); skipped")
        return
    history = [e for e in state["log_history"] if isinstance(e, dict)]
    lines = _step_lines(inp.path)
    if len(lines) != sum(1 for e in history if "step" in e):
        lines = []                                   # hand-edited or another layout: no line numbers
    k = 0
    for entry in history:
        line = None
        if "step" in entry and lines:
            line, k = lines[k], k + 1
        if "train_runtime" in entry or any(key.startswith("eval_") for key in entry):
            continue
        step = entry.get("step")
        step = int(step) if isinstance(step, (int, float)) else None
        text = json.dumps({k_: entry[k_] for k_ in sorted(entry)})[:400]
        for key, kind in METRIC_KINDS:
            v = entry.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                data = {"value": float(v), "name": "loss"} if kind == "loss" else {"value": float(v)}
                yield Event(kind, rank=inp.rank_hint if inp.rank_hint is not None else 0, step=step,
                            data=data, source=inp.name, line=line, text=text)
