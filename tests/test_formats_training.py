"""Training-health lines (DeepSpeed, HF Trainer, Megatron) -> events -> findings.

Fast: text in, no DeepSpeed needed. Each wording of the log-format catalogue (§5, §6, §7) has a
case here; the detectors are also fed events directly, the way the live mode produces them.
"""
from __future__ import annotations

import math

import pytest

from dsdoctor.detect.scaler import LossScaleDetector
from dsdoctor.detect.throughput import find_drop
from dsdoctor.events import Event
from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()


def events(text: str, kind: str | None = None) -> list[Event]:
    evs = events_from_text(text)
    return [e for e in evs if kind is None or e.kind == kind]


def findings(text: str):
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text(text))
    return d.finish()


def serious(fs):
    return [f for f in fs if f.severity != "info"]


# ------------------------------------------------------------------ fp16 loss scaler wordings
@pytest.mark.parametrize("line,prev,new,hyst", [
    ("[deepspeed] OVERFLOW! Skipping step. Attempted loss scale: 4096.0, reducing to 2048.0", 4096, 2048, None),
    ("[2022-01-19 13:16:17,683] [INFO] [stage_1_and_2.py:1644:step] [deepscale] OVERFLOW! Rank 0 Skipping step. "
     "Attempted loss scale: 1048576.0, reducing to 524288.0", 1048576, 524288, None),
    ("[deepspeed] fp16 dynamic loss scale overflow! Rank 0 Skipping step. Attempted loss scale: 64, reducing to 32", 64, 32, None),
    ("[deepspeed] fp16 dynamic loss scale overflow! Skipping step. Attempted loss scale: 64, reducing to 32", 64, 32, None),
    ("[2026-11-20 10:01:02,123] [INFO] [loss_scaler.py:265:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. "
     "Attempted loss scale: 8, reducing to 4", 8, 4, None),
    ("[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 8, but hysteresis is 2. Reducing hysteresis to 1", 8, 8, 1),
])
def test_overflow_wordings(line, prev, new, hyst):
    (ev,) = events(line, "overflow")
    assert (ev.data["prev_scale"], ev.data["new_scale"], ev.data["hysteresis"], ev.data["dtype"]) == (prev, new, hyst, "fp16")


def test_zero0_overflow_takes_the_iteration_from_the_line_before():
    text = "\nGrad overflow on iteration 17\nReducing dynamic loss scale from 8 to 4.0\n"
    (ev,) = events(text, "overflow")
    assert ev.step == 17 and ev.data["prev_scale"] == 8 and ev.data["new_scale"] == 4


def test_bf16_overflow_on_a_tqdm_line_with_carriage_returns():
    text = ("  3%|▎         | 30/1000 [00:12<06:40,  2.42it/s]\r[2026-11-20 10:01:02,123] [WARNING] "
            "[loss_scaler.py:153:update_scale] [Rank 0] [deepspeed] OVERFLOW! Skipping step. Gradients are "
            "non-finite, weights were not updated.\r  3%|▎         | 31/1000 [00:12<06:39,  2.42it/s]\n")
    (ev,) = events(text, "overflow")
    assert ev.data["dtype"] == "bf16" and ev.rank == 0
    fs = findings(text * 3)
    assert fs[0].rule == "bf16-nonfinite-grads" and "3 step(s)" in fs[0].summary


def test_at_minimum_exception_is_a_collapse():
    fs = findings("Exception: Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.\n")
    assert [f.rule for f in fs] == ["loss-scale-collapse"]


def test_zero0_one_to_one_loop_is_a_collapse():
    text = "".join(f"Grad overflow on iteration {i}\nReducing dynamic loss scale from 1 to 1\n" for i in range(500, 504))
    (f,) = serious(findings(text))
    assert f.rule == "loss-scale-collapse" and "stuck at the minimum" in f.summary


def _ds_progress(step: int, skipped: int) -> str:
    return f"[2026-11-20 10:00:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step={step}, skipped={skipped}, lr=[0.0001], mom=[(0.9, 0.999)]\n"


def _ds_overflow(prev: int, new: int) -> str:
    return (f"[2026-11-20 10:00:00,000] [INFO] [loss_scaler.py:265:update_scale] [deepspeed] OVERFLOW! Rank 0 "
            f"Skipping step. Attempted loss scale: {prev}, reducing to {new}\n")


