"""Part V: silent numbers and LR trouble with no end line, provoked for real on the CPU.

Every line below is copied from a run of the real DeepSpeed 0.19 engine made here (a 2-layer MLP,
gloo, DS_ACCELERATOR=cpu, bf16, ZeRO-2 or 0, gradient_clipping 1.0) whose script printed its own step
lines in the wordings users write; whole captures are golden fixtures (fixtures/excerpts/gen_v_*.log).
"""
from __future__ import annotations

from dsdoctor.events import Event
from dsdoctor.pipeline import Diagnoser
from diagnose_text import RULES, events, top


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


def test_kubectl_prefix_before_a_broken_megatron_record(tmp_path):
    # a record broken at its '|'s behind kubectl's prefix, read from a file: the 'loss scale:' piece must still
    # continue the record (a '] loss' trigger made it a line of its own: "No problems found", the NaN lost)
    # (megatron/training/training.py training_log's fields, core_v0.1x's 'elapsed time per iteration: X ms')
    import json

    from cli_invoke import invoke_cli
    rec = ("iteration 10/100 | elapsed time per iteration: 812.3 ms |", "learning rate: 1.000E-04 | global batch size: 64 |",
           "loss scale: 1.0 | grad norm: nan |", "number of skipped iterations: 0 | number of nan iterations: 0", "",
           "iteration 11/100 | elapsed time per iteration: 810.1 ms |")
    log = tmp_path / "pod.log"
    log.write_text("".join(f"[pod/trainer-worker-0/pytorch] {ln}\n" for ln in rec))
    doc = json.loads(invoke_cli(["analyze", "--json", str(log)]).stdout)
    assert doc["findings"] and doc["findings"][0]["category"] == "nan_loss", doc["findings"]


# ---------------------------------------------------------------- numbers that go wrong without a NaN
def _lines(fmt: str, rows) -> str:
    return "".join(fmt.format(*r) + "\n" for r in rows)


FROZEN = [0.5036, 0.3672, 0.4365, 0.4512, 0.3318, 0.3971, 0.3524, 0.1951, 0.3355, 0.4386, 0.4875, 0.4156]


def test_frozen_model_loss_scatters_with_grad_norm_zero():
    # the model frozen but a module the loss does not use, the inputs made to require grad (ZeRO stage 0:
    # ZeRO-2 refuses such a model with an IndexError); the loss moves with the batch, never down
    text = _lines("step {} | loss: {} | lr: 1.000e-03 | grad_norm: 0", enumerate(FROZEN, 1))
    f = top(text)
    assert f is not None and f.rule == "no-gradient-flows" and "scatters" in f.title, f and f.title
    # the same losses with a real grad norm: not this (a noisy loss at a plateau)
    text = _lines("step {} | loss: {} | lr: 1.000e-03 | grad_norm: 0.41", enumerate(FROZEN, 1))
    assert top(text) is None
    # a grad norm of 0 under a loss that falls (an integration reporting 0 while it trains): not this
    falling = [0.5036 * 0.8 ** i for i in range(12)]
    text = _lines("step {} | loss: {:.4f} | lr: 1.000e-03 | grad_norm: 0", enumerate(falling, 1))
    assert top(text) is None or top(text).rule != "no-gradient-flows"


GN = [0.794, 0.6593, 0.7521, 0.6076, 0.5642]


def test_grad_norm_grown_a_thousandfold_under_clipping():
    rows = list(zip(range(1, 6), [0.5036, 0.3660, 0.4352, 0.4487, 0.3129], GN))
    rows += [(58, 0.2229, 363), (59, 0.2179, 513), (60, 0.1840, 459.2), (61, 0.1692, 873.2), (62, 0.2154, 942.4),
             (63, 0.2058, 1311), (64, 0.1763, 1542), (65, 0.2616, 2346), (66, 0.1317, 2099)]
    f = top(_lines("rank=0 step={} loss: {} grad_norm={}", rows))
    assert f is not None and f.rule == "grad-norm-exploding" and f.steps[0] == 61, f and f.title
    # a spike that settles within a few readings
    rows = list(zip(range(1, 6), [0.5036, 0.3660, 0.4352, 0.4487, 0.3129], GN))
    rows += [(40, 0.3732, 1.095), (41, 0.3328, 7042), (42, 0.3541, 9961), (43, 0.2295, "1.018e+04"),
             (44, 0.3266, "1.59e+04"), (45, 0.1098, 0.5025), (46, 0.2749, 0.8456), (47, 0.2023, 0.6222)]
    assert top(_lines("rank=0 step={} loss: {} grad_norm={}", rows)) is None


