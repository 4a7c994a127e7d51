"""Recogniser: a training script's own step line, printed as text.

    print(f"rank={rank} step={step} loss={loss:.4f} lr={lr:.3e}")      -> 'rank=0 step=5 loss=0.4472 lr=6.990e-04'
    logger.info(f"step: {step}, loss={loss}, lr={lr}, grad_norm={gn}")
    print(f"Epoch 0 | Step 80 | Loss = 2.31 | grad norm = 1.2")
    print(f"rank={rank} step={step} loss: {loss.item():.4f}")          -> 'rank=0 step=3 loss: 0.5912'
    print(f"Step {step}/{total}, Loss: {loss:.4f}, LR: {lr:.3e}")
    print(f"[step {step}] loss {loss:.4f}")   print(f"Epoch {e} Step {step} loss {loss:.4f}")

A line is a step line when it names a step (step/global_step/iter/iteration with a number) and,
after it, a loss with '=', ':' or a space (the triggers keep lowercase 'loss:' off Megatron's
records: see below). The loss, and an lr / learning_rate and a grad norm on the same
line, become the same events as a JSON-lines record's (formats/jsonlog.py), so the LR schedule,
divergence and grad-norm detectors read scripts that log in plain text. Only finite losses:
'loss: nan' is formats/deepspeed.py loose_loss's. Lines other recognisers own are left to them
(HF metric dicts, JSON records, Megatron's 'iteration N/ M |', the pipeline engine's 'iter time
(s)'), and so are evaluation losses.
"""
from __future__ import annotations

import math

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_N = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_STEP = compile_later(r"(?i)\b(?:global[_ ]?step|step|iter(?:ation)?)\s*[:=#]?\s*\[?(\d+)(?:\s*/\s*\d+)?\]?(?![\d.])")
_SEP = r"(?:\s*[:=]\s*|\s+)"        # 'loss=0.5', 'loss: 0.5', 'loss 0.5'
_LOSS = compile_later(r"(?i)(?:^|[\s,|(\[{;])(?P<pre>[A-Za-z]+[ _])?loss" + _SEP + r"(?:tensor\()?(?P<v>" + _N
                      + r")(?![\w.])")
_LR = compile_later(r"(?i)\b(?:lr|learning[_ ]rate)" + _SEP + r"\[?(" + _N + r")(?![\w.])")
_GN = compile_later(r"(?i)\bgrad(?:ient)?[_ ]?norm" + _SEP + r"(" + _N + r")(?![\w.])")
_KV_STEP = compile_later(r"(?<![\w.])(?:global_)?step=(\d+)(?![\w.])")
_RANK = compile_later(r"(?i)\brank\s*[:=]?\s*(\d{1,6})\b")
# the training loss's own names: not an evaluation loss, nor one of an RL loop's several losses
# (DeepSpeed-Chat step 3 'Step: 0 | PPO Epoch: 1 | Actor Loss: 0.0099 | Critic Loss: 0.2309', which
# go negative and sit near 0 by design)
_TRAIN = ("", "train", "training", "total", "avg", "average", "mean", "running", "batch", "lm", "smoothed")
_OWNED = ("{'", '{"', "iter time (s)", "lm loss:", "| consumed samples")


# A bare 'loss:' is not a trigger: it is a continuation literal of Megatron's wrapped iteration
# record (formats/megatron.py), and a literal that triggers is no longer looked for as one, so the
# record's pieces would stop reaching megatron.py (perturb_realworld.py wrap120). The lowercase
# colon form is found by what comes before 'loss' in a script's print instead: a step number
# ('step=5 loss: 0.59'), '|', ',', '-' (Megatron's is 'lm loss:'); the space form by the digit after it
# ('[step 5] loss 0.59', 'Epoch 0 Step 5 loss 0.59'). Nothing that a prefix puts before a wrapped record's
# 'loss scale:' piece ('[pod/trainer-worker-0/pytorch] loss scale: 1.0': '] loss' broke that, perturb kubectl).
_DIGIT_LOSS = tuple(f"{d} {w}:" for d in "0123456789" for w in ("loss", "Loss"))
_LOSS_DIGIT = tuple(f"{w} {d}" for d in "0123456789" for w in ("loss", "Loss"))


@on("loss=", "loss =", "Loss=", "Loss =", "LOSS=", "Loss:", "LOSS:", "| loss:", ", loss:", "- loss:",
    *_DIGIT_LOSS, *_LOSS_DIGIT)
