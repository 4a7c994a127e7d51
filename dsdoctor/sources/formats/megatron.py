"""Recognisers: Megatron-LM / Megatron-DeepSpeed iteration lines (Megatron-LM
megatron/training/training.py: training_log; megatron/training.py before core_v0.6.0).

' iteration 8738/ 159576 | consumed samples: ... | elapsed time per iteration (ms): 61947.6 |
learning rate: 6.000E-05 | global batch size: 176 | lm loss: 3.317482E+00 | loss scale: 65536.0 |
grad norm: 231817.368 | ... | number of skipped iterations: 0 | number of nan iterations: 0 |'

All versions (v1.0 .. core_v0.19, with or without a timestamp). Logs pasted into issues and
chronicles are often wrapped at a fixed width, so a record may span several physical lines:
fragments are joined while the record is incomplete (a full record ends with '|'), and
field names are compared with their spaces removed ('number of nan' + 'iterations').
Megatron omits a loss whose average is not > 0, so a loss field that was printed before and
is now missing means NaN (or a whole logging interval of skipped iterations).
"""
from __future__ import annotations

import math
from typing import Iterator

from ...lazy_regex import compile_later
from ...events import Event
from ..lines import Line, StreamState, armed_within, utc_seconds
from ..recogniser import HS_MULTILINE, NONFINITE_ANOMALIES, no_nonfinite, on, steady
from .deepspeed import num, scale, set_step

_START = compile_later(r"iteration\s+(\d+)\s*/\s*(\d+)\s*\|")
_KEY = "mg_rec"
_STAMP = compile_later(r"\[(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)\]")


def _compact(name: str) -> str:
    return "".join(name.split()).lower()


# a field's name as printed -> _compact(name): the same ~11 names in every record (a dict
# lookup per field instead of the join, split and lower)
_COMPACT: dict[str, str] = {}


# compacted field name -> handler key
_FIELDS = {
    "elapsedtimeperiteration(ms)": "iter_ms", "elapsedtimeperiteration(s)": "iter_s",
    # Megatron-LM core_v0.1x+ training_log: 'elapsed time per iteration: 21392.5 ms |' (unit after the value)
    "elapsedtimeperiteration": "iter_unit",
    "throughputpergpu(tflop/s/gpu)": "tflops", "tflops": "tflops",
    "samplespersecond": "samples_per_sec",
    "learningrate": "lr", "lossscale": "loss_scale", "gradnorm": "grad_norm",
    "numberofskippediterations": "skipped", "numberofnaniterations": "nan_iters",
}
_OTHER_FIELDS = {"consumedsamples", "consumedtokens", "globalbatchsize", "numzeros", "paramsnorm",
                 "decoupledlearningrate", "curriculumseqlen", "actualseqlen", "iteration"}


# Every piece of a wrapped record of useful width holds one of these (a bare '|' would also
# catch every tqdm bar); a piece without any only delays the record to the next one. A record
# starts with 'iteration'; the other pieces only matter on the line right after a record
# line, so they are continuation literals (a healthy line would otherwise hit ~15 times).
_PIECES = ("iteration", "consumed ", "rate:", "batch size", "loss:", "loss scale", "grad norm", "num zeros",
           "params norm", "number of", "iterations:", "per second", "TFLOP", "elapsed time")


