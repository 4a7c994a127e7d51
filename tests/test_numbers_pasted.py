"""The numbers of a run as users paste them, and their healthy look-alikes (part AX): a loss curve typed as a pipe
table, a script's own 'NaN loss detected' error, an fp16 collapse and its inf loss 40 ms apart, an OOM whose
unallocated reserve held the request, 'CUDA error: out of memory' while pinning host memory, a loss that jumped at
its first log and stayed there, and one bf16 skipped step the run went on past.

Fast: text in, no DeepSpeed needed.
"""
from __future__ import annotations

from diagnose_text import events, top


def test_loss_table_with_pipes_is_read_row_by_row():
    rows = "".join(f"| {s} | {'nan' if s >= 900 else f'{2.9 - s * 0.0007:.3f}'} | {'nan' if s >= 900 else '1.1'} | 3e-4 |\n"
                   for s in range(100, 1200, 100))
    text = "Loss table from our logger:\n\n| step | loss | grad_norm | lr |\n|---|---|---|---|\n" + rows
    losses = events(text, "loss")
    assert [e.step for e in losses][:3] == [100, 200, 300] and len(losses) == 11
    f = top(text)
    assert f.category == "nan_loss" and "| 900 | nan" in f.evidence[0].text


def test_table_needs_a_step_and_a_training_loss_column_and_its_rows_in_a_run():
    # an eval-only table, a table without a step column, and rows after a break are no training readings
    assert events("| step | eval_loss |\n|---|---|\n| 100 | nan |\n", "loss") == []
    assert events("| model | loss |\n|---|---|\n| base | nan |\n", "loss") == []
    assert len(events("| Step | Training Loss |\n| 10 | 2.3 |\n\nsome prose\n| 20 | nan |\n", "loss")) == 1


def test_megatron_iteration_line_is_no_table_header():
    line = (" iteration      100/  500000 | consumed samples:       102400 | elapsed time per iteration (ms): 1843.2 |"
            " learning rate: 1.200E-04 | global batch size:  1024 | lm loss: 3.860000E+00 | loss scale: 1.0 |"
            " number of skipped iterations:   0 | number of nan iterations:   0 |\n")
    assert [e.data.get("name") for e in events(line * 3, "loss")] == ["lm loss"] * 3


def test_script_nan_loss_error_is_a_nan_loss_not_its_source_line():
    raised = "FloatingPointError: NaN loss detected at step 2231: non-finite loss"
    source = '    raise FloatingPointError(f"NaN loss detected at step {step}: non-finite loss")'
    f = top("\n".join(["Traceback (most recent call last):", '  File "pretrain.py", line 187, in main', source, raised, ""]))
    assert (f.category, f.evidence[0].text) == ("nan_loss", raised)


def test_nan_loss_wordings_that_are_no_nan():
    for line in ("skip NaN loss batches: True", "no NaN loss detected in 2000 steps", "nan loss check enabled"):
        assert events(line + "\n", "loss") == [], line


def test_scale_collapse_first_by_its_own_clock():
    # DeepSpeed's DynamicLossScaler driven to its floor on real fp16 gradients (run here): the overflows from
    # 16,405 ms, the first inf loss at 16,442 ms, the exception at the floor; one process, one clock
    lines = ["[2026-12-07 21:14:16,405] [INFO] [loss_scaler.py:273:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step."
             " Attempted loss scale: 65536, but hysteresis is 2. Reducing hysteresis to 1"]
    scale = 65536
    for k in range(12):
        lines.append(f"[2026-12-07 21:14:16,{408 + k * 2}] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW!"
                     f" Rank 0 Skipping step. Attempted loss scale: {scale}, reducing to {scale // 2}")
        scale //= 2
    lines.append("[2026-12-07 21:14:16,442] [INFO] [train.py:37:<module>] step=15, skipped=14, lr=[3.0], loss=inf, loss_scale=8.0")
    for k in range(3):
        lines.append(f"[2026-12-07 21:14:16,{444 + k * 2}] [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW!"
                     f" Rank 0 Skipping step. Attempted loss scale: {scale}, reducing to {scale // 2}")
        scale //= 2
    lines += ["[rank0]: Traceback (most recent call last):",
              "[rank0]: Exception: Current loss scale already at minimum - cannot decrease scale anymore. Exiting run."]
    f = top("\n".join(lines) + "\n")
    assert f.category == "loss_scale_collapse" and f.rule == "loss-scale-collapse-before-nan"


