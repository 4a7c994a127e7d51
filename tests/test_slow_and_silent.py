"""Part U: slow runs and silent training trouble (no traceback), provoked for real on the CPU.

The log lines below are copied from runs of the real DeepSpeed 0.19 engine made here (a 2-layer
MLP, gloo, DS_ACCELERATOR=cpu): the script's own step lines, DeepSpeed's steps_per_print and
engine-config lines. Whole captures are golden fixtures (fixtures/excerpts/gen_u_*.log).
"""
from __future__ import annotations

from dsdoctor.detect.lr import LRScheduleDetector
from dsdoctor.detect.throughput import find_drop
from dsdoctor.events import Event
from diagnose_text import events, findings


def _ds_lr(step: int, lr: float) -> str:
    # runtime/engine.py _report_progress -> log_dist(f"step={step}, skipped={skipped}, lr={lr}, mom={mom}")
    return (f"[2026-12-06 13:32:17,036] [INFO] [logging.py:123:log_dist] [Rank 0] step={step}, skipped=0, "
            f"lr=[{lr!r}], mom=[(0.9, 0.999)]")


# ---------------------------------------------------------------- a script's own step line
def test_script_step_line_gives_loss_lr_and_grad_norm():
    evs = events("rank=1 step=41 loss=0.2458 lr=1.000e-03 grad_norm=6.93e+05\n")
    by = {e.kind: e for e in evs}
    assert by["loss"].data["value"] == 0.2458 and by["loss"].step == 41 and by["loss"].rank == 1
    assert by["lr"].data["value"] == 1e-3 and by["grad_norm"].data["value"] == 6.93e5


def test_script_step_line_wordings():
    for line, step, loss in (("step: 5, loss=0.4472, lr=6.99e-04", 5, 0.4472),
                             ("Epoch 0 | Step 80 | Loss = 2.31 | grad_norm = 1.2", 80, 2.31),
                             ("Step 3/100 loss=1.5", 3, 1.5),
                             ("[iter 12] train_loss=0.75", 12, 0.75)):
        got = events(line + "\n", "loss")
        assert [(e.step, e.data["value"]) for e in got] == [(step, loss)], line


def test_script_step_line_leaves_other_lines_alone():
    # evaluation losses, a line without a step, HF's dict and Megatron's iteration line (their own readers)
    assert not events("step 10 eval loss = 2.3\n", "loss")
    assert not events("step=5 val_loss=2.3\n", "loss")
    assert not events("loss=0.5 after warm-up\n", "loss")
    hf = "{'loss': 0.4472, 'grad_norm': 1.2, 'learning_rate': 6.99e-04, 'epoch': 0.1}\n"
    assert len(events(hf, "loss")) == 1
    meg = (" iteration       10/     100 | consumed samples:          640 | elapsed time per iteration (ms): 812.3 |"
           " learning rate: 1.000E-04 | global batch size:    64 | lm loss: 2.300000E+00 | loss scale: 1.0 |\n")
    assert len(events(meg, "loss")) == 1
    # 'loss: ' is not a trigger: a piece of Megatron's record wrapped at 120 columns must reach megatron.py
    wrapped = meg[:120] + "\n" + meg[120:]
    assert [e.data["value"] for e in events(wrapped, "loss")] == [2.3]
    # 'loss: nan' stays loose_loss's: one event
    assert len(events("step=5 loss: nan\n", "loss")) == 1


# ---------------------------------------------------------------- engine config facts
def test_scheduler_params_and_client_scheduler_lines():
    text = ("[2026-12-06 13:33:48,290] [INFO] [logging.py:123:log_dist] [Rank 0] DeepSpeed using client LR scheduler\n"
            "[2026-12-06 13:33:48,313] [INFO] [config.py:678:print]   scheduler_name ............... WarmupDecayLR\n"
            "[2026-12-06 13:33:48,314] [INFO] [config.py:678:print]   scheduler_params ............. "
            "{'warmup_min_lr': 0, 'warmup_max_lr': 0.001, 'warmup_num_steps': 10, 'total_num_steps': 120}\n")
    ctx = events(text, "context")
    assert {"lr_scheduler_source": "client"} in [e.data for e in ctx]
    assert any(e.data.get("total_num_steps") == 120 for e in ctx)
    fs = findings(text)
    assert fs[0].rule == "lr-config-scheduler-ignored" and fs[0].category == "lr_schedule"