@on(_PIECES[0], continuation=_PIECES[1:])
def iteration_piece(line: Line, st: StreamState):
    rec = st.scratch.get(_KEY)
    i = line.text.find("iteration")
    m = _START.match(line.text, i) if i >= 0 and (i == 0 or line.text[i - 1] in " ]\t") else None
    if m:
        out = (_flush(st) + _close(rec, st)) if rec else []
        step = int(m.group(1))
        set_step(st, line.rank, step)
        if line.time is None and i > 0:
            # Megatron-LM training_log starts the record with f" [{datetime.now():%Y-%m-%d %H:%M:%S}]";
            # after a launcher's 'N: ' label the leading space keeps lines.clean from reading it
            ts = _STAMP.search(line.text, 0, i)
            if ts:
                line = line.with_time(utc_seconds(ts.group(1)))
        rec = {"line": line, "text": line.text[m.start():], "last": line.lineno, "step": step,
               "total": int(m.group(2)), "emitted": False}
        st.scratch[_KEY] = rec
        if _complete(rec["text"]):
            out.extend(_flush(st, keep=True))
        return out
    if rec is None or not armed_within(rec["last"], line, 1):
        return None
    t = line.text
    if t.lstrip().startswith(("[", "time (ms)")):
        return None
    if not rec["emitted"]:                     # a wrapped record: join the next piece
        rec["text"] += t
        rec["last"] = line.lineno
        return _flush(st, keep=True) if _complete(rec["text"]) else None
    # the record looked complete but the wrap fell right after a '|': parse the rest alone
    first = _compact(t.split(":", 1)[0]) if ":" in t else ""
    if first in _FIELDS or first in _OTHER_FIELDS or first.endswith("loss"):
        rec["last"] = line.lineno
        # quoted as its own line: the value that matters ('grad norm: nan |') is on it, not on the first
        return _events(rec, t, st, supplement=line if line.time is not None else line.with_time(rec["line"].time))
    return None


# A record's piece whose head a paste cut off (it begins below the 'iteration N/M |' line): a
# non-finite grad norm on it is still what the reader sees first ('loss scale: 1.0 | grad norm: nan |'
# / 'number of skipped iterations: 0 | ...'). The piece opens a record of an unknown step, which its
# continuations complete as a record's do (detect/nonfinite.py: a NaN grad norm its counters say was
# not skipped). Megatron formats the value with '{:.3f}' (training_log), so NaN prints 'nan'.
@on("grad norm: nan", "grad norm: inf", continuation=_PIECES[1:])
def headless_piece(line: Line, st: StreamState):
    t = line.text
    if "grad norm: nan" not in t and "grad norm: inf" not in t:
        return None                   # a continuation line (the next piece): iteration_piece joins it
    rec = st.scratch.get(_KEY)
    if rec is not None and armed_within(rec["last"], line, 1, same_line=True):
        return None                   # a piece of the record above: iteration_piece joins it
    if "iteration" in t and _START.search(t):
        return None                   # a record's own head
    rec = {"line": line, "text": t, "last": line.lineno, "step": st.step_of(line.rank),
           "total": None, "emitted": False}
    st.scratch[_KEY] = rec
    return _flush(st, keep=True) if _complete(rec["text"]) else None


_AFTER_LOSSES = ("loss_scale", "grad_norm", "skipped", "nan_iters")


def _close(rec: dict | None, st: StreamState) -> list[Event]:
    """The end of a record a paste broke at its '|'s, each piece parsed alone: a loss printed by
    the earlier records and in none of its pieces is gone (as for a whole record, in _events)."""
    w = rec.get("pieces") if rec else None
    if not w or w["line"] is None or w["skipped"]:
        return []
    gone = st.scratch.get("mg_loss_names", set()) - w["losses"]
    return [w["line"].event("loss", rec["step"], value=math.nan, name=_pretty(n), missing=True) for n in sorted(gone)]


def _complete(text: str) -> bool:
    return text.rstrip().endswith("|")


def _flush(st: StreamState, keep: bool = False) -> list[Event]:
    rec = st.scratch.get(_KEY)
    if not rec or rec["emitted"]:
        return []
    rec["emitted"] = True
    if not keep:
        st.scratch.pop(_KEY, None)
    return _events(rec, rec["text"], st)


def finish(st: StreamState) -> Iterator[Event]:
    """End of input: a record still waiting for its continuation is emitted as it is."""
    rec = st.scratch.get(_KEY)
    yield from _flush(st)
    yield from _close(rec, st)
    st.scratch.pop(_KEY, None)


def _fields(text: str) -> dict[str, str]:
    out = {}
    compact = _COMPACT.get
    for part in text.split("|"):
        name, colon, val = part.rpartition(":")
        if not colon:
            continue
        key = compact(name)
        if key is None:
            key = _compact(name)
            if len(_COMPACT) < 4096:
                _COMPACT[name] = key
        if key.startswith("iteration"):
            continue
        out[key] = val.strip()
    return out


