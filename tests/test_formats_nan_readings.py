"""NaN/Inf losses that no loss value shows plainly, and the order of a NaN and an fp16 loss-scale
collapse: HF Trainer's logging_nan_inf_filter (loss 0.0), a script's own 'Loss is nan, stopping
training', torch's clip_grad_norm_(error_if_nonfinite=True), DeepSpeed's 'already at minimum'.

Fast: text in, no DeepSpeed needed.
"""
from __future__ import annotations

from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()


def findings(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return [f for f in d.finish() if f.severity != "info"]


def hf(loss, gn, n=1, epoch0=0.0):
    return "".join(f"{{'loss': {loss}, 'grad_norm': {gn}, 'learning_rate': 2e-05, 'epoch': {epoch0 + i / 100:.2f}}}\n"
                   for i in range(n))


def test_zero_loss_and_zero_grad_norm_step_after_step():
    (f,) = findings(hf(0.0, 0.0, n=6))
    assert f.rule == "nan-loss-zero-loss-zero-grad" and f.category == "nan_loss"
    assert "'loss': 0.0" in f.evidence[0].text and "6 logged steps" in f.summary


def test_a_loss_that_falls_to_zero_with_gradients_is_not_nan():
    assert findings(hf(0.0, 0.0012, n=6)) == []
    assert findings(hf(1.9, 0.8, n=3) + hf(0.0, 0.0, n=2) + hf(1.8, 0.7, n=3)) == []


def test_script_stops_on_nan_loss():
    # facebookresearch/detr engine.py train_one_epoch: print("Loss is {}, stopping training".format(loss_value))
    log = ("[2026-12-05 10:00:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step=100, skipped=0, lr=[1e-05], mom=[(0.9, 0.95)]\n"
           "Loss is nan, stopping training\n{'loss': nan}\n")
    top = findings(log)[0]
    assert top.rule.startswith("nan-loss") and top.evidence[0].text == "Loss is nan, stopping training"
    assert findings("Loss is infinite on purpose\nthe loss is inference-time only\n") == []


def test_a_scripts_key_value_line_with_loss_nan_before_the_next_key():
    log = "".join(f"epoch 0 step {s} loss {v} lr 3.0e-04\n" for s, v in ((100, "3.912"), (200, "3.511"), (300, "nan"), (400, "nan")))
    assert findings(log)[0].category == "nan_loss"
    # a word after 'loss nan' that is no key with a value is not read as the loss's
    assert findings("we saw loss nan handling in the docs\nthe loss inf guard is off\n") == []


def test_clip_grad_norm_error_if_nonfinite():
    # torch/nn/utils/clip_grad.py: clip_grad_norm_(..., error_if_nonfinite=True)
    log = ("Traceback (most recent call last):\n"
           '  File "train.py", line 90, in <module>\n'
           "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, error_if_nonfinite=True)\n"
           "RuntimeError: The total norm of order 2.0 for gradients from `parameters` is non-finite, so it cannot be "
           "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set `error_if_nonfinite=False`\n")
    assert findings(log)[0].category == "nan_loss"


def overflows(start, n):
    out, sc = [], start
    for _ in range(n):
        out.append(f"[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: {sc}, reducing to {max(sc // 2, 1)}\n")
        sc = max(sc // 2, 1)
    return "".join(out)


def test_collapse_then_nan_losses_names_the_collapse():
    log = hf(2.1, 0.9, n=3) + overflows(65536, 17) + hf(0.0, "nan", n=5, epoch0=0.2)
    fs = findings(log)
    assert fs[0].rule == "loss-scale-collapse-before-nan"
    assert any(f.category == "nan_loss" and f.consequence_of == fs[0].rule for f in fs)


def test_nan_then_collapse_names_the_nan():
    log = hf(2.1, 0.9, n=3) + hf("nan", "nan", n=1, epoch0=0.1) + overflows(65536, 17)
    fs = findings(log)
    assert fs[0].category == "nan_loss"
    assert any(f.rule == "loss-scale-collapse" and f.consequence_of == fs[0].rule for f in fs)


def test_loss_scale_at_minimum_is_quoted_first():
    log = overflows(65536, 16) + (
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3/dist-packages/deepspeed/runtime/fp16/loss_scaler.py", line 258, in update_scale\n'
        "    raise Exception(\n"
        "Exception: Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.\n")
    top = findings(log)[0]
    assert top.category == "loss_scale_collapse" and "already at minimum" in top.evidence[0].text


def test_the_same_loss_with_zero_grad_norm_is_no_gradient_not_nan():
    from dsdoctor.context import Context
    from dsdoctor.pipeline import Diagnoser
    from dsdoctor.rules import RuleSet
    from dsdoctor.sources.logs import events_from_text
    rows = "".join(f"{{'loss': 10.8231, 'grad_norm': 0.0, 'learning_rate': 2e-05, 'epoch': 0.0{i}}}\n" for i in range(1, 7))
    d = Diagnoser(Context.from_config(None), RuleSet.load())
    d.feed_all(events_from_text(rows))
    fs = d.finish()
    assert fs[0].rule == "no-gradient-flows" and len(fs[0].evidence) == 2
    assert not [f for f in fs if f.category == "nan_loss"]
