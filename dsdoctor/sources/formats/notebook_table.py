"""Recogniser: the table the HF Trainer draws in a notebook (transformers/utils/notebook.py:
NotebookProgressCallback), as a user copies it out of Jupyter or Colab.

The callback's columns are fixed: the first is 'Step' (or 'Epoch' with eval_strategy="epoch"), then
'Training Loss', then 'Validation Loss' when the run evaluates, then each other metric it reports
('Accuracy', a second eval set's 'Squad Loss', ...). text_to_html_table prints floats as `{:.6f}`
('2.311200', 'nan'), and 'No log' (or 'No Log' for a column added later) where a row has no value.
A browser copies the HTML table's cells separated by tabs; a paste that went through a terminal or
an editor has the tabs expanded to spaces (a cell can then be one space from the next). Each row is
read as the `loss` events a Trainer metric dict gives ('loss', and 'eval_loss' for the validation
column), so a NaN or a divergence in the table is seen.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on
from .deepspeed import num, set_step

_KEY = "notebook_table"
_HEAD = compile_later(r"^\s*(Step|Epoch)[\t ]+Training Loss(?:[\t ]+(Validation Loss))?(?:[\t ]|$)")
_NO_LOG = ("No log", "No Log")
_TRAINING_LOSS, _VALIDATION_LOSS = 1, 2            # the callback's column order


def _row_cells(text: str) -> list[str]:
    for word in _NO_LOG:
        if word in text:
            text = text.replace(word, "-")
    return text.split()


@on("Training Loss", continuation=("\t", "  "))
def notebook_table(line: Line, st: StreamState):
    text = line.text
    m = _HEAD.match(text) if "Training Loss" in text else None
    if m is not None:
        # the width is only known from tabs (expanded ones may leave a single space between two names)
        width = len(text.strip().split("\t")) if "\t" in text else None
        st.scratch[_KEY] = (line.lineno, width, m.group(1) == "Epoch", m.group(2) is not None)
        return None
    tab = st.scratch.get(_KEY)
    if tab is None or not armed_within(tab[0], line, 1):
        return None
    at, width, by_epoch, validated = tab
    cells = _row_cells(text)
    if width is not None and len(cells) == width + 1 and text[:1].isdigit():
        cells = cells[1:]       # `cat -n` of a long log: its number (>= 100000: no padding) left on the row
    if len(cells) < 2 + validated or (width is not None and len(cells) != width) \
            or not cells[0].isdigit() or any(c != "-" and num(c) is None for c in cells[1:]):
        return None
    st.scratch[_KEY] = (line.lineno, width, by_epoch, validated)
    n = int(cells[0])
    # an Epoch table's first column counts epochs, not optimizer steps: the step stays the log's
    step = None if by_epoch else n
    if step is not None:
        set_step(st, line.rank, step)
    epoch = float(n) if by_epoch else None
    out = []
    if (v := num(cells[_TRAINING_LOSS])) is not None:
        out.append(line.event("loss", step, value=v, name="loss", epoch=epoch))
    if validated and (v := num(cells[_VALIDATION_LOSS])) is not None:
        out.append(line.event("loss", step, value=v, name="eval_loss", epoch=epoch))
    return out or None
