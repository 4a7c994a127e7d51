"""Recogniser: a loss curve typed or pasted as a table with pipes (a markdown table in an issue, a
logger's or an export's rows rendered with `|`): a header that names a step column and a loss column,
then one row per reading (`| 900 | nan | nan | 3e-4 |`). Each row is read as the `loss` (and
`grad_norm`, `lr`) events a metric line would give, so a NaN or a divergence typed out is seen.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on
from .deepspeed import num, set_step

_KEY = "loss_table"
# a header cell is a column name: words, '/', '_', '.', '(', ')' (no digits-only cell, no 'name: value')
_NAME = compile_later(r"^[A-Za-z][\w /.()-]*$")
_STEP_NAMES = ("step", "steps", "global_step", "global step", "iter", "iters", "iteration", "iterations",
               "train/global_step", "optimizer step", "update")
_EVAL = ("eval", "val", "valid", "validation", "test", "dev")
_SEPARATOR = frozenset("-:| ")


def _cells(text: str) -> list[str]:
    cells = [c.strip() for c in text.strip().split("|")]
    if cells and cells[0] == "":
        cells = cells[1:]
    if cells and cells[-1] == "":
        cells = cells[:-1]
    return cells


def _columns(cells: list[str]) -> tuple[int, int, int | None, int | None] | None:
    """(step, loss, grad norm, lr) column indexes of a header, or None when it is no loss table's."""
    if len(cells) < 2 or not all(_NAME.match(c) for c in cells):
        return None
    names = [c.lower() for c in cells]
    step = next((i for i, c in enumerate(names) if c in _STEP_NAMES), None)
    losses = [i for i, c in enumerate(names) if "loss" in c and not c.startswith(_EVAL) and "scale" not in c]
    if step is None or not losses:
        return None
    loss = next((i for i in losses if "train" in names[i]), losses[0])
    grad = next((i for i, c in enumerate(names) if "grad" in c and "norm" in c), None)
    lr = next((i for i, c in enumerate(names) if c in ("lr", "learning rate", "learning_rate", "train/learning_rate")), None)
    return step, loss, grad, lr


# (a header cell followed by its pipe: '| loss' would be in every Megatron iteration line, '| loss scale: ...', and
# take it out of the sampled steady lines)
@on("loss |", "Loss |", "loss|", "Loss|", continuation=("|",))
def loss_table(line: Line, st: StreamState):
    cells = _cells(line.text)
    cols = _columns(cells)
    if cols is not None:
        st.scratch[_KEY] = (line.lineno, len(cells), cols)
        return None
    tab = st.scratch.get(_KEY)
    # rows follow their header line by line (the separator row and each row keep the table open)
    if tab is None or not armed_within(tab[0], line, 1):
        return None
    at, width, (step_col, loss_col, grad_col, lr_col) = tab
    if set(line.text.strip()) <= _SEPARATOR:
        st.scratch[_KEY] = (line.lineno, width, tab[2])
        return None
    if len(cells) != width:
        return None
    step = cells[step_col].replace(",", "")
    loss = num(cells[loss_col])
    if not step.isdigit() or loss is None:
        return None
    st.scratch[_KEY] = (line.lineno, width, tab[2])
    step_n = int(step)
    set_step(st, line.rank, step_n)
    out = []
    if grad_col is not None and (g := num(cells[grad_col])) is not None:
        out.append(line.event("grad_norm", step_n, value=g))
    out.append(line.event("loss", step_n, value=loss, name="loss"))
    if lr_col is not None and (v := num(cells[lr_col])) is not None:
        out.append(line.event("lr", step_n, value=v))
    return out
