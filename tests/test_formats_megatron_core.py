"""Part AI: megatron-core's own errors and verdicts, and Megatron's (min, max) timer report.

Lines copied from megatron-core 0.16.1 run for real on gloo CPU ranks (the whole captures are the
fixtures/excerpts/gen_ai_*.log golden fixtures) or built from its templates (formats/megatron_core.py cites them).
"""
from __future__ import annotations

from diagnose_text import events, top


def _minmax(fb: tuple[float, float], fwd: tuple[float, float], data: tuple[float, float],
            sync: tuple[float, float], n: int = 4, extra: str = "") -> str:
    # megatron/core/timers.py Timers._get_global_min_max_time_string: '\n    {}: ({:.2f}, {:.2f})', name ljust(48, '.')
    def row(name: str, v: tuple[float, float]) -> str:
        return f"    {(name + ' ').ljust(48, '.')}: ({v[0]:.2f}, {v[1]:.2f})\n"
    rep = ("INFO:megatron.core.timers:(min, max) time across ranks (ms):\n" + row("forward-backward", fb)
           + row("forward-compute", fwd) + row("batch-generator", data) + extra + row("all-grads-sync", sync))
    return rep * n


def test_minmax_report_is_read():
    evs = events(_minmax((1.3, 121.9), (0.5, 0.7), (0.04, 120.2), (5.5, 126.6), n=1), "timer_spread")
    assert {e.data["timer"]: (e.data["min_ms"], e.data["max_ms"]) for e in evs} == {
        "forward-backward": (1.3, 121.9), "forward-compute": (0.5, 0.7), "batch-generator": (0.04, 120.2),
        "all-grads-sync": (5.5, 126.6)}


def test_late_rank_needs_its_timer_and_the_sync_spread_together():
    f = top(_minmax((1.3, 121.9), (0.5, 0.7), (0.04, 120.2), (5.5, 126.6)))
    assert f.rule == "slow-rank-timer-spread" and f.category == "straggler" and "batch-generator" in f.title
    # the same data spread without the others waiting: not a late rank (uneven work by design)
    assert top(_minmax((1.3, 121.9), (0.5, 0.7), (0.04, 120.2), (5.5, 9.0))) is None
    # a millisecond of spread: a healthy run
    assert top(_minmax((1.2, 1.8), (0.40, 0.44), (0.04, 0.52), (4.45, 5.16))) is None
    # pipeline stages: forward-backward ends together, or p2p timers are printed
    assert top(_minmax((2291.5, 2305.0), (610.2, 998.4), (0.6, 160.9), (20.1, 190.5))) is None
    recv = "    forward-recv ...................................: (0.00, 400.12)\n"
    assert top(_minmax((1.3, 121.9), (0.5, 0.7), (0.04, 120.2), (5.5, 126.6), extra=recv)) is None
    # one slow interval in four reports
    once = _minmax((1.3, 121.9), (0.5, 0.7), (0.04, 120.2), (5.5, 126.6), n=1) + _minmax((1.2, 1.8), (0.4, 0.44),
                                                                                           (0.04, 0.5), (4.4, 5.1), n=3)
    assert top(once) is None


def test_megatron_core_validation_errors_are_config_errors():
    for line, rule in (
        ("AssertionError: global batch size (10) is not divisible by micro batch size (4) times data parallel size (2)",
         "megatron-batch-not-divisible"),
        ("RuntimeError: world_size (2) is not divisible by 4", "megatron-parallel-sizes"),
        ("ValueError: num_attention_heads (6) must be a multiple of tensor_model_parallel_size (4).", "megatron-heads-tp"),
        ("ValueError: num_query_groups (3) must be a multiple or divisor of tensor_model_parallel_size (2).",
         "megatron-heads-tp"),
        ("AssertionError: One or both of the .idx and .bin files cannot be found at the path prefix /d/x_text_document",
         "megatron-data-prefix-missing"),
        ("megatron.core.dist_checkpointing.core.CheckpointingException: Global shape mismatch for loaded "
         "(torch.Size([4, 8])) and expected ((4, 16)) tensor for key decoder.layers.0.mlp.linear_fc1.weight",
         "megatron-dist-checkpoint-mismatch"),
        ("KeyError: \"decoder.layers.1.mlp.linear_fc1.weight from model not in state dict: ['decoder.layers.0']\"",
         "megatron-dist-checkpoint-mismatch"),
        ("nemo.utils.exp_manager.NotFoundError: There were no checkpoints found in checkpoint_dir or no checkpoint "
         "folder at checkpoint_dir :/r/checkpoints. Cannot resume.", "nemo-resume-no-checkpoint"),
    ):
        f = top(line + "\n")
        assert f is not None and f.rule == rule and f.category == "config_error", (line, f)
    shape = top("CheckpointingException: Global shape mismatch for loaded (torch.Size([4, 8])) and expected ((4, 16)) "
                "tensor for key decoder.layers.0.mlp.linear_fc1.weight\n")
    assert "decoder.layers.0.mlp.linear_fc1.weight" in shape.title
    gbs = top("AssertionError: global batch size (12) is not divisible by micro batch size (4) times data parallel size (2)\n")
    assert "--global-batch-size 8 (or 16)" in gbs.fixes[0].advice


def test_nemo_training_from_scratch_is_no_error():
    assert top("[NeMo W 2026-12-06 09:00:01 exp_manager:999] There were no checkpoints found in checkpoint_dir or no "
               "checkpoint folder at checkpoint_dir :/r/checkpoints. Training from scratch.\n") is None


def test_rerun_verdicts():
    pre = "ERROR:megatron.core.rerun_state_machine:"
    f = top(pre + "Rank 0, node gpu-7, device 3, iteration #6: First rerun: unexpected result is not reproducible within "
            "the tolerance (1.9 != nan)!\n" + pre + "Rank 0, node gpu-7, device 3, iteration #6: Possible transient error!!\n")
    assert f.rule == "hw-megatron-result-not-reproducible" and "transient" in f.title
    f = top(pre + "Unexpected result 989.48 on rank 0 at iteration #7 invocation #1 (message='Spiky loss')\n")
    assert f.rule == "megatron-spiky-loss" and f.severity == "warning"
    # a NaN rejected with reruns disabled: the rank and iteration come from the message (no rank prefix in NeMo logs)
    f = top("RuntimeError: Rank 5, node dgx-03, device 5, iteration 412: Unexpected result nan (message='found NaN in "
            "local grad norm for bucket #0 in backward pass before data-parallel communication collective')\n")
    assert f.category == "nan_loss" and f.ranks == [5] and f.steps == [412]