def _events(rec: dict, text: str, st: StreamState, supplement: Line | None = None) -> list[Event]:
    """The events of one record, in order (a list: ~6 per record, one record per parsed line);
    `supplement`: the line of a record's later piece, parsed alone (the record looked complete)."""
    # evidence: the joined record, not just its first physical line
    line: Line = rec["line"].with_text(text) if supplement is None else supplement
    step = rec["step"]
    f = _fields(text)
    out: list[Event] = []
    add = out.append
    event = line.event              # (called with the step directly: ~6 events per record, per parsed line)
    losses, vals = {}, {}
    for k, v in f.items():            # (one pass for both: ~11 fields per record)
        h = _FIELDS.get(k)
        if h is not None:
            vals[h] = v
        elif k.endswith("loss"):      # (no _FIELDS name ends so, 'lossscale' does not)
            losses[k] = num(v)
    seen = st.scratch.setdefault("mg_loss_names", set())
    skipped_now = num(vals.get("skipped"))
    # a record cut off before its loss fields (the log ends mid-line, or a paste broke it at a '|')
    # does not say the loss is gone: Megatron prints the losses before 'loss scale', 'grad norm' and
    # the iteration counters (megatron/training.py training_log), so a missing loss counts only when
    # the record reached one of them
    reached = any(k in vals for k in _AFTER_LOSSES)
    if supplement is None and reached:
        # judged here, once: a later piece of this record parsed alone (a wrap right after a '|')
        # brings its values, not a second judgement without the losses this text had
        rec["judged"] = True
        if not skipped_now:
            # a skipped iteration (fp16 overflow, Megatron's own optimizer) also drops the loss, but
            # then 'number of skipped iterations' says so
            for name in sorted(seen - set(losses)):
                # printed before, missing now: Megatron drops a loss whose average is not > 0 (NaN)
                add(event("loss", step, value=math.nan, name=_pretty(name), missing=True))
    elif not rec.get("judged"):       # a piece of a record broken at its '|'s: judged when it ends (_close)
        w = rec.setdefault("pieces", {"losses": set(), "line": None, "skipped": False})
        w["losses"].update(losses)
        w["skipped"] = w["skipped"] or bool(skipped_now)
        if reached and w["line"] is None:
            w["line"] = line
    for name, v in losses.items():
        seen.add(name)
        add(event("loss", step, value=v, name=_pretty(name)))
    if "grad_norm" in vals:
        add(event("grad_norm", step, value=num(vals["grad_norm"])))
    if "loss_scale" in vals:
        s = scale(vals["loss_scale"])
        if s is not None:
            add(event("loss_scale", step, value=s))
    # (each value read once: num(None) is None, as for a field the record does not have)
    tp = {}
    if (v := num(vals.get("iter_ms"))) is not None:
        tp["iter_ms"] = v
    elif (v := num(vals.get("iter_s"))) is not None:
        tp["iter_ms"] = v * 1000.0
    elif "iter_unit" in vals:
        v, _, unit = vals["iter_unit"].partition(" ")
        if num(v) is not None and unit.strip() in ("ms", "s"):
            tp["iter_ms"] = num(v) * (1.0 if unit.strip() == "ms" else 1000.0)
    for k in ("samples_per_sec", "tflops"):
        if (v := num(vals.get(k))) is not None:
            tp[k] = v
    if tp:
        if rec.get("total"):
            tp["total"] = rec["total"]          # train_iters: where the run is (detect/run_end.py)
        add(event("throughput", step, **tp))
    if "skipped" in vals or "nan_iters" in vals:
        sk = skipped_now
        nn = num(vals.get("nan_iters"))
        add(event("skipped", step, skipped=int(sk) if sk is not None else None,
                  nan_iters=int(nn) if nn is not None else None, per_interval=True))
    if (v := num(vals.get("lr"))) is not None:
        add(event("lr", step, value=v))
    return out


def _pretty(compact: str) -> str:
    return "lm loss" if compact == "lmloss" else compact


# A complete, healthy iteration line (has its lm loss, no skipped or nan iterations, nothing
# non-finite) is a steady metric line and may be sampled; wrapped pieces never are.
_NONZERO_COUNTER = compile_later(rb"iterations: +[1-9]")


def _healthy_iteration(raw: bytes) -> bool:
    return (b"lm loss" in raw and b"iteration " in raw and raw.rstrip().endswith(b"|")
            and not _NONZERO_COUNTER.search(raw) and no_nonfinite(raw.replace(b"of nan iterations", b"")))