def test_healthy_calibration_gives_nothing_above_info():
    text = _ds_overflow(65536, 32768) + _ds_progress(1, 1) + _ds_overflow(32768, 16384) + _ds_progress(2, 2)
    text += "".join(_ds_progress(s, 2) for s in range(3, 400))
    # the periodic overflow after a scale increase (every loss_scale_window clean steps) is healthy too
    text += _ds_overflow(32768, 16384) + "".join(_ds_progress(s, 3) for s in range(400, 500))
    fs = findings(text)
    assert serious(fs) == []
    assert [f.rule for f in fs] == ["loss-scale-calibration"]


def test_calibration_from_2_to_the_32_is_healthy():
    scale, text, step = 2 ** 32, "", 1
    while scale > 2 ** 16:
        hyst = ("[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: "
                f"{scale}, but hysteresis is 2. Reducing hysteresis to 1\n") if step == 1 else ""
        text += hyst + _ds_overflow(scale, scale // 2) + _ds_progress(step, step)
        scale //= 2
        step += 1
    text += "".join(_ds_progress(s, step) for s in range(step, step + 300))
    fs = findings(text)
    assert serious(fs) == [] and [f.rule for f in fs] == ["loss-scale-calibration"]


def test_overflows_without_step_numbers_falling_to_the_floor():
    text = "".join(_ds_overflow(2 ** p, 2 ** (p - 1)) for p in range(16, 3, -1))
    (f,) = serious(findings(text))
    assert f.rule == "loss-scale-collapse" and "to 8 " in f.summary


def test_collapsing_scale_is_found_with_its_trend():
    text = _ds_overflow(65536, 32768) + _ds_progress(1, 1)
    text += "".join(_ds_progress(s, 1) for s in range(2, 300))
    scale = 32768
    for s in range(300, 310):
        text += _ds_overflow(scale, scale // 2) + _ds_progress(s, s - 298)
        scale //= 2
    (f,) = serious(findings(text))
    assert f.rule == "loss-scale-collapse" and f.category == "loss_scale_collapse"
    assert "fell from 32768 to 32 (10 halvings)" in f.summary
    assert f.fixes[0].config_patch == {"fp16": {"enabled": False}, "bf16": {"enabled": True}}


def test_scaler_detector_reports_from_feed_with_steps_left():
    """Live mode: the symptom comes from feed() while the run still goes, with an ETA to the floor."""
    det = LossScaleDetector()
    out = []
    for s in range(0, 50):
        out += det.feed(Event("loss_scale", step=s, data={"value": 65536}), s)
    scale = 65536
    for s in range(50, 56):
        out += det.feed(Event("overflow", step=s, data={"prev_scale": scale, "new_scale": scale // 2,
                                                      "hysteresis": None, "dtype": "fp16"}), s)
        scale //= 2
    assert [s.name for s in out] == ["loss_scale_collapse"]
    facts = out[0].facts
    assert facts["end_scale"] == 1024 and facts["halvings"] == 6 and facts["late"]
    assert facts["steps_left"] == 10          # one halving per step, 2^10 -> 1
    assert list(det.finish()) == []


def test_optimizer_creation_line_tells_dtype_and_stage():
    (ev,) = events("[2026-11-22 07:46:14,741] [INFO] [logging.py:123:log_dist] [Rank 0] Creating torch.bfloat16 "
                   "ZeRO stage 2 optimizer\n", "context")
    assert ev.data == {"dtype": "bf16", "zero_stage": 2}
    (ev,) = events("[Rank 0] Creating fp16 optimizer with dynamic loss scale\n", "context")
    assert ev.data == {"dtype": "fp16", "zero_stage": 0}


# ------------------------------------------------------------------ a real DeepSpeed 0.19.8 run
# Our own run (CPU accelerator patched for fp16, ZeRO-2, initial_scale_power 8, a NaN input from
# step 5 on, log_level info): the lines as DeepSpeed printed them, up to its exception.
REAL_FP16_NAN = """\
[2026-11-22 07:46:22,694] [INFO] [logging.py:123:log_dist] [Rank 0] step=5, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]
[2026-11-22 07:46:22,715] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 256, reducing to 128
[2026-11-22 07:46:22,715] [INFO] [logging.py:123:log_dist] [Rank 0] step=6, skipped=1, lr=[0.001], mom=[(0.9, 0.999)]
step 5 loss: nan
[2026-11-22 07:46:22,735] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 128, reducing to 64
[2026-11-22 07:46:22,735] [INFO] [logging.py:123:log_dist] [Rank 0] step=7, skipped=2, lr=[0.001], mom=[(0.9, 0.999)]
step 6 loss: nan
[2026-11-22 07:46:22,755] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 64, reducing to 32
[2026-11-22 07:46:22,755] [INFO] [logging.py:123:log_dist] [Rank 0] step=8, skipped=3, lr=[0.001], mom=[(0.9, 0.999)]
step 7 loss: nan
[2026-11-22 07:46:22,772] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 32, reducing to 16
[2026-11-22 07:46:22,772] [INFO] [logging.py:123:log_dist] [Rank 0] step=9, skipped=4, lr=[0.001], mom=[(0.9, 0.999)]
step 8 loss: nan
[2026-11-22 07:46:22,788] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 16, reducing to 8
[2026-11-22 07:46:22,788] [INFO] [logging.py:123:log_dist] [Rank 0] step=10, skipped=5, lr=[0.001], mom=[(0.9, 0.999)]
step 9 loss: nan
[2026-11-22 07:46:22,800] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 8, reducing to 4
[2026-11-22 07:46:22,800] [INFO] [logging.py:123:log_dist] [Rank 0] step=11, skipped=6, lr=[0.001], mom=[(0.9, 0.999)]
step 10 loss: nan
[2026-11-22 07:46:22,818] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 4, reducing to 2
[2026-11-22 07:46:22,818] [INFO] [logging.py:123:log_dist] [Rank 0] step=12, skipped=7, lr=[0.001], mom=[(0.9, 0.999)]
step 11 loss: nan
[2026-11-22 07:46:22,838] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 2, reducing to 1
[2026-11-22 07:46:22,839] [INFO] [logging.py:123:log_dist] [Rank 0] step=13, skipped=8, lr=[0.001], mom=[(0.9, 0.999)]
step 12 loss: nan
[rank0]: Exception: Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.
"""


def test_real_fp16_nan_run():
    fs = findings(REAL_FP16_NAN)
    assert [f.rule for f in fs] == ["nan-loss", "loss-scale-collapse"]
    assert fs[1].consequence_of == "nan-loss"          # the NaN input made every step overflow
    assert fs[0].steps[0] == 5 and "fp16" in fs[0].summary


# ------------------------------------------------------------------ loss and NaN
def test_ds_progress_line_sets_the_step_for_later_lines():
    evs = events(_ds_progress(41, 2) + "epoch 0 loss: nan\n")
    sk = [e for e in evs if e.kind == "skipped"][0]
    assert sk.step == 41 and sk.data["skipped"] == 2
    loss = [e for e in evs if e.kind == "loss"][0]
    assert loss.step == 41 and math.isnan(loss.data["value"])


def test_hf_4x_numeric_and_5x_string_dicts():
    a = events("{'loss': 2.3411, 'grad_norm': nan, 'learning_rate': 4e-05, 'epoch': 0.1}\n")
    b = events("{'loss': 'nan', 'grad_norm': 'inf', 'learning_rate': '4e-05', 'epoch': '0.1'}\n")
    for evs in (a, b):
        kinds = [e.kind for e in evs]
        assert kinds == ["grad_norm", "loss", "lr"]
        assert math.isnan(evs[0].data["value"]) or math.isinf(evs[0].data["value"])
    assert math.isnan(b[1].data["value"]) and a[1].data["value"] == 2.3411


def test_hf_grad_norm_inf_with_zero_loss_is_divergence():
    text = ("{'loss': '2.341', 'grad_norm': '1.12', 'learning_rate': '4e-05', 'epoch': '0.1'}\n"
            "{'loss': '0', 'grad_norm': 'inf', 'learning_rate': '4e-05', 'epoch': '0.2'}\n")
    (f,) = serious(findings(text))
    assert f.rule == "nan-loss" and "grad_norm inf" in f.summary


def test_hf_train_end_summary_is_not_a_time_series_point():
    evs = events("{'train_runtime': 120.5, 'train_samples_per_second': 8.5, 'train_steps_per_second': 1.1, 'train_loss': 2.1, 'epoch': 1.0}\n")
    assert [e.kind for e in evs] == ["throughput"] and evs[0].data["summary"]


MEGATRON_V1 = (" iteration      100/    1000 | elapsed time per iteration (ms): 512.3 | learning rate: 1.000E-04 |"
               " lm loss: 3.123456E+00 | loss scale: 65536.0 |\n")
MEGATRON_TS = ("[2024-05-01 10:00:00.123456] iteration      200/    1000 | consumed samples:        51200 |"
               " elapsed time per iteration (ms): 512.3 | throughput per GPU (TFLOP/s/GPU): 180.5 | learning rate: "
               "1.000000E-04 | global batch size:   256 | lm loss: 3.000000E+00 | loss scale: 1.0 | grad norm: 1.234 |"
               " number of skipped iterations:   0 | number of nan iterations:   0 |\n")


def test_megatron_lines_all_versions():
    a = events(MEGATRON_V1)
    assert {e.kind for e in a} == {"loss", "loss_scale", "throughput", "lr"}
    assert all(e.step == 100 for e in a)
    b = events(MEGATRON_TS)
    tp = [e for e in b if e.kind == "throughput"][0]
    assert tp.data == {"iter_ms": 512.3, "tflops": 180.5, "total": 1000} and tp.time is not None
    assert [e.data["value"] for e in b if e.kind == "grad_norm"] == [1.234]


def test_megatron_wrapped_record_is_joined():
    text = ("[default7]: iteration   42780/ 115311 | consumed samples:    71455664 | elapsed time per iteration (s): 105.16 | learning\n"
            " rate: 4.475E-05 | global batch size: 2048 | lm loss: 2.117073E+00 | grad norm: 0.150 | number of nan\n"
            "iterations:  0 | samples per second: 19.474 | TFLOPs: 149.10 |\n")
    evs = events(text)
    tp = [e for e in evs if e.kind == "throughput"]
    assert len(tp) == 1 and tp[0].data == {"iter_ms": 105160.0, "samples_per_sec": 19.474, "tflops": 149.1, "total": 115311}
    assert tp[0].rank == 7 and tp[0].step == 42780 and tp[0].line == 1
    assert [e.data["nan_iters"] for e in evs if e.kind == "skipped"] == [0]
    assert [e.data["value"] for e in evs if e.kind == "lr"] == [4.475e-05]


def test_megatron_wrap_right_after_a_bar_still_reads_the_rest():
    text = (" iteration      100/    1000 | elapsed time per iteration (ms): 512.3 | lm loss: 3.1E+00 |\n"
            " loss scale: 4096.0 | number of skipped iterations:   1 | number of nan iterations:   0 |\n")
    evs = events(text)
    assert [e.data["value"] for e in evs if e.kind == "loss_scale"] == [4096]


def test_megatron_wrap_after_the_loss_and_a_bar_is_no_missing_loss():
    # hard-wrapped where a record's first two pieces end on '|' after the loss: the rest ('grad norm ...')
    # parsed alone brings its values; the loss was on the record's text, not gone
    rows = "".join(f"0:  iteration {i:8d}/     400 | consumed samples: {i * 512:10d} | elapsed time per iteration (ms): 18\n"
                   f"43.0 | learning rate: 2.9E-04 | global batch size:   512 | lm loss: 6.1E+00 | loss scale: 1.0 |\n"
                   f" grad norm: 0.411 | number of skipped iterations:   0 | number of nan iterations:   0 |\n"
                   for i in range(10, 200, 10))
    assert serious(findings(rows)) == []
    assert [e.data["value"] for e in events(rows, "grad_norm")][:2] == [0.411, 0.411]


def test_megatron_missing_lm_loss_means_nan_after_a_spike():
    rows = []
    for i, (loss, gn) in enumerate([(3.3, 2.1), (3.4, 2.0), (3.3, 2.2), (3.35, 2.1), (7.2, 300.0)]):
        rows.append(f" iteration {100 + i:8d}/    1000 | elapsed time per iteration (ms): 512.3 | lm loss: {loss:.6E} |"
                    f" loss scale: 65536.0 | grad norm: {gn:.3f} | number of skipped iterations:   0 | number of nan iterations:   0 |")
    rows.append("  iteration      105/    1000 | elapsed time per iteration (ms): 512.3 | loss scale: 32768.0 | grad norm: 300.000 |"
                " number of skipped iterations:   0 | number of nan iterations:   0 |")
    (f,) = serious(findings("\n".join(rows) + "\n"))
    assert f.rule == "nan-loss" and f.steps == [105]
    assert "spike" in f.summary and "fp16" in f.summary
    assert "does not fix a NaN" in f.summary


def test_megatron_skipped_iteration_without_loss_is_not_nan():
    base = (" iteration {it:8d}/    1000 | elapsed time per iteration (ms): 512.3 | {loss}loss scale: {ls} |"
            " number of skipped iterations: {sk:3d} | number of nan iterations:   0 |\n")
    text = "".join(base.format(it=i, loss="lm loss: 3.1E+00 | ", ls="65536.0", sk=0) for i in range(300, 340))
    text += base.format(it=340, loss="", ls="32768.0", sk=1)
    text += "".join(base.format(it=i, loss="lm loss: 3.1E+00 | ", ls="32768.0", sk=0) for i in range(341, 380))
    assert serious(findings(text)) == []


def test_megatron_nan_iterations_counter():
    text = MEGATRON_TS.replace("number of nan iterations:   0", "number of nan iterations:   2")
    (f,) = serious(findings(text))
    assert f.rule == "nan-loss"


def test_pipeline_engine_progress_line():
    evs = events("steps: 120 loss: 2.3456 iter time (s): 1.500 samples/sec: 42.667\n")
    assert [e.kind for e in evs] == ["loss", "throughput"]
    assert evs[1].data == {"iter_ms": 1500.0, "samples_per_sec": 42.667} and evs[1].step == 120


# ------------------------------------------------------------------ throughput and stragglers
@pytest.mark.parametrize("line,step,sps", [
    ("[INFO] [timer.py:199:stop] 0/120, SamplesPerSec=51.2", None, 51.2),
    ("[INFO] [timer.py:199:stop] 0/120, SamplesPerSec=51.2, MemAllocated=3.1GB, MaxMemAllocated=9.2GB", None, 51.2),
    ("0/120, RunningAvgSamplesPerSec=50.1, CurrSamplesPerSec=49.7, MemAllocated=3.1GB, MaxMemAllocated=9.2GB", None, 49.7),
    ("[2026-11-20 10:00:00,000] [INFO] [timer.py:264:stop] epoch=0/micro_step=3/global_step=3, RunningAvgSamplesPerSec=689.56, "
     "CurrSamplesPerSec=689.45, MemAllocated=0.33GB, MaxMemAllocated=0.33GB", 3, 689.45),
])
def test_deepspeed_throughput_lines(line, step, sps):
    (ev,) = events(line + "\n", "throughput")
    assert ev.data["samples_per_sec"] == sps and ev.step == step


def test_timer_lines_new_and_old_carry_the_rank():
    new = events("[Rank 3] time (ms) | fwd_microstep: 2.96 | bwd_microstep: 17.78 | bwd_inner_microstep: 15.33 | "
                 "bwd_allreduce_microstep: 2.40 | step_microstep: 45.57\n", "timers")
    old = events("rank=5 time (ms) | forward_microstep: 2.96 | backward_microstep: 17.78 | step_microstep: 1.0\n", "timers")
    glob = events("[Rank 0] time (ms) | fwd: 1.0 | bwd: 2.0 | bwd_inner: 1.5 | bwd_allreduce: 0.5 | step: 3.0\n", "timers")
    assert new[0].rank == 3 and new[0].data["fwd_microstep"] == 2.96
    assert old[0].rank == 5 and old[0].data["forward_microstep"] == 2.96
    assert glob[0].data["step"] == 3.0


def test_throughput_drop_176b_shape():
    # BLOOM-176B: 105 s -> 111 s per iteration, and it stayed
    d = find_drop([105.16, 105.17, 106.25, 110.17, 111.14], higher_is_better=False)
    assert d and d["split"] == 3 and 5.0 < 100 * d["change"] < 5.5
    assert find_drop([149.10, 149.09, 147.58, 142.32, 141.09], higher_is_better=True)


@pytest.mark.parametrize("values", [
    [100, 101, 99, 100, 102, 98, 100, 101, 99, 100],          # noise
    [100, 100, 100, 110, 111, 100, 100, 100, 100, 100],        # a blip that recovered
    [120, 110, 104, 100, 100, 100, 100, 100, 100, 100],        # warm-up: it got faster
    # a tqdm rate sampled from a long healthy log (uniform noise around 770 ms): a few unlucky
    # readings late in the series, and back down at the last one
    [746, 758, 758, 813, 806, 820, 826, 752],
    [752, 741, 719, 813, 813, 787, 741, 741, 752, 758, 813, 813, 758, 813, 826],
])
def test_no_throughput_drop(values):
    assert find_drop(values, higher_is_better=False) is None


def test_long_series_drop_is_found_with_bounded_work():
    vals = [100.0 + (i % 3) for i in range(5000)] + [110.0 + (i % 3) for i in range(500)]
    d = find_drop(vals, higher_is_better=False)
    assert d and d["change"] > 0.08


def test_slow_rank_from_per_rank_timers():
    rows = []
    for _ in range(5):
        for r in range(8):
            fwd = 90.0 if r == 5 else 30.0 + r * 0.2
            rows.append(f"[Rank {r}] time (ms) | fwd_microstep: {fwd:.2f} | bwd_microstep: 60.00 | "
                        f"bwd_inner_microstep: 50.00 | bwd_allreduce_microstep: {5.0 if r == 5 else 65.0:.2f} | step_microstep: 5.00")
    (f,) = serious(findings("\n".join(rows) + "\n"))
    assert f.rule == "slow-rank" and f.ranks == [5] and "forward" in f.summary and "7 rank(s)" in f.summary


def test_slow_rank_from_live_step_events():
    d = Diagnoser(rules=RULES)
    for step in range(10):
        for r in range(4):
            d.feed(Event("step", rank=r, step=step, data={"fwd_ms": 200.0 if r == 2 else 50.0, "bwd_ms": 100.0,
                                                          "step_ms": 10.0}))
    (f,) = serious(d.finish())
    assert f.rule == "slow-rank" and f.ranks == [2]


# ------------------------------------------------------------------ runtime config errors
def _one_config_error(text: str):
    (ev,) = events(text, "config_error")
    return ev


@pytest.mark.parametrize("spacing", ["world_size", "world_size "])
def test_batch_assertion_both_spellings(spacing):
    ev = _one_config_error("AssertionError: Check batch related parameters. train_batch_size is not equal to "
                           f"micro_batch_per_gpu * gradient_acc_step * {spacing}256 != 4 * 8 * 4\n")
    assert ev.data["numbers"] == {"train_batch_size": 256, "micro_batch": 4, "gas": 8, "world_size": 4}


def test_batch_assertion_finding_computes_the_patch():
    fs = findings("AssertionError: Check batch related parameters. train_batch_size is not equal to "
                  "micro_batch_per_gpu * gradient_acc_step * world_size 512 != 4 * 8 * 8\n")
    assert fs[0].rule == "cfg-batch-mismatch" and fs[0].key == "train_batch_size"
    assert fs[0].fixes[0].config_patch == {"gradient_accumulation_steps": 16}


@pytest.mark.parametrize("text,field,rule", [
    ("pydantic_core._pydantic_core.ValidationError: 1 validation error for DeepSpeedZeroConfig\noffload_params\n"
     "  Extra inputs are not permitted [type=extra_forbidden, input_value={'device': 'cpu'}, input_type=dict]\n",
     "offload_params", "log-cfg-offload-params"),
    ("pydantic.error_wrappers.ValidationError: 1 validation error for DeepSpeedZeroConfig\nnvme_path\n"
     "  extra fields not permitted (type=value_error.extra)\n", "nvme_path", "log-cfg-nvme-path-misplaced"),
    ("1 validation error for DeepSpeedFP16Config\nmin_loss_scale\n  Input should be a valid integer, got a number with a "
     "fractional part [type=int_from_float, input_value=1e-05, input_type=float]\n", "min_loss_scale", "log-cfg-min-loss-scale-int"),
    ("1 validation error for DeepSpeedZeroConfig\nzero_allowed_param_types\n  Extra inputs are not permitted "
     "[type=extra_forbidden, input_value=['Linear'], input_type=list]\n", "zero_allowed_param_types", "log-cfg-extra-key"),
])
def test_pydantic_errors_name_the_key(text, field, rule):
    ev = _one_config_error(text)
    assert ev.data["field"] == field
    fs = findings(text)
    assert fs[0].rule == rule and fs[0].key.endswith(field)


def test_unknown_extra_key_is_named_with_its_section():
    # the field line holds no known word: it is read as the line right after the header
    fs = findings("1 validation error for DeepSpeedZeroConfig\nmy_custom_thing\n  Extra inputs are not permitted "
                  "[type=extra_forbidden, input_value=1, input_type=int]\n")
    assert fs[0].rule == "log-cfg-extra-key" and fs[0].key == "zero_optimization.my_custom_thing"


def test_every_field_of_a_multi_error_pydantic_report_is_named():
    # pydantic 2 (DeepSpeed 0.15+ config_utils.DeepSpeedConfigModel): each error is the field,
    # the reason, then the errors.pydantic.dev link; the next field follows the link
    link = "    For further information visit https://errors.pydantic.dev/2.14/v/extra_forbidden\n"
    fs = findings("pydantic_core._pydantic_core.ValidationError: 2 validation errors for DeepSpeedZeroConfig\n"
                  "overlap_com\n  Extra inputs are not permitted [type=extra_forbidden, input_value=True, input_type=bool]\n"
                  + link + "round_robin_gradient\n  Extra inputs are not permitted [type=extra_forbidden, "
                  "input_value=True, input_type=bool]\n" + link)
    assert {f.key for f in fs if f.rule == "log-cfg-extra-key"} == {
        "zero_optimization.overlap_com", "zero_optimization.round_robin_gradient"}


def test_unknown_extra_key_without_its_field_line_still_names_the_section():
    fs = findings("1 validation error for DeepSpeedZeroConfig\n  Extra inputs are not permitted "
                  "[type=extra_forbidden, input_value=1, input_type=int]\n")
    assert fs[0].rule == "log-cfg-extra-key" and fs[0].key == "zero_optimization"


@pytest.mark.parametrize("text,rule,key", [
    ("TypeError: FusedAdam.__init__() got an unexpected keyword argument 'freeze_step'", "log-cfg-optimizer-param",
     "optimizer.params.freeze_step"),
    ("AssertionError: DeepSpeed does not recognize LR scheduler WarmupOneCycle", "log-cfg-unknown-scheduler", "scheduler.type"),
    ("AssertionError: OneBitAdam is not a supported DeepSpeed Optimizer", "log-cfg-unknown-optimizer", "optimizer.type"),
    ("AssertionError: bfloat16 and fp16 modes cannot be simultaneously enabled", "cfg-fp16-and-bf16", "fp16.enabled"),
    ("ValueError: 'max_grad_norm' is not supported as an optimizer parameter, please switch to using the deepspeed "
     "parameter 'gradient_clipping'", "log-cfg-max-grad-norm", "optimizer.params.max_grad_norm"),
])
def test_runtime_config_errors(text, rule, key):
    fs = findings(text + "\n")
    assert fs[0].rule == rule and fs[0].key == key and fs[0].category == "config_error"


def test_scheduler_kwarg_event_carries_class_and_param():
    # the finding itself comes from rules/lr_schedule.yaml (detect/lr.py) reading this event
    ev = _one_config_error("TypeError: OneCycle.__init__() got an unexpected keyword argument 'warmup_min_lr'\n")
    assert ev.data["key"] == "scheduler.params.warmup_min_lr" and ev.data["cls"] == "OneCycle"
    assert "cycle_min_lr" in ev.data["valid_params"]


def test_hf_mismatch_list_sets_each_key_to_auto():
    text = ("ValueError: Please correct the following DeepSpeed config values that mismatch TrainingArguments values:\n"
            "- ds train_micro_batch_size_per_gpu=8 vs hf per_device_train_batch_size=4\n"
            "- ds gradient_accumulation_steps=1 vs hf gradient_accumulation_steps=4\n"
            "The easiest method is to set these DeepSpeed config values to 'auto'.\n")
    fs = findings(text)
    patches = sorted(str(f.fixes[0].config_patch) for f in fs)
    assert patches == ["{'gradient_accumulation_steps': 'auto'}", "{'train_micro_batch_size_per_gpu': 'auto'}"]


# ------------------------------------------------------------------ environment
@pytest.mark.parametrize("text,rule", [
    ("RuntimeError: Unable to JIT load the cpu_adam op due to ninja not being installed.", "log-env-ninja-missing"),
    ("Unable to JIT load the cpu_adam op due to it not being compatible due to hardware/software issue. None", "log-env-op-build"),
    ("RuntimeError: Error building extension 'cpu_adam'", "log-env-op-build"),
    ("ImportError: /usr/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.30' not found (required by "
     "/root/.cache/torch_extensions/py310_cu118/cpu_adam/cpu_adam.so)", "log-env-glibcxx"),
    ("deepspeed.ops.op_builder.builder.MissingCUDAException: CUDA_HOME does not exist, unable to compile CUDA op(s)", "log-env-cuda-home"),
    (">- DeepSpeed Op Builder: Installed CUDA version 11.8 does not match the version torch was compiled with 12.1, "
     "unable to compile cuda/cpp extensions without a matching cuda version.", "log-env-cuda-mismatch"),
    ("AttributeError: 'DeepSpeedCPUAdam' object has no attribute 'ds_opt_adam'", "log-env-op-build"),
])
def test_environment_errors(text, rule):
    fs = findings(text + "\n")
    assert [f.rule for f in fs] == [rule] and fs[0].category == "environment"


# Megatron-LM megatron/core/timers.py: Timers._get_all_ranks_time_string (--timing-log-option all)
_ALL_RANKS = """\
 [2026-12-05 10:01:00] iteration       10/   10000 | consumed samples:         5120 | elapsed time per iteration (ms): 3012.4 | learning rate: 1.500000E-04 | global batch size:   512 | lm loss: 2.890000E+00 | loss scale: 1.0 | number of skipped iterations:   0 | number of nan iterations:   0 |
times across ranks (ms):
  forward-compute:
     rank  0: 640.20
     rank  1: 641.20
     rank  2: 1301.40
     rank  3: 643.20
  all-grads-sync:
     rank  0: 1010.30
     rank  1: 1011.30
     rank  2: 40.20
     rank  3: 1013.30
"""


def test_megatron_times_across_ranks_are_per_rank_timers():
    evs = events(_ALL_RANKS, "timers")
    assert [(e.rank, e.data) for e in evs[:3]] == [(0, {"forward-compute": 640.2}), (1, {"forward-compute": 641.2}),
                                                  (2, {"forward-compute": 1301.4})]
    assert len(evs) == 8 and evs[-1].data == {"all-grads-sync": 1013.3}
    slow = [f for f in findings(_ALL_RANKS * 3) if f.rule == "slow-rank"]
    assert slow and slow[0].ranks == [2]


def test_megatron_times_block_ends_at_a_line_of_another_shape():
    text = _ALL_RANKS.replace("  all-grads-sync:", "some other line: here")
    assert [e.rank for e in events(text, "timers")] == [0, 1, 2, 3]


def test_megatron_times_across_ranks_are_not_compared_across_pipeline_stages():
    head = "using world size: 8, data-parallel size: 4, context-parallel size: 1, tensor-model-parallel size: 1, pipeline-model-parallel size: 2 \n"
    assert events(head + _ALL_RANKS, "timers") == []
    assert events(_ALL_RANKS.replace("times across ranks (ms):", "(min, max) time across ranks (ms):"), "timers") == []


def test_a_timer_record_glued_to_another_ranks_print_is_the_records_rank():
    # two processes writing to one stream: rank 1's print had no newline yet when rank 0's timer record came
    # (a real 2-rank CPU run here); the record names its own rank right before 'time (ms)'
    glued = "rank=1 step=0 loss: 1.2293[Rank 0] time (ms) | fwd_microstep: 0.49 | bwd_microstep: 8.80 | step_microstep: 8.05\n"
    assert [e.rank for e in events(glued, "timers")] == [0]


def test_one_slow_first_reading_does_not_make_a_slow_rank():
    def rec(rank, bwd):
        return f"rank={rank} time (ms) | forward_microstep: 0.50 | backward_microstep: {bwd:.2f} | step_microstep: 2.00\n"
    warm_up = rec(1, 8.8)                                  # rank 1's only reading: its first step
    text = warm_up + "".join(rec(0, 1.9) for _ in range(12))
    assert not [f for f in findings(text) if f.rule == "slow-rank"]
    slow = "".join(rec(0, 1.9) + rec(1, 12.0) for _ in range(6))   # a rank slow on every reading still is one
    assert [f.ranks for f in findings(slow) if f.rule == "slow-rank"] == [[1]]


def test_the_bar_after_an_evaluation_header_counts_no_training_steps():
    train = " 25%|██▌       | 500/2000 [41:12<2:03:31,  4.94s/it]\n"
    head = "***** Running Evaluation *****\n  Num examples = 50000\n  Batch size = 128\n"
    evals = "".join(f" {p}%|█         | {n}/391 [00:39<04:47,  1.20it/s]\n" for p, n in ((5, 20), (12, 47)))
    steps = [e.step for e in events(train + head + evals + train.replace("500/2000", "510/2000"), "throughput")]
    assert steps == [500, 510]                   # the evaluation's batches are no training steps
    # a second evaluation's bar, and a bar seen before the header (the training bar) keep their kinds
    steps = [e.step for e in events(head + evals + train + head + evals, "throughput")]
    assert steps == [500]
