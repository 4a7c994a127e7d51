"""Part V: silent numbers and LR trouble with no end line, provoked for real on the CPU.

Every line below is copied from a run of the real DeepSpeed 0.19 engine made here (a 2-layer MLP,
gloo, DS_ACCELERATOR=cpu, bf16, ZeRO-2 or 0, gradient_clipping 1.0) whose script printed its own step
lines in the wordings users write; whole captures are golden fixtures (fixtures/excerpts/gen_v_*.log).
"""
from __future__ import annotations

from dsdoctor.events import Event
from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()


def events(text: str, kind: str | None = None) -> list[Event]:
    return [e for e in events_from_text(text) if kind is None or e.kind == kind]


def top(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    fs = [f for f in d.finish() if f.severity != "info"]
    return fs[0] if fs else None


# ---------------------------------------------------------------- a script's own loss print, colon and space forms
LR30 = {   # AdamW at lr 30: 0.5036 at step 1, ~1e13-1e16 from step 2 on, exit 0 (the same run, five print styles)
    "rank=0 step={s} loss: {v}": "eq",
    "step {s} | loss: {v} | lr: 3.000e+01": "pipe",
    "Step {s}/40, Loss: {v}, LR: 3.000e+01": "slash",
    "[step {s}] loss {v} lr: 3.000e+01": "bracket",
    "Epoch 0 Step {s} loss {v}": "epoch",
}
VALUES = ("0.5036", "13895268827136.0000", "7490715022000128.0000", "2995076116512768.0000",
          "871556305649664.0000", "438406102384640.0000", "10891184570368.0000")


def test_colon_and_space_loss_prints_are_read():
    for fmt in LR30:
        got = events(fmt.format(s=2, v="13895268827136.0000") + "\n", "loss")
        assert [(e.step, e.data["value"]) for e in got] == [(2, 13895268827136.0)], fmt
    lr = events("[step 1] loss 0.5036 lr: 3.000e+01\n", "lr")
    assert [e.data["value"] for e in lr] == [30.0]


def test_blown_up_loss_in_every_print_style():
    for fmt in LR30:
        text = "".join(fmt.format(s=s, v=v) + "\n" for s, v in enumerate(VALUES, 1))
        f = top(text)
        assert f is not None and f.rule == "loss-diverged" and f.steps[0] == 2, fmt


def test_colon_forms_leave_the_other_readers_alone():
    # a non-finite loss behind a step number stays formats/deepspeed.py loose_loss's (one event: the
    # '5 loss' literal used to hide 'loss: nan' from the `re` scan, whose matches do not overlap)
    for line in ("step=5 loss: nan", "Step 5 Loss nan", "[step 5] loss nan", "step 5 | loss: nan"):
        got = events(line + "\n", "loss")
        assert len(got) == 1 and got[0].data["value"] != got[0].data["value"], line
    # Megatron's record, whole and wrapped at 120 columns: one loss, megatron.py's
    meg = (" iteration       10/     100 | consumed samples:          640 | elapsed time per iteration (ms): 812.3 |"
           " learning rate: 1.000E-04 | global batch size:    64 | lm loss: 2.300000E+00 | loss scale: 1.0 |\n")
    assert [e.data["value"] for e in events(meg, "loss")] == [2.3]
    assert [e.data["value"] for e in events(meg[:120] + "\n" + meg[120:], "loss")] == [2.3]
    # the pipeline engine's line stays its own
    assert len(events("steps: 12 loss: 2.3456 iter time (s): 1.234 samples/sec: 51.9\n", "loss")) == 1
    # an evaluation loss and a loss with no step are not training steps
    assert not events("Step 5 | eval loss: 2.3\n", "loss")
    assert not events("Loss: 0.5 after warm-up\n", "loss")


def test_healthy_prints_raise_nothing():
    text = ("step 1 | loss: 0.5036 | lr: 1.000e-03\nstep 2 | loss: 0.3649 | lr: 1.000e-03\n"
            "step 3 | loss: 0.4300 | lr: 1.000e-03\n")
    assert top(text) is None


def test_script_end_line():
    assert [e.kind for e in events("training done: 150 steps\n")] == ["script_end"]
    assert events("[INFO|trainer.py:2040] >> \n", "script_end") == []
    assert [e.kind for e in events("Training completed. Do not forget to share your model on huggingface.co/models =)\n",
                                   "script_end")] == ["script_end"]
    assert events("training failed after 3 steps\n", "script_end") == []