def test_oom_whose_unallocated_reserve_held_the_request_is_fragmentation():
    text = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB. GPU 0 has a total capacity of 79.15 GiB"
            " of which 6.21 GiB is free. Process 10521 has 72.93 GiB memory in use. Of the allocated memory 60.02 GiB is"
            " allocated by PyTorch, and 12.37 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory"
            " is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.\n")
    assert top(text).rule == "oom-fragmentation"
    # a request larger than the unallocated reserve (and a small share of it) is a plain OOM
    assert top(text.replace("8.00 GiB", "14.00 GiB", 1)).rule != "oom-fragmentation"


def test_cuda_error_oom_while_pinning_is_host_memory():
    text = ("[rank4]: Traceback (most recent call last):\n"
            "[rank4]:   File \"/usr/local/lib/python3.10/dist-packages/deepspeed/runtime/zero/stage_1_and_2.py\", line 520, in __init__\n"
            "[rank4]:     self.single_partition_of_fp32_groups[i] = self.single_partition_of_fp32_groups[i].pin_memory()\n"
            "[rank4]: RuntimeError: CUDA error: out of memory\n")
    f = top(text)
    assert f.rule == "host-oom-pinned-memory" and f.category == "host_oom" and f.ranks == [4]


def hf5(loss, step):
    return "{'loss': '%s', 'grad_norm': '80', 'learning_rate': '3', 'epoch': '%s'}\n" % (loss, step / 64)


def test_a_loss_that_jumped_at_its_first_log_and_stayed_there():
    # HF Trainer (transformers 5) + DeepSpeed ZeRO-1, AdamW at lr 3.0 (run here): 157.7 at the first log, then 681-1,627
    vals = [157.7, 681.2, 1009, 1067, 1627, 1362, 1073, 1532, 1281, 1127, 1158, 1108, 927.2, 909.7, 913.2]
    f = top("".join(hf5(v, 2 * (i + 1)) for i, v in enumerate(vals)))
    assert f.rule == "loss-diverged" and "first reading (157.7)" in f.title
    # a jump that comes back under 4x within the ten readings is no divergence
    back = vals[:6] + [400, 380, 350, 320, 300, 290, 280, 270, 260]
    assert top("".join(hf5(v, 2 * (i + 1)) for i, v in enumerate(back))) is None or \
        top("".join(hf5(v, 2 * (i + 1)) for i, v in enumerate(back))).rule != "loss-diverged"


def ds_step(s, skipped):
    return f"[2026-11-20 10:{s // 60 % 60:02d}:{s % 60:02d},000] [INFO] [logging.py:107:log_dist] [Rank 0] step={s}, skipped={skipped}, lr=[2e-05], mom=[(0.9, 0.999)]\n"


SKIP = "[2026-11-20 10:20:00,000] [WARNING] [loss_scaler.py:153:update_scale] [deepspeed] OVERFLOW! Skipping step. Gradients are non-finite, weights were not updated.\n"


def test_one_bf16_skip_the_run_went_on_past_is_healthy():
    text = "".join(ds_step(s, 0) for s in range(10, 300, 10)) + SKIP + "".join(ds_step(s, 1) for s in range(300, 1200, 10))
    assert top(text) is None


def test_bf16_skips_again_or_as_the_last_news_are_reported():
    again = "".join(ds_step(s, 0) for s in range(10, 300, 10)) + SKIP + ds_step(300, 1) + SKIP + ds_step(310, 2)
    assert top(again).rule == "bf16-nonfinite-grads"
    last = "".join(ds_step(s, 0) for s in range(10, 300, 10)) + SKIP
    assert top(last).rule == "bf16-nonfinite-grads"