# A missing 'lm loss' field is the NaN signal (Megatron prints a loss only when its average
# is > 0): the field before the loss (global batch size since v2.0, learning rate in v1.0) is
# then followed by 'loss scale'. A pattern for the absence, so the fast path needs no count
# of every record (megatron/training/training.py: training_log).
_LOSS_MISSING = compile_later(rb"(?:batch size: *[0-9]+|learning rate: *[-+.0-9Ee]+) *\| *loss scale:")

# A piece of a record a paste broke at its '|'s, ending before the losses: no 'lm loss' (the
# anchor) on it, so the sampler would never pick it, and the pieces after it (the loss, a NaN grad
# norm) would have no record start to join. A record's first piece ending right after its
# iteration counter or its consumed samples is such a piece, and is always read (a whole record
# ends with its counters; a pattern on the record's start only: ~5 % of a 64 MiB scan when it
# also looked at every 'learning rate: ... |').
_PIECE_BEFORE_LOSS = rb"iteration +[0-9]+/ *[0-9]+ \| *(?:consumed (?:samples|tokens): *[0-9]+ *\| *)?\r?$"

STEADY_GROUPS = (
    steady("megatron", *_PIECES, check=_healthy_iteration, anchor="lm loss",
           anomalies=(*NONFINITE_ANOMALIES, (_NONZERO_COUNTER.pattern, 0), (_LOSS_MISSING.pattern, 0),
                      (_PIECE_BEFORE_LOSS, HS_MULTILINE))),
)


# Megatron-LM's timers with --timing-log-option all (megatron/core/timers.py:
# Timers._get_all_ranks_time_string), and the default minmax layout (one `timer_spread` event per timer:
# the fastest and the slowest rank's time, no rank named; detect/rank_spread.py reads a report as one): 'times across ranks (ms):', then per timer
# '\n  {name}:' and one '\n     rank {rank:2d}: {ms:.2f}' line per rank. Each rank line is that
# rank's `timers` event ({name: ms}), so the slow-rank comparison works as for DeepSpeed's
# per-rank timer lines. The name and rank lines carry no literal of their own: they are
# continuations of the header (the block ends at the first line of another shape).
_ALL_RANKS_KEY = "mg_all_ranks"
_PP_KEY = "mg_pipeline_size"
# megatron/training/arguments.py: validate_args prints 'using world size: {}, data-parallel size: {}, ...
# pipeline-model-parallel size: {}' (older 'pipeline-model-parallel size: {} ' with the same words), and
# _print_args lists '  pipeline_model_parallel_size ............ {}'
_PP = compile_later(r"pipeline[-_]model[-_]parallel[ _]size\s*[:.]+\s*(\d+)")


@on("pipeline-model-parallel size", "pipeline_model_parallel_size")
def pipeline_size(line: Line, st: StreamState):
    m = _PP.search(line.text)
    if m:
        st.scratch[_PP_KEY] = int(m.group(1))
    return None
# (the indentation tells nothing the shape does not: a paste that lost it, or a time stripped in
# front of it with the spaces after it, still lists a name line then its rank lines)
_TIMER_NAME = compile_later(r"^\s{0,4}([A-Za-z][\w\- ]*?):\s*$")
# megatron/core/timers.py Timers._get_global_min_max_time_string: '\n    {}: ({:.2f}, {:.2f})' with the
# name padded by ljust(48, '.') (name + ' ' first)
_TIMER_MINMAX = compile_later(r"^\s*([A-Za-z][\w\-]*(?: [\w\-]+)*?)\s*\.*:\s*\(\s*(" + r"[-+]?\d+(?:\.\d+)?" + r"),\s*("
                              + r"[-+]?\d+(?:\.\d+)?" + r")\s*\)\s*$")
_TIMER_RANK = compile_later(r"^\s*rank\s+(\d+):\s+(" + r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?" + r")\s*$")