def test_loss_collapsed_within_a_hundred_steps():
    rows = [(1, 2.3707), (2, 2.3433), (3, 2.2670), (4, 2.2443), (5, 2.2443), (66, 0.0437), (67, 0.0174),
            (68, 0.0016), (69, 0.0187), (70, 0.0012)]
    f = top(_lines("Step {}/200, Loss: {}, LR: 1.000e-02", rows))
    assert f is not None and f.rule == "loss-collapsed-early" and f.category == "config_error", f and f.title
    # the same fall after 1,000 steps: a model that learned its task
    late = [(s + 1000 if s > 5 else s, v) for s, v in rows]
    assert top(_lines("Step {}/2000, Loss: {}, LR: 1.000e-02", late)) is None
    # a loss that blew up at step 2 and falls from 1e15 (AdamW at lr 30): no steady start, no collapse
    rows = [(1, 0.5036), (2, 8.7e14), (3, 9.1e14), (4, 8.2e14), (5, 8.9e14), (6, 1e12), (7, 1.1e12), (8, 1e12),
            (9, 9e11), (10, 1e12)]
    f = top(_lines("rank=0 step={} loss: {}", rows))
    assert f is None or f.rule != "loss-collapsed-early"


# ---------------------------------------------------------------- LR schedules that end with no end line
def _ds_lr(step: int, lr: float) -> str:
    # runtime/engine.py _report_progress -> log_dist(f"step={step}, skipped={skipped}, lr={lr}, mom={mom}")
    return (f"[2026-12-06 17:12:30,411] [INFO] [logging.py:123:log_dist] [Rank 0] step={step}, skipped=0, "
            f"lr=[{lr!r}], mom=[(0.9, 0.999)]\n")


def test_range_test_named_in_the_config_print():
    head = "[2026-12-06 17:12:21,040] [INFO] [config.py:678:print]   scheduler_name ............... LRRangeTest\n"
    lrs = "".join(_ds_lr(s, 0.0001 * (1 + s / 50)) for s in range(10, 310, 10))
    f = top(head + lrs)
    assert f is not None and f.rule == "lr-range-test-left-on", f and f.title
    # the same rise under WarmupLR with no end: a log cut mid-warm-up says nothing
    assert top(head.replace("LRRangeTest", "WarmupLR") + lrs) is None


def test_warmup_still_rising_when_the_script_says_done():
    head = "[2026-12-06 17:13:02,101] [INFO] [config.py:678:print]   scheduler_name ............... WarmupLR\n"
    lrs = "".join(_ds_lr(s, 0.001 * s / 1000) for s in range(10, 160, 10))
    assert top(head + lrs) is None                           # cut mid-run: nothing to say
    f = top(head + lrs + "training done: 150 steps\n")
    assert f is not None and f.rule == "lr-warmup-longer-than-run", f and f.title
    # a warm-up that ended (constant LR after 50 steps), then 'training done': healthy
    lrs = "".join(_ds_lr(s, 0.001 * min(1.0, s / 50)) for s in range(10, 210, 10))
    assert top(head + lrs + "training done: 200 steps\n") is None


# ---------------------------------------------------------------- the doctor's lint writes no made-up number
def test_doctor_missing_total_num_steps_has_no_placeholder_patch(tmp_path):
    import json

    from cli_invoke import invoke_cli
    cfg = tmp_path / "ds.json"
    cfg.write_text(json.dumps({"train_micro_batch_size_per_gpu": 8, "steps_per_print": 10,
                               "optimizer": {"type": "AdamW", "params": {"lr": 0.001}},
                               "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_num_steps": 100}}}))
    res = invoke_cli(["doctor", "--json", "-c", str(cfg)])
    f = next(x for x in json.loads(res.stdout)["findings"] if x["rule"] == "cfg-scheduler-missing-param")
    assert not any(x.get("config_patch") for x in f["fixes"]), f["fixes"]
    assert "train_batch_size" in f["fixes"][0]["advice"]        # how to compute it, as the log rule says


def test_warmup_still_rising_when_the_watched_command_exits_0():
    # `dsdoctor run`: the hooks' LR per step and the command's exit code (no end line in the console)
    evs = [Event("lr", rank=0, step=s, data={"value": 0.001 * s / 1000}) for s in range(1, 151)]
    d = Diagnoser(rules=RULES)
    d.feed_all(evs + [Event("exit", data={"exitcode": 0})])
    assert [f.rule for f in d.finish() if f.severity != "info"][:1] == ["lr-warmup-longer-than-run"]
    d = Diagnoser(rules=RULES)
    d.feed_all(evs + [Event("exit", data={"exitcode": 1})])
    assert "lr-warmup-longer-than-run" not in [f.rule for f in d.finish()]
