"""What an issue body tells besides the log (dsdoctor/issue): a pasted ds_config read as the
run's config, the versions the tools' reports state, the launch command's world size."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import dsdoctor
from dsdoctor.issue import read_issue
from dsdoctor.issue.configs import choose, find_configs
from dsdoctor.issue.launch import launch_commands
from dsdoctor.issue.versions import stated_versions

ROOT = Path(__file__).resolve().parent.parent
FX = ROOT / "fixtures" / "excerpts"
TEXT = ROOT / "scripts" / "issue_text"


def _configs(text: str):
    return find_configs(text.splitlines())[0]


def test_fenced_json_with_comment_trailing_comma_and_auto():
    found = _configs("my config:\n```json\n" + (TEXT / "ds_config.json").read_text() + "```\n")
    assert len(found) == 1 and found[0].how == "JSON"
    assert found[0].config["zero_optimization"]["stage"] == 2 and found[0].config["train_batch_size"] == "auto"
    assert (found[0].first_line, found[0].last_line) == (3, 48)


def test_unfenced_json_after_cat_gets_its_file_name():
    found = _configs('$ cat configs/zero3.json\n{\n  "train_batch_size": 8,\n  "zero_optimization": {"stage": 3}\n}\n')
    assert found[0].config == {"train_batch_size": 8, "zero_optimization": {"stage": 3}}
    assert found[0].names == {"zero3.json"}


def test_python_dict_literal_and_kwarg():
    text = ('ds_config = {\n    "train_micro_batch_size_per_gpu": 2,  # per GPU\n    "fp16": {"enabled": True},\n'
            '    "zero_optimization": {"stage": 2, "offload_optimizer": None},\n}\n'
            'args = TrainingArguments("out", deepspeed={"zero_optimization": {"stage": 3}, "bf16": {"enabled": "auto"}})\n')
    found = _configs(text)
    assert [c.how for c in found] == ["Python dict", "JSON"]
    assert found[0].config["fp16"] == {"enabled": True} and found[0].config["zero_optimization"]["offload_optimizer"] is None
    assert found[1].config["zero_optimization"] == {"stage": 3}


def test_accelerate_yaml_inline_keys_and_config_file():
    text = ("compute_environment: LOCAL_MACHINE\ndeepspeed_config:\n  gradient_accumulation_steps: 4\n"
            "  offload_optimizer_device: cpu\n  zero_stage: 2\ndistributed_type: DEEPSPEED\nmixed_precision: bf16\n")
    found, files = find_configs(text.splitlines())
    assert found[0].how == "accelerate YAML" and not files
    assert found[0].config["zero_optimization"] == {"stage": 2, "offload_optimizer": {"device": "cpu"}}
    assert found[0].config["bf16"] == {"enabled": True} and found[0].config["gradient_accumulation_steps"] == 4
    found, files = find_configs("deepspeed_config:\n  deepspeed_config_file: /cfg/ds_z3.json\n  zero3_init_flag: true\n".splitlines())
    assert not found and files == {"ds_z3.json"}


def test_accelerate_env_dict_is_accelerates_keys():
    """`accelerate env` prints the default config's deepspeed section as a dict of accelerate's own keys
    (zero_stage, offload_optimizer_device): read as accelerate maps them, not as an unknown-key ds_config."""
    text = ("- `Accelerate` default config:\n\t- distributed_type: DEEPSPEED\n\t- mixed_precision: bf16\n"
            "\t- deepspeed_config: {'gradient_accumulation_steps': 4, 'offload_optimizer_device': 'none', "
            "'offload_param_device': 'none', 'zero3_init_flag': False, 'zero_stage': 2}\n")
    found = _configs(text)
    assert [c.how for c in found] == ["accelerate config"]
    assert found[0].config["zero_optimization"] == {"stage": 2, "offload_optimizer": {"device": "none"},
                                                    "offload_param": {"device": "none"}}
    assert found[0].config["bf16"] == {"enabled": True} and found[0].config["gradient_accumulation_steps"] == 4


def test_not_a_config():
    # a metrics line, a model's config.json, DeepSpeed's own printed config (read as facts elsewhere)
    text = ('{"loss": 1.25, "learning_rate": 2e-05, "epoch": 0.1}\n{\n  "hidden_size": 768,\n  "num_attention_heads": 12\n}\n'
            '[2026-01-01 00:00:00,000] [INFO] [config.py:1000:print]   json = {\n    "train_batch_size": 8,\n'
            '    "zero_optimization": {"stage": 2}\n}\n')
    assert _configs(text) == []


def test_two_configs_the_launch_command_names_one_else_the_last():
    text = ('first try, a.json:\n```json\n{"train_batch_size": 8}\n```\nthen b.json:\n```json\n{"train_batch_size": 16}\n```\n')
    found = _configs(text)
    assert choose(found, {"a.json"})[0].config == {"train_batch_size": 8}
    cfg, why = choose(found, set())
    assert cfg.config == {"train_batch_size": 16} and "last of 2" in why
    same = _configs(text.replace("16", "8"))          # the same config pasted twice is one
    assert len(same) == 1


def test_versions_from_the_tools_reports():
    v = stated_versions((TEXT / "ds_report.txt").read_text().splitlines())
    assert v["ds_version"][0] == "0.19.8" and v["torch_version"][0] == "2.13.0+cpu"
    v = stated_versions((TEXT / "transformers_env.txt").read_text().splitlines())
    assert (v["transformers_version"][0], v["python_version"][0], v["accelerate_version"][0]) == ("5.25.0", "3.11.7", "1.16.0")
    v = stated_versions((TEXT / "pip_list.txt").read_text().splitlines())
    assert v["ds_version"][0] == "0.19.8" and v["torch_version"][0] == "2.13.0+cpu"
    v = stated_versions(["[pip3] deepspeed==0.16.4", "[pip3] torch==2.5.1+cu124", "CUDA used to build PyTorch: 12.4",
                         "GPU models and configuration: GPU 0: NVIDIA A100-SXM4-80GB", "I use deepspeed 0.15 (newest)"])
    assert v == {"ds_version": ("0.16.4", 1), "torch_version": ("2.5.1+cu124", 2), "cuda_version": ("12.4", 3),
                 "gpu_name": ("NVIDIA A100-SXM4-80GB", 4)}


@pytest.mark.parametrize("line, ws", [
    ("$ deepspeed --num_gpus 8 train.py --deepspeed ds.json", 8),
    ("deepspeed --num_gpus=4 --num_nodes 2 train.py", 8),
    ("torchrun --nproc_per_node=4 --nnodes 2 train.py", 8),
    ("python -m torch.distributed.run --nproc-per-node 2 train.py", 2),
    ("accelerate launch --num_processes 8 --config_file a.yaml train.py", 8),
    ("srun -N 2 --ntasks-per-node 8 python train.py", 16),
    ("mpirun -np 16 python train.py", 16),
    ("I run it with `torchrun --nproc_per_node 2 train.py` on one node", 2),
    ("srun -N 2 bash run.sh", None),                    # nodes without ranks per node
    ("torchrun --nnodes 1:4 --nproc_per_node 8 train.py", None),   # an elastic range
])
def test_launch_command_world_size(line, ws):
    cmds = launch_commands([line])
    assert cmds and cmds[0][2] == ws


def test_a_log_line_is_not_a_launch_command():
    assert launch_commands(["[2026-01-01 00:00:00,000] [INFO] [launch.py:256:main] process 1 spawned with command: "
                            "['/usr/bin/python', '-u', 'train.py', '--local_rank=0']"]) == []


def test_the_log_wins_over_a_contradicting_config():
    text = '```json\n{"train_batch_size": 8, "zero_optimization": {"stage": 2}}\n```\n'
    issue = read_issue(text, "x", {"zero_stage": 3})
    assert issue.config is None and "contradicts" in issue.rejected
    assert read_issue(text, "x", {"zero_stage": 2}).config is not None


def test_fixture_config_checked_patch_and_facts():
    r = dsdoctor.analyze(FX / "gen_ac_issue_hf_batch_mismatch_config_pasted.log", validate=False)
    assert r.findings[0].rule == "cfg-batch-mismatch"
    assert r.config is not None and r.config["train_batch_size"] == 32
    diffs = [fx.diff for fx in r.findings[0].fixes if getattr(fx, "diff", None)]
    assert diffs and any('"train_batch_size": 16' in d for d in diffs)
    assert r.facts["ds_version"] == "0.19.8" and r.facts["transformers_version"] == "5.25.0"
    doc = r.to_dict()
    assert doc["issue_text"]["config"]["first_line"] == 22 and doc["issue_text"]["versions"]["torch_version"]["value"] == "2.13.0+cpu"


def test_fixture_world_size_from_the_launch_command():
    r = dsdoctor.analyze(FX / "gen_ac_issue_ds_fp16_collapse_cat_config.log", validate=False)
    assert r.facts["world_size"] == 1 and r.issue.world_size[0] == 1
    assert r.config["fp16"]["enabled"] is True


def test_a_plain_log_reads_no_issue_text():
    r = dsdoctor.analyze(FX / "gen_ac_issue_code_fp16_collapse_python_dict.log", validate=False)
    assert r.issue is not None and r.issue.config.how == "Python dict"
    plain = ROOT / "fixtures" / "excerpts" / "cfg_batch_mismatch.log"
    if plain.exists():
        assert dsdoctor.analyze(plain, validate=False).issue is None


def test_cli_write_config_from_the_pasted_config(tmp_path):
    out = tmp_path / "fixed.json"
    # the app's own command in this process (tests/cli_invoke.py: the same exit code and output as `python -m
    # dsdoctor`, without ~3 s of start-up and DeepSpeed import); the stdin test below runs the real entry point
    from cli_invoke import invoke_cli
    p = invoke_cli(["analyze", str(FX / "gen_ac_issue_ds_fp16_collapse_cat_config.log"), "--write-config", str(out), "--json"])
    assert p.exception is None or isinstance(p.exception, SystemExit), repr(p.exception)
    assert p.exit_code == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["issue_text"]["config"]["how"] == "JSON" and doc["written_config"] == str(out)
    fixed = json.loads(out.read_text())
    assert fixed["bf16"] == {"enabled": True} and fixed["fp16"]["enabled"] is False


def test_nvidia_smi_table_and_gpu_bf16_support():
    from dsdoctor.issue.gpus import bf16_supported
    v = stated_versions((FX / "gen_e_env_cuda_devices_busy_two_attempts.log").read_text().splitlines())
    assert v["gpu_name"][0] == "NVIDIA A100-SXM4-80GB" and v["driver_version"][0] == "535.161.08"
    assert [bf16_supported(n) for n in ("NVIDIA A100-SXM4-80GB", "Tesla V100-SXM2-32GB", "Tesla T4",
                                        "NVIDIA GeForce RTX 3090", "NVIDIA H100 80GB HBM3", "AMD Instinct MI250X")] == \
        [True, False, False, True, True, None]


def test_a_gpu_without_bf16_drops_the_bf16_fix(tmp_path):
    # transformers/cli/system.py prints '- GPU type: {torch.cuda.get_device_name()}' when CUDA is there
    text = (FX / "gen_ac_issue_ds_fp16_collapse_cat_config.log").read_text()
    titles = lambda r: [fx.title for fx in r.findings[0].fixes]   # noqa: E731
    before = dsdoctor.analyze(FX / "gen_ac_issue_ds_fp16_collapse_cat_config.log", validate=False)
    assert any("bf16" in t for t in titles(before))
    p = tmp_path / "issue.md"
    p.write_text(text.replace("**System info**", "**System info**\n\n- GPU type: Tesla V100-SXM2-32GB\n"))
    after = dsdoctor.analyze(p, validate=False)
    assert after.facts["bf16_supported"] is False and after.findings[0].rule == before.findings[0].rule
    assert not any("bf16" in t for t in titles(after))


def test_stdin_issue_body_is_read_twice():
    p = subprocess.run([sys.executable, "-m", "dsdoctor", "analyze", "-", "--json"], capture_output=True, text=True,
                       input=(FX / "gen_ac_issue_hf_batch_mismatch_config_pasted.log").read_text(), timeout=300)
    doc = json.loads(p.stdout)
    assert doc["findings"][0]["rule"] == "cfg-batch-mismatch" and doc["issue_text"]["config"]["first_line"] == 22


def test_the_pasted_config_is_linted_after_the_log_findings():
    r = dsdoctor.analyze(FX / "gen_ac_issue_code_fp16_collapse_python_dict.log", validate=False)
    assert r.findings[0].rule == "loss-scale-collapse"
    lint = [f for f in r.findings if f.rule == "cfg-steps-per-print-unset"]
    assert lint and r.findings.index(lint[0]) > 0
    # the batch assertion the log shows is not said twice by lint of the same config
    r = dsdoctor.analyze(FX / "gen_ac_issue_hf_batch_mismatch_config_pasted.log", validate=False)
    assert [f.rule for f in r.findings].count("cfg-batch-mismatch") == 1


def test_a_config_that_takes_the_logs_diagnosis_away_is_not_used(tmp_path):
    # a ZeRO-3 error whose log states no stage, with a stage-2 config pasted (part Y's issue_hf wrapping)
    sys.path.insert(0, str(ROOT / "scripts"))
    from issue_wrappings import issue_hf
    p = tmp_path / "issue.md"
    p.write_text(issue_hf((FX / "gen_q_z3_state_dict.log").read_text()))
    r = dsdoctor.analyze(p, validate=False)
    assert r.findings[0].rule == "zero3-partitioned-param-used"
    assert r.config is None and "does not hold with it" in r.issue.rejected
