"""Recognisers: HF Transformers Trainer (../shared/log-formats.md §6).

Metric dicts in both forms: 4.x numbers ({'loss': 2.345, 'grad_norm': nan, ...}; a float NaN
prints as a bare `nan`, so ast.literal_eval cannot read them) and 5.x strings
({'loss': '2.345', 'grad_norm': 'inf', ...}). The DeepSpeed/TrainingArguments mismatch
error lists one '- ds key=value vs hf key=value' line per mismatch.
"""
from __future__ import annotations

import re

from ..logs import Line, StreamState
from ..registry import on, steady
from .deepspeed import nested, num

_PAIR = re.compile(r"'(\w+)': '?([^,'}]*)'?")


# The Trainer prints a metric dict every `logging_steps`: most of an HF log, so the dicts
# with a loss are sampled like DeepSpeed's step lines when all values are finite.
_LOSS, _GRAD_NORM = "{'loss': ", "'grad_norm': "
steady("hf_metrics", _LOSS, _GRAD_NORM)


@on(_LOSS, "{'train_runtime': ", "{'eval_loss': ", _GRAD_NORM)
def metrics(line: Line, st: StreamState):
    t = line.text
    i = t.find("{'")
    if i < 0:
        return None
    d = {k: v.strip() for k, v in _PAIR.findall(t[i:t.find("}", i) + 1 if "}" in t[i:] else len(t)])}
    step = st.step_of(line.rank)
    out = []
    ev = lambda kind, **data: line.event(kind, step=step, **data)  # noqa: E731
    # grad_norm first: the detector pairs a non-finite grad norm with the loss of the same log
    if "grad_norm" in d and num(d["grad_norm"]) is not None:
        out.append(ev("grad_norm", value=num(d["grad_norm"])))
    for key in ("loss", "eval_loss"):
        if key in d and num(d[key]) is not None:
            out.append(ev("loss", value=num(d[key]), name=key, epoch=num(d.get("epoch"))))
    if "learning_rate" in d and num(d["learning_rate"]) is not None:
        out.append(ev("lr", value=num(d["learning_rate"])))
    if "train_samples_per_second" in d and num(d["train_samples_per_second"]) is not None:
        out.append(ev("throughput", samples_per_sec=num(d["train_samples_per_second"]), summary=True))
    return out


_MISMATCH = re.compile(r"- ds ([\w.]+)=(\S+) vs hf ([\w.]+)=(\S+)")


@on("mismatch TrainingArguments values")
def mismatch_head(line: Line, st: StreamState):
    st.scratch["hf_mismatch"] = line.lineno
    return [_mismatch(line, m) for m in _MISMATCH.finditer(line.text)]


@on("- ds ")
def mismatch_item(line: Line, st: StreamState):
    head = st.scratch.get("hf_mismatch")
    if head is None or line.lineno - head > 40 or "mismatch TrainingArguments" in line.text:
        return None
    m = _MISMATCH.search(line.text)
    if not m:
        return None
    st.scratch["hf_mismatch"] = line.lineno
    return _mismatch(line, m)


def _mismatch(line: Line, m: re.Match):
    ds_val, hf_val = num(m.group(2)), num(m.group(4))
    return line.event("config_error", error="hf_mismatch", key=m.group(1), hf_key=m.group(3),
                      ds_value=m.group(2) if ds_val is None else ds_val,
                      hf_value=m.group(4) if hf_val is None else hf_val,
                      numbers={"ds": ds_val, "hf": hf_val}, message=m.group(0),
                      patch=nested(m.group(1), "auto"))
