"""Recogniser: tqdm progress bars (HF Trainer, accelerate and most training scripts).

tqdm/std.py: tqdm.format_meter prints '{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}
[{elapsed}<{remaining}, {rate_fmt}{postfix}]', where rate_fmt is '{rate:.2f}{unit}/s', or
'{1/rate:.2f}s/{unit}' once an iteration takes longer than a second. Only bars counting
iterations (unit 'it', tqdm's default) become points of an iteration-time series: dataset
bars count examples/batches ('examples/s', 'ba/s'). Each bar (its description and total) is
a series of its own, so an evaluation bar does not mix with the training bar. The rate tqdm
shows is already smoothed (exponential moving average, smoothing=0.3).
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, utc_seconds
from ..recogniser import on, steady

_BAR = compile_later(r"(?:^|[\r\s])(?:(?P<desc>[^|\r]*?):\s*)?\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
                  r"\[(?P<elapsed>[\d:]+)<[\d:?]+,\s*(?P<rate>\d+(?:\.\d+)?)(?P<unit>s/it|it/s)[,\]]")
# the rest of a bar a paste broke after its '| ' ('Epoch 0:   2%|     |' / '20/1000 [00:08<06:46,
# 2.41it/s, ...]'): the count, times and rate, without the description
_BAR_REST = compile_later(r"\s*(?P<n>\d+)/(?P<total>\d+)\s*"
                          r"\[(?P<elapsed>[\d:]+)<[\d:?]+,\s*(?P<rate>\d+(?:\.\d+)?)(?P<unit>s/it|it/s)[,\]]")
# the HF Trainer's notebook bar (transformers/utils/notebook.py: NotebookProgressBar.update_bar): '[{n}/{total}
# {elapsed} < {remaining}, {rate:.2f} it/s, Epoch 1/3]', n padded to the total's width, [H:]MM:SS times
_NOTEBOOK_BAR = compile_later(r"\[ *(?P<n>\d+)/(?P<total>\d+) (?P<elapsed>[\d:]+) < [\d:]+, "
                              r"(?P<rate>\d+(?:\.\d+)?) (?P<unit>it/s)[,\]]")
MAX_POINTS_PER_BAR = 200
_S_IT, _IT_S = "s/it]", "it/s]"
STEADY_GROUPS = (steady("tqdm", _S_IT, _IT_S),)
# Bars that count a model's tensors or files, not training iterations: transformers 5.x
# core_model_loading.py 'Loading weights' (total = the tensors, 21 for a 2-layer Llama, read as
# the run's last step before), modeling_utils.py 'Writing model shards', 4.x 'Loading checkpoint shards'
_NOT_TRAINING = ("Loading weights", "Writing model shards", "Loading checkpoint shards",
                 "Gathering sharded weights", "Saving checkpoint shards")    # + deepspeed/utils/zero_to_fp32.py


@on(_S_IT, _IT_S, "s/it, ", "it/s, ")
def progress_bar(line: Line, st: StreamState):
    text = line.text
    # Every match ends right after its unit ('s/it' or 'it/s', then ',' or ']'), so the search
    # may stop after the last unit: the same matches, without trying the record a bar is glued
    # to ('...1.3it/s][Rank 0] time (ms) | fwd: ...' cost 12 us instead of 2)
    endpos = max(text.rfind("s/it"), text.rfind("it/s")) + 5
    # Every match holds its own '%|': with one in the text there is one match at most, and
    # `search` finds it without trying the rest of the line for another (a bar glued to a
    # record: 17 us instead of 33); with none only the rest of a broken bar can be one
    bars = text.count("%|", 0, endpos)
    if bars == 0:
        m = _BAR_REST.match(text) if text[:1].isdigit() or text[:1].isspace() else None
        if m is None and " it/s" in text:
            m = _NOTEBOOK_BAR.search(text, 0, endpos)
    elif bars == 1:
        m = _BAR.search(text, 0, endpos)
    else:
        m = None
        for m in _BAR.finditer(text, 0, endpos):  # a pasted line may hold several updates: the last counts
            pass
    if m is None:
        return None
    n, total = int(m.group("n")), int(m.group("total"))
    rate = float(m.group("rate"))
    if n < 2 or total <= 0 or rate <= 0:
        return None                          # tqdm's first rate is start-up, not steady state
    desc = (m.groupdict().get("desc") or "").strip()[-60:]
    if desc.endswith(_NOT_TRAINING):
        return None
    series = f"{desc}|{total}"
    evals = st.scratch.get("tqdm_eval")
    if evals is not None and (series in evals or (evals.armed and series not in st.scratch.get("tqdm_last", {}))):
        # the first new bar after transformers' evaluation header counts evaluation batches, not training steps
        evals.armed = False
        if len(evals) < 64:
            evals.add(series)
        return None
    last = st.scratch.setdefault("tqdm_last", {})
    gap = max(1, total // MAX_POINTS_PER_BAR)
    if series in last and n < last[series] + gap and not (n <= 2 * gap + 1 < last[series]):
        return None                          # (a bar back at its start is the loop started over: kept)
    if len(last) > 1000:
        return None
    last[series] = n
    iter_ms = rate * 1000.0 if m.group("unit") == "s/it" else 1000.0 / rate
    # tqdm's elapsed ('{elapsed}' = format_interval: [H:]MM:SS): the bar's own clock, which
    # places an untimed bar in time against a time the log states (detect/failure.py)
    secs = 0
    for part in m.group("elapsed").split(":"):
        secs = secs * 60 + int(part or 0)
    return line.event("throughput", step=n, iter_ms=round(iter_ms, 3), series=series, bar=True, elapsed_s=secs)


class _EvalBars(set):
    """The series of the bars that count evaluation batches; `armed` after an evaluation header."""
    armed = False


# transformers trainer.py evaluation_loop: logger.info(f"\n***** Running {description} *****") with description
# 'Evaluation' or 'Prediction' (evaluate / predict), then 'Num examples', 'Batch size' and the loop's own tqdm bar,
# whose count is evaluation batches: a kill or a hang there is not 'at training step N'
@on("***** Running Evaluation *****", "***** Running Prediction *****")
def evaluation_header(line: Line, st: StreamState):
    evals = st.scratch.get("tqdm_eval")
    if evals is None:
        evals = st.scratch["tqdm_eval"] = _EvalBars()
    evals.armed = True
    return None


# Lightning's RichProgressBar (the default bar when rich is installed; pytorch_lightning/callbacks/progress/
# rich_progress.py configure_columns): '{description} {bar} {completed}/{total} {elapsed} • {remaining}
# {speed:.2f}it/s {metrics}', elapsed and remaining as str(timedelta) ('0:00:01', '-:--:--' unknown),
# the description 'Epoch {n}[/{max_epochs - 1}]', the bar '━' / '╸' / '╺'. Into a file rich prints the
# bar once, when it stops (the end of the run or the exception that ends it).
_RICH_BAR = compile_later(r"(?P<n>\d+)/(?P<total>\d+|--) +(?P<elapsed>\d+:\d\d:\d\d) • (?:\d+:\d\d:\d\d|-:--:--) +"
                          r"(?P<rate>\d+(?:\.\d+)?)it/s\b")
_BAR_CHARS = "━╸╺ "


@on(" • ")
def rich_progress_bar(line: Line, st: StreamState):
    m = _RICH_BAR.search(line.text)
    if m is None or m.group("total") == "--":
        return None
    n, total, rate = int(m.group("n")), int(m.group("total")), float(m.group("rate"))
    if n < 2 or total <= 0 or rate <= 0:
        return None
    desc = line.text[:m.start()].rstrip(_BAR_CHARS).strip()[-60:]
    h, mi, sec = (int(x) for x in m.group("elapsed").split(":"))
    ev = line.event("throughput", step=n, iter_ms=round(1000.0 / rate, 3), series=f"{desc}|{total}", bar=True,
                    elapsed_s=h * 3600 + mi * 60 + sec)
    ended = st.scratch.get("progress.ended")
    if ended is None:
        return ev
    # the bar printed when the fit loop stops comes after its '`Trainer.fit` stopped': the same end, not
    # progress of another run in the log
    return [ev, line.event("run_end", step=n, how=ended)]


# The training loop's own end-of-run lines: lightning/pytorch/loops/fit_loop.py: _FitLoop.done
# ('`Trainer.fit` stopped: `max_epochs=2` reached.' / '`max_steps=1000` reached.'; Lightning is not
# installed here, the text is cited) and Megatron-LM megatron/training/training.py: pretrain,
# print_datetime('after training is done') ('[after training is done] datetime: 2026-...') and its
# planned exits (train: print_datetime('exiting program after {} minutes' / 'at iteration {}'),
# --exit-duration-in-mins, --exit-interval, --exit-signal-handler: the run saves and stops on purpose).
# A log whose progress stops short of its total without one of these (or HF's train_runtime
# summary) ends mid-run (detect/run_end.py).
@on("`Trainer.fit` stopped:", "[after training is done]", "[exiting program ")
def run_end(line: Line, st: StreamState):
    how = "lightning" if "Trainer.fit" in line.text else "megatron"
    st.scratch["progress.ended"] = how
    return line.event("run_end", step=st.step_of(line.rank), how=how)


# A timestamped line printed while an untimed bar runs places the bar in time exactly (its start is
# that time less the bar's elapsed), where the time stated before the bar only bounds its start:
# the trainers' own checkpoint lines, printed between bar frames (transformers/trainer.py:
# Trainer._save 'Saving model checkpoint to {output_dir}'; deepspeed/runtime/engine.py:
# DeepSpeedEngine._save_checkpoint 'Saving model checkpoint: {save_path}';
# checkpoint_engine/torch_checkpoint_engine.py '[Torch] Checkpoint {tag} is about to be saved!').
# (transformers' logging head '[INFO|trainer.py:3705] 2024-06-08 09:40:03,118 >> ' and LLaMA-Factory's
# '[INFO|2024-06-08 09:40:03] ... >> ' are not cleaned off as timestamps: the time is read here)
_STATED = compile_later(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)")


@on("Saving model checkpoint", "is about to be saved!")
def checkpoint_clock(line: Line, st: StreamState):
    t = line.time
    if t is None:
        m = _STATED.search(line.text)
        t = utc_seconds(f"{m.group(1)} {m.group(2)}") if m else None
    if t is None:
        return None
    ev = line.event("clock", at=t, mid_run=True)
    ev.time = t
    return ev