def script_step(line: Line, st: StreamState):
    t = line.text
    if len(t) > 400 or t[:1] == "│" or any(o in t for o in _OWNED):
        # ('│': a variable of a rich traceback's locals panel, "│ │    msg = 'step 11/30 loss=1.65'  │ │")
        return None
    ml = _LOSS.search(t)
    if ml is None:
        return None
    pre = (ml.group("pre") or "").strip(" _").lower()
    if pre not in _TRAIN:
        return None
    ms = _STEP.search(t, 0, ml.start() + 1)
    if ms is None:
        # a key=value logger that sorts its keys (structlog's ConsoleRenderer, sort_keys by default:
        # 'train_step    loss=1.17 lr=0.001 step=5') puts the step after the loss
        ms = _KV_STEP.search(t, ml.end())
        if ms is None:
            return None
    loss = float(ml.group("v"))
    if not math.isfinite(loss):
        return None
    step = int(ms.group(1))
    rank = line.rank
    if rank is None and (mr := _RANK.search(t, 0, ms.start() + 1)):
        rank = int(mr.group(1))
    st.last_step[rank] = step
    if rank is not None:
        st.last_step[None] = step
    # the grad norm before the loss, as HF's dicts give them: detect/nonfinite.py pairs a loss with the
    # step's grad norm read just before it (a grad norm of exactly 0 next to the loss)
    out = []
    m = _GN.search(t)
    if m:
        out.append(line.event("grad_norm", step=step, rank=rank, value=float(m.group(1))))
    out.append(line.event("loss", step=step, rank=rank, value=loss, name="loss"))
    m = _LR.search(t)
    if m and math.isfinite(v := float(m.group(1))):
        out.append(line.event("lr", step=step, rank=rank, value=v))
    return out


# A script's own last word, which torchrun and a plain `python` do not follow with an end line of
# their own ('training done: 150 steps'); transformers trainer.py _inner_training_loop logs
# 'Training completed. Do not forget to share your model on huggingface.co/models =)'. Only the LR
# schedule reads it (detect/lr.py: a warm-up still rising at the end is longer than the run).
@on("training done", "Training done", "Training complete", "training complete", "Training finished",
    "training finished", "Finished training", "finished training", "Done training", "done training")
def script_end(line: Line, st: StreamState):
    t = line.text
    low = t.lower()
    if len(t) > 200 or any(w in low for w in ("error", "fail", "abort", "not done", "not complete", "not finished",
                                              "n't ")):
        return None
    return line.event("script_end", step=st.step_of(line.rank))


# A script's own per-rank phase times, printed as text (the timing a user adds when a run is slow):
#   print(f"rank {rank} | iter {it} | fwd {t_fwd:.3f}s | bwd {t_bwd:.3f}s | optim {t_opt:.3f}s")
#   print(f"step {step} | loss {loss:.4f} | step_time {t:.3f}s | data_time {t_data:.3f}s")   (under '[rank3]:')
# They become the same `timers` event as DeepSpeed's wall_clock_breakdown line (formats/deepspeed.py), named as
# detect/throughput.py _PHASES knows them (fwd_ms, bwd_ms, data_ms, step_ms = the optimizer step), so the slow-rank
# comparison reads them. The whole iteration's time (step_time, iter_time) is no phase: every rank waits for the
# slowest one inside it. A line needs a rank (its prefix or 'rank N') and two phase times with a unit, or one
# on a line that names its step.
_PHASE_TIME = compile_later(r"(?i)(?<![\w.])(fwd|forward|bwd|backward|data(?:[_ ]?(?:load(?:ing)?|wait))?|"
                            r"opt(?:im(?:izer)?)?)(?:[_ ](?:time|ms))?\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(ms|s)(?![\w.])")
_PHASE_KEY = {"f": "fwd_ms", "b": "bwd_ms", "d": "data_ms", "o": "step_ms"}


# (not 'fwd:': DeepSpeed's own steady timer line holds it, '[Rank 0] time (ms) | fwd: 110.0 | bwd: ...', and a
# literal of this handler would keep those lines from being sampled, tests/test_sampling.py)
@on("fwd ", "fwd=", "fwd_time", "forward_time", "forward ", "forward=", "data_time", "data_wait", "data_load", "data ",
    "data=", "bwd ", "bwd_time", "backward_time")
def script_phase_times(line: Line, st: StreamState):
    t = line.text
    if len(t) > 400 or "time (ms)" in t or t[:1] == "│" or any(o in t for o in _OWNED):
        return None
    vals: dict[str, float] = {}
    for m in _PHASE_TIME.finditer(t):
        key = _PHASE_KEY[m.group(1)[0].lower()]
        v = float(m.group(2)) * (1.0 if m.group(3).lower() == "ms" else 1000.0)
        vals.setdefault(key, round(v, 3))
    ms = _STEP.search(t)
    if not ({"fwd_ms", "data_ms"} & vals.keys()) or (len(vals) < 2 and ms is None):
        return None                 # (one phase time alone only on a step's own line)
    # the rank the line itself names wins over its prefix's (srun's '0: ' or one '[rank3]:' put before
    # every line of a file that holds all ranks' prints), as formats/deepspeed.py timers does
    mr = _RANK.search(t)
    rank = int(mr.group(1)) if mr else line.rank
    if rank is None:
        return None
    step = int(ms.group(1)) if ms else st.step_of(rank)
    ev = line.event("timers", step=step, rank=rank)
    ev.data = vals          # {timer_name: ms}, as formats/deepspeed.py timers
    return ev
