"""Post-training stacks that drive DeepSpeed (TRL, OpenRLHF, DeepSpeed-Chat's hybrid engine, LLaMA-Factory,
ms-swift): their metric rows, status lines and argument checks, and the healthy rows that look like failures.

Fast: text in, no DeepSpeed needed.
"""
from __future__ import annotations

from dsdoctor.detect.families import classify

from diagnose_text import events, findings as all_findings


def findings(text: str):
    return [f for f in all_findings(text) if f.severity != "info"]


def grpo_row(loss, reward_func_mean="0.41", frac_zero_std="0.25", grad_norm="0.31", step=1):
    # trl grpo_trainer.py _generate_and_score_completions / log, printed by transformers 5.x as 4g strings
    return (f"{{'loss': '{loss}', 'grad_norm': '{grad_norm}', 'learning_rate': '1e-06', 'num_tokens': '{4096 * step}', "
            f"'rewards/code_reward/mean': '{reward_func_mean}', 'rewards/code_reward/std': '0.2', 'reward': '0.4', "
            f"'reward_std': '0.3', 'frac_reward_zero_std': '{frac_zero_std}', 'kl': '0.001', 'epoch': '0.0{step}'}}\n")


def test_a_reward_function_that_gave_no_reward_is_no_divergence():
    # a reward function returning None for the whole batch: torch.nanmean of an all-NaN column
    log = "".join(grpo_row(f"{0.002 * s:.3g}", reward_func_mean="nan" if s % 2 else "0.5", step=s) for s in range(1, 9))
    assert findings(log) == []


def test_a_nan_side_column_still_counts_when_the_loss_is_zero_or_absent():
    # TRL's DPO with the Trainer's logging_nan_inf_filter: 'loss' 0.0 while the rewards are nan
    dpo = "".join("{'loss': 0.0, 'grad_norm': 0.0, 'rewards/chosen': nan, 'rewards/margins': nan, 'epoch': 0.1}\n"
                  for _ in range(3))
    assert findings(dpo)[0].category == "nan_loss"
    # TRL's old PPO rows have no 'loss' key at all
    ppo = "{'objective/kl': nan, 'objective/entropy': nan, 'policy/approxkl_avg': nan, 'episode': 64}\n"
    assert findings(ppo)[0].category == "nan_loss"


def test_equal_rewards_in_every_group_make_a_real_zero_loss():
    log = "".join(grpo_row("0", frac_zero_std="1", grad_norm="0", step=s) for s in range(1, 8))
    log += "".join(grpo_row("0.004", step=s) for s in range(8, 12))
    assert findings(log) == []
    # without the groups' word, the same zeros are the Trainer's filtered NaNs
    plain = "".join(grpo_row("0", frac_zero_std="0.5", grad_norm="0", step=s) for s in range(1, 8))
    assert findings(plain)[0].category == "nan_loss"


def hybrid(sps: float) -> str:
    # deepspeed/runtime/hybrid_engine.py DeepSpeedHybridEngine.step (DeepSpeed-Chat's RLHF step)
    return (f"|E2E latency={32 / sps:.2f}s |Gather latency=0.00s (0.00%) |Generate time={16 / sps:.2f}s (50.00%) "
            f"|Training time={13 / sps:.2f}s (40.62%) |Others={3 / sps:.2f} (9.38%)|CurSamplesPerSec={sps:.2f} "
            f"|AvgSamplesPerSec=9.10\n")


def test_the_hybrid_engines_samples_per_second_drop():
    log = "".join(hybrid(10.2 + 0.1 * (i % 3)) for i in range(14)) + "".join(hybrid(4.4 + 0.1 * (i % 2)) for i in range(16))
    (f,) = findings(log)
    assert f.category == "straggler" and any("CurSamplesPerSec=4." in e.text for e in f.evidence)
    steady = "".join(hybrid(10.2 + 0.3 * (i % 4)) for i in range(30))
    assert findings(steady) == []


