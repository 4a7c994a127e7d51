"""Wordings of older library versions, captured running them for real (gen-o): transformers 4.36's
metric dicts without grad_norm, DeepSpeed < 0.14's CPU accelerator that needs Intel's extension,
a torch without NCCL asked for nccl (accelerate < 1.0 under DeepSpeed).

Fast: text in, no DeepSpeed needed.
"""
from __future__ import annotations

from dsdoctor.sources.logs import events_from_text
from test_formats_nan_readings import findings     # the findings above info of a log text


def hf_436(*losses: float) -> str:
    """transformers 4.36 Trainer.log rows: no grad_norm key."""
    return "".join(f"{{'loss': {v}, 'learning_rate': 2e-05, 'epoch': {i / 100:.2f}}}\n" for i, v in enumerate(losses))


def test_recogniser_marks_a_loss_row_without_grad_norm():
    evs = [e for e in events_from_text(hf_436(5.5) + "{'loss': 5.4, 'grad_norm': 1.2, 'learning_rate': 2e-05}\n"
                                      "{'eval_loss': 0.0, 'eval_runtime': 1.0, 'epoch': 1.0}\n")
           if e.kind == "loss"]
    assert [e.data.get("grad_norm_logged") for e in evs] == [False, True, None]


def test_real_loss_then_exact_zeros_without_grad_norm_is_a_hidden_nan():
    (f,) = findings(hf_436(5.56, 5.55, 5.56, 0.0, 0.0, 0.0, 0.0))
    assert f.rule == "nan-loss-zero-loss-filtered" and f.category == "nan_loss"
    assert "'loss': 0.0" in f.evidence[0].text and "4 logged steps" in f.summary


def test_real_loss_then_exact_zeros_beside_a_finite_grad_norm_is_a_hidden_nan():
    # transformers 4.46 + DeepSpeed 0.16.9 (bf16, ZeRO-2), a NaN written into the weights at step 4
    rows = [(5.5625, 1.589), (5.5938, 1.7667)] + [(0.0, 1.4142135381698608)] * 5
    log = "".join(f"{{'loss': {v}, 'grad_norm': {g}, 'learning_rate': 2e-05, 'epoch': 0.0{i}}}\n"
                  for i, (v, g) in enumerate(rows))
    (f,) = findings(log)
    assert f.rule == "nan-loss-zero-loss-filtered" and "does not show it either" in f.summary


def test_loss_converging_to_zero_or_two_zeros_is_not_nan():
    assert findings(hf_436(0.9, 0.05, 0.004, 0.0003, 0.0, 0.0, 0.0, 0.0)) == []
    assert findings(hf_436(1.9, 0.0, 0.0, 1.8, 1.7)) == []
    # eval rows carry no grad_norm either: an eval loss of 0 is not a training NaN
    assert findings(hf_436(2.0) + "{'eval_loss': 0.0, 'epoch': 1.0}\n" * 4) == []


def test_ds_cpu_accelerator_without_intel_extension():
    log = ("Traceback (most recent call last):\n"
           "  File \"/opt/venv/lib/python3.11/site-packages/deepspeed/accelerator/real_accelerator.py\", line 64, in get_accelerator\n"
           "    import intel_extension_for_pytorch  # noqa: F401 # type: ignore\n"
           "ModuleNotFoundError: No module named 'intel_extension_for_pytorch'\n\n"
           "During handling of the above exception, another exception occurred:\n\n"
           "Traceback (most recent call last):\n"
           "  File \"train.py\", line 2, in <module>\n    import deepspeed\n"
           "  File \"/opt/venv/lib/python3.11/site-packages/deepspeed/accelerator/real_accelerator.py\", line 66, in get_accelerator\n"
           "    raise ValueError(\n"
           "ValueError: CPU_Accelerator requires intel_extension_for_pytorch, which is not installed on this system.\n")
    f = findings(log)[0]
    assert f.rule == "env-ds-accelerator-needs-intel-extension" and f.category == "environment"
    assert "0.14" in f.fixes[0].advice


def test_torch_without_nccl_is_the_install_not_the_network():
    log = ("[rank1]:     raise RuntimeError(\"Distributed package doesn't have NCCL built in\")\n"
           "[rank1]: RuntimeError: Distributed package doesn't have NCCL built in\n")
    f = findings(log)[0]
    assert f.rule == "env-torch-without-nccl" and f.category == "environment"


def test_a_library_calling_another_with_a_keyword_it_lacks_is_a_version_mismatch():
    from dsdoctor.detect.families import classify
    msg = "Accelerator.unwrap_model() got an unexpected keyword argument 'keep_torch_compile'"
    assert classify("TypeError", msg, "/opt/venv/lib/python3.11/site-packages/transformers/trainer.py:_wrap_model").name \
        == "api_mismatch"
    assert classify("TypeError", msg, "train.py:main").name != "api_mismatch"          # the script's own call
    assert classify("TypeError", "WarmupLR.__init__() got an unexpected keyword argument 'warmup_max'",
                    "/opt/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py:_scheduler_from_config"
                    ).name != "api_mismatch"                                            # a constructor: passed-through


def test_an_rl_trainers_zero_policy_loss_is_not_the_nan_filter():
    # TRL's GRPO logs its policy loss as 0.0 on many healthy steps (group-normalised advantages, beta 0)
    row = ("{{'loss': {loss}, 'grad_norm': 0.41, 'learning_rate': 1e-06, 'reward': 0.31, 'reward_std': 0.22, "
           "'rewards/accuracy_reward/mean': 0.31, 'kl': 0.0, 'epoch': 0.0{i}}}\n")
    text = row.format(loss=0.0123, i=1) + "".join(row.format(loss=0.0, i=i) for i in range(2, 7))
    assert not [f for f in findings(text) if f.category == "nan_loss"]