@on("times across ranks (ms):", "(min, max) time across ranks (ms):", continuation=(":",))
def all_ranks_times(line: Line, st: StreamState):
    text = line.text
    if "across ranks (ms):" in text:
        if (st.scratch.get(_PP_KEY) or 1) > 1:
            # with pipeline stages the ranks do different work by design (the last stage computes
            # the LM head and the loss), so their times are not comparable
            st.scratch.pop(_ALL_RANKS_KEY, None)
            return None
        # the (min, max) layout names no rank: its lines are read as one report of spreads
        st.scratch[_ALL_RANKS_KEY] = {"name": None, "last": line.lineno,
                                      "minmax": line.lineno if "(min, max)" in text else None}
        return None
    blk = st.scratch.get(_ALL_RANKS_KEY)
    if not blk or not armed_within(blk["last"], line, 1):
        st.scratch.pop(_ALL_RANKS_KEY, None)
        return None
    blk["last"] = line.lineno
    if blk["minmax"] is not None:
        m = _TIMER_MINMAX.match(text)
        if m is None:
            st.scratch.pop(_ALL_RANKS_KEY, None)
            return None
        lo, hi = num(m.group(2)), num(m.group(3))
        if lo is None or hi is None:
            return None
        return line.event("timer_spread", step=st.step_of(None), timer=m.group(1).strip(), min_ms=lo, max_ms=hi,
                          report=blk["minmax"])
    m = _TIMER_RANK.match(text)
    if m and blk["name"]:
        v = num(m.group(2))
        if v is None:
            return None
        ev = line.event("timers", step=st.step_of(None), rank=int(m.group(1)))
        ev.data = {blk["name"]: v}
        ev.text = f"{blk['name']}: {line.text.strip()}"     # the timer's name is on its own line above
        return ev
    m = _TIMER_NAME.match(text)
    if m:
        blk["name"] = m.group(1).strip()
        return None
    st.scratch.pop(_ALL_RANKS_KEY, None)
    return None


# Megatron's checkpoint save time: megatron/training/checkpointing.py save_checkpoint runs under
# timers('save-checkpoint', log_level=0) and training.py logs it with timers.log(['save-checkpoint'])
# after each save: in the default min/max layout (megatron/core/timers.py
# _get_global_min_max_time_string) a line '    save-checkpoint ....: ({min:.2f}, {max:.2f})'
# under '(min, max) time across ranks (ms):', in older ones 'time (ms) | save-checkpoint: {ms:.2f}'.
_SAVE = compile_later(r"save-checkpoint[ .]*:\s*(?:\(\s*([\d.]+),\s*([\d.]+)\s*\)|([\d.]+))")


@on("save-checkpoint")
def checkpoint_save_time(line: Line, st: StreamState):
    m = _SAVE.search(line.text)
    if m is None:
        return None
    ms = num(m.group(2) or m.group(3))
    if ms is None or ms <= 0:
        return None
    return line.event("checkpoint_save", step=st.step_of(None), ms=ms)


# Megatron-core's StragglerDetector (megatron/core/utils.py StragglerDetector.report, rank 0 only, with
# --log-straggler): '[2026-12-06 23:01:02] | MnRtt/Rnk: 101.20ms/3 | MxRtt/Rnk: 310.87ms/1 | MnPwr/Rnk: ...
# | MnDRtt/Rnk: 1.02ms/0 | MxDRtt/Rnk: 2.50ms/5 | MnEtpt/Rnk: ...TF/1 | MxEtpt/Rnk: ...TF/3' (each value
# _ValueWithRank.__str__: f"{value:.2f}{unit}/{rank}"). Rtt is a rank's own forward time per iteration,
# DRtt its get_batch time: the fastest and the slowest rank of each, named.
_SPREAD = compile_later(r"\b(M[nx]D?Rtt)/Rnk:\s*(" + r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?" + r")ms/(\d+)")


@on("MxRtt/Rnk:")
def straggler_report(line: Line, st: StreamState):
    got = {m.group(1): (num(m.group(2)), int(m.group(3))) for m in _SPREAD.finditer(line.text)}
    out = []
    for metric, key in (("compute", "Rtt"), ("data", "DRtt")):
        lo, hi = got.get("Mn" + key), got.get("Mx" + key)
        if lo and hi and lo[0] is not None and hi[0] is not None:
            out.append(line.event("rank_spread", step=st.step_of(None), metric=metric, min_ms=lo[0],
                                  min_rank=lo[1], max_ms=hi[0], max_rank=hi[1]))
    return out or None