def test_config_scheduler_alone_is_quiet():
    text = ("[2026-12-06 13:32:16,758] [INFO] [logging.py:123:log_dist] [Rank 0] DeepSpeed using configured LR "
            "scheduler = WarmupLR\n"
            "[2026-12-06 13:33:48,313] [INFO] [config.py:678:print]   scheduler_name ............... WarmupLR\n")
    assert not [f for f in findings(text) if f.severity != "info"]


# ---------------------------------------------------------------- LR read every steps_per_print steps
def _decay_then_floor(total: int, every: int, last: int, floor: float = 0.0) -> str:
    lines = []
    for s in range(0, last + 1, every):
        lr = 1e-3 * s / 10 if s < 10 else max(floor, 1e-3 * (total - s) / (total - 10))
        lines.append(_ds_lr(s, lr))
    return "\n".join(lines) + "\n"


def test_lr_stuck_read_every_5_steps():
    # WarmupDecayLR total_num_steps 40 in a 120-step run, steps_per_print 5: 16 readings at 0
    fs = findings(_decay_then_floor(40, 5, 120))
    assert fs[0].rule == "lr-decayed-past-total"


def test_lr_at_zero_only_at_the_end_is_quiet():
    # the decay reaches 0 at the run's last readings: not stuck
    assert not [f for f in findings(_decay_then_floor(110, 5, 120)) if f.category == "lr_schedule"]


def test_scheduler_stepped_per_micro_batch():
    # gradient_accumulation_steps 4 and the script's own lr_scheduler.step() after each micro-batch: the
    # WarmupDecayLR meant for 120 steps reached 0 at step 25
    head = ("[2026-12-06 13:33:48,314] [INFO] [config.py:678:print]   scheduler_name ............... WarmupDecayLR\n"
            "[2026-12-06 13:33:48,314] [INFO] [config.py:678:print]   scheduler_params ............. "
            "{'warmup_min_lr': 0, 'warmup_max_lr': 0.001, 'warmup_num_steps': 10, 'total_num_steps': 120}\n")
    fs = findings(head + _decay_then_floor(25, 5, 120))
    assert fs[0].rule == "lr-scheduler-stepped-too-often"


def test_onecycle_second_half_read_sparsely_is_not_a_restart():
    # OneCycle cycle_first_step_size 10: up to the peak at 10, down to cycle_min_lr at 20, then decay
    vals = [(0, 1e-4), (5, 5.5e-4), (10, 1e-3), (15, 5.5e-4), (20, 1e-4), (25, 6.7e-5), (30, 5e-5), (35, 4e-5)]
    text = "\n".join(_ds_lr(s, v) for s, v in vals) + "\n"
    assert not [f for f in findings(text) if f.category == "lr_schedule"]


def test_restart_mid_decay_still_found():
    vals = [(0, 0.0), (10, 1e-3), (20, 9e-4), (30, 8e-4), (40, 7e-4), (50, 0.0), (60, 3e-4)]
    text = "\n".join(_ds_lr(s, v) for s, v in vals) + "\n"
    assert any(f.rule == "lr-restart-on-resume" for f in findings(text))


def test_second_input_replaying_the_same_steps_is_not_a_restart():
    det = LRScheduleDetector()
    out = []
    for src in ("console.log", "events-rank0.jsonl"):
        for s in range(0, 60):
            lr = 1e-3 * min(1.0, s / 10)
            out += det.feed(Event("lr", 0, s, None, {"value": lr}, src, s + 1, ""), s)
            out += det.feed(Event("loss", 0, s, None, {"value": 1.0 / (1 + s)}, src, s + 1, ""), s)
    out += det.finish()
    assert not out