def openrlhf(step: int, total: float, loss: str = "-0.0100") -> str:
    # openrlhf/trainer/ppo_trainer.py PPOTrainer.fit: logger.info(f"✨ Global step {global_step}: {log_status}")
    return (f"(PolicyModelActor pid=3301, ip=10.0.0.1) INFO 06-11 03:{step:02d}:02 ppo_trainer.py:551] ✨ Global step "
            f"{step}: {{'policy_loss': {loss}, 'kl': 0.0004, 'reward': 0.3, 'timing/generation': {total / 2:.1f}, "
            f"'timing/step_total': {total:.1f}}}\n")


def test_openrlhf_status_lines_give_steps_losses_and_step_times():
    kinds = {e.kind: e for e in events(openrlhf(7, 160.0))}
    assert kinds["loss"].data["value"] == -0.01
    assert kinds["loss"].step == 7 and kinds["throughput"].data["iter_ms"] == 160000.0
    slower = "".join(openrlhf(s, 160.0 if s < 7 else 520.0) for s in range(1, 15))
    (f,) = findings(slower)
    assert f.category == "straggler"
    jitter = "".join(openrlhf(s, 160.0 + (s * 37) % 30 - 15 + (240 if s % 10 == 0 else 0)) for s in range(1, 25))
    assert findings(jitter) == []


def test_front_end_argument_checks_and_the_generation_server():
    trl_cfg = "trl/trainer/grpo_config.py:__post_init__"
    assert classify("ValueError", "generation_batch_size (12) must be divisible by num_generations (8).",
                    trl_cfg, [trl_cfg]).name == "frontend_args"
    dpo = "trl/trainer/dpo_trainer.py:__init__"
    assert classify("ValueError", "You passed both a ref_model and a peft_config.", dpo, [dpo]).name == "frontend_args"
    lf = "llamafactory/hparams/parser.py:get_train_args"
    assert classify("ValueError", "Please specify `max_steps` in streaming mode.", lf, [lf]).name == "frontend_args"
    # a ValueError of the training step itself is not an argument check
    step = "trl/trainer/grpo_trainer.py:_calculate_rewards"
    assert classify("ValueError", "The reward function 'f' returned 3 rewards, but 4 were expected.", step,
                    [step]).name != "frontend_args"
    client = "trl/generation/vllm_client.py:check_server"
    fam = classify("ConnectionError", "The vLLM server can't be reached at http://0.0.0.0:8000 after 240.0 seconds. "
                   "Make sure the server is running by running `vllm serve`.", client, [client])
    assert fam.name == "generation_server" and fam.category == "environment"


def test_a_weight_sync_group_that_the_engines_never_joined():
    # openrlhf trainer/ray/ppo_actor.py _init_vllm_weight_sync -> utils/distributed_util.py
    # stateless_init_process_group -> vLLM's StatelessProcessGroup.create (a TCPStore of its own)
    tb = ("Traceback (most recent call last):\n"
          '  File "/openrlhf/openrlhf/trainer/ray/ppo_actor.py", line 147, in _init_vllm_weight_sync\n'
          "    self._model_update_group = stateless_init_process_group(\n"
          '  File "/openrlhf/openrlhf/utils/distributed_util.py", line 76, in stateless_init_process_group\n'
          "    pg = StatelessProcessGroup.create(host=master_address, port=master_port, rank=rank, world_size=world_size)\n"
          '  File "/usr/local/lib/python3.11/site-packages/vllm/distributed/utils.py", line 250, in create\n'
          "    store = TCPStore(\n"
          "torch.distributed.DistStoreError: Timed out after 901 seconds waiting for clients. 2/3 clients joined.\n")
    (f,) = findings(tb)
    assert f.rule == "rendezvous-timeout-weight-sync" and f.category == "nccl_error"
    # the job's own store, waiting for the same clients: the start-up rendezvous
    (g,) = findings(tb.split("\n", 1)[0] + "\n" + tb.rsplit("\n", 2)[-2] + "\n")
    assert g.rule == "rendezvous-timeout"