# ---------------------------------------------------------------- loss spikes of a small batch's loss
# rank 0's own per-step loss of a real run (w.py, batch 8, AdamW lr 1e-3, no warm-up): the model has
# converged by step 60; a few batches later come out 3-5x the median, still below where the loss started
_CONVERGED = (
    "0.4276,0.4996,0.4299,0.2716,0.4429,0.4432,0.3670,0.5221,0.1996,0.3556,0.3432,0.1378,0.5279,0.4588,0."
    "4999,0.3923,0.1918,0.4143,0.3498,0.3644,0.4416,0.2798,0.3393,0.4925,0.2631,0.3984,0.3760,0.2246,0.26"
    "22,0.3316,0.3224,0.2203,0.2300,0.2256,0.2352,0.2656,0.3640,0.1267,0.2265,0.2600,0.1739,0.2878,0.2239"
    ",0.1950,0.1451,0.2120,0.1655,0.1191,0.0848,0.1390,0.2184,0.1696,0.1467,0.0318,0.0639,0.0471,0.1647,0"
    ".1379,0.1961,0.0532,0.0723,0.0554,0.0866,0.1452,0.0593,0.0500,0.1356,0.0359,0.0411,0.0799,0.0884,0.0"
    "885,0.0199,0.0770,0.0899,0.0240,0.0653,0.0689,0.0190,0.0612,0.0160,0.0322,0.0362,0.0442,0.0592,0.030"
    "7,0.0760,0.0561,0.0394,0.0129,0.0624,0.0403,0.0325,0.0388,0.0535,0.0289,0.0449,0.0430,0.0171,0.0256,"
    "0.0403,0.0267,0.0289,0.0362,0.0361,0.0617,0.0377,0.0189,0.0171,0.0223,0.0265,0.0589,0.0429,0.0611,0."
    "1532,0.0263,0.0435,0.0477,0.0083,0.0352,0.0367,0.0666,0.0250,0.0421,0.0101,0.0265,0.0495,0.0329,0.03"
    "14,0.0445,0.0320,0.0381,0.0536,0.0263,0.0277,0.0311,0.0701,0.0122,0.0393,0.0445,0.0237,0.0156,0.0320"
    ",0.0274,0.0089,0.0173,0.0342,0.0124,0.0329,0.0205,0.0453,0.0323,0.0766,0.0222,0.0219,0.0216,0.0241,0"
    ".0438,0.0168,0.0292,0.0139,0.0731,0.0322,0.0180,0.0311,0.0467,0.0468,0.0354,0.0419,0.0198,0.0390,0.0"
    "248,0.0258,0.0436,0.0372,0.1333,0.0598,0.0381,0.0431,0.0184,0.0694,0.0509,0.0261,0.0365,0.0301,0.009"
    "7,0.0460,0.0480,0.0522,0.0266,0.0297,0.0739,0.0378,0.0287,0.1041,0.0388,0.0197,0.0495,0.0358,0.0184,"
    "0.0211,0.0184,0.0293,0.0270,0.0234,0.0480,0.0578,0.0170,0.0329,0.0105,0.0385,0.0197,0.0171,0.0255,0."
    "0272,0.0171,0.0230,0.0388,0.0530,0.0433,0.0626,0.0169,0.0269,0.0950,0.0518,0.0385,0.0297,0.0193,0.04"
    "23,0.0227"
)


def test_noisy_per_step_loss_is_not_early_spikes():
    vals = "".join(_CONVERGED).split(",")
    text = "".join(f"rank=0 step={i + 1} loss={v} lr=1.000e-03\n" for i, v in enumerate(vals))
    assert not [f for f in findings(text) if f.category == "lr_schedule" and f.severity != "info"]


def test_loss_spikes_back_to_the_start_at_peak_lr():
    lines = []
    for s in range(1, 200):
        v = 2.0 * 0.99 ** s + 0.5
        if s in (40, 55, 70):
            v = 2.6
        lines.append(f"step={s} loss={v:.4f} lr=3.000e-01")
    fs = findings("\n".join(lines) + "\n")
    assert any(f.rule == "lr-warmup-too-short" for f in fs)


# ---------------------------------------------------------------- throughput drop, CPU-bound noise
def test_rate_scattering_by_a_factor_then_tenfold_lower():
    # DeepSpeed's CurrSamplesPerSec of s_throttle (every 10 steps): rank 1 slowed from step 250
    v = [462, 1477, 560, 1777, 1575, 1562, 683, 567, 2239, 2316, 2160, 871, 1128, 724, 1248, 1205, 799, 2503, 763,
         924, 683, 482, 432, 581, 250, 66, 76, 67, 78, 62, 71, 74, 77, 76, 69, 63, 71, 62, 70, 72, 61, 72, 73, 79, 77]
    d = find_drop([float(x) for x in v], higher_is_better=True)
    assert d is not None and d["split"] == 24 and d["after"] < 100


def test_rate_scattering_by_a_factor_is_no_drop():
    v = [462, 1477, 560, 1777, 1575, 1562, 683, 567, 2239, 2316, 2160, 871, 1128, 724, 1248, 1205, 799, 2503, 763,
         924, 683, 482, 432, 581, 650, 966, 776, 667, 1078, 662]
    assert find_drop([float(x) for x in v], higher_is_better=True) is None
