"""The fine-tuning stack around DeepSpeed run for real (part R: peft, trl, datasets, safetensors,
huggingface_hub, bitsandbytes on the CPU; fixtures/excerpts/gen_r_*.log): the recognisers and
families its captures needed."""
from __future__ import annotations

from dsdoctor.detect.families import classify
from dsdoctor.sources.logs import events_from_text

# transformers 5.25 core_model_loading.py's bar, then the Trainer's (a real capture's lines)
LOAD_BAR = "Loading weights: 100%|██████████| 21/21 [00:00<00:00, 16482.11it/s]\n"
TRAIN_BAR = " 88%|████████▊ | 7/8 [00:03<00:00,  2.23it/s]\n"


def test_the_weight_loading_bar_is_not_training_progress():
    assert not [e for e in events_from_text(LOAD_BAR) if e.kind == "throughput"]
    assert not [e for e in events_from_text("Writing model shards: 100%|█| 3/3 [00:00<00:00, 9.1it/s]\n")
                if e.kind == "throughput"]
    ev = [e for e in events_from_text(LOAD_BAR + TRAIN_BAR) if e.kind == "throughput"]
    assert [e.step for e in ev] == [7]


def test_the_scripts_call_with_a_renamed_argument_is_its_own_family():
    msg = "SFTConfig.__init__() got an unexpected keyword argument 'max_seq_length'"
    f = classify("TypeError", msg, "/work/sft.py:<module>")
    assert f.name == "script_api_version" and f.category == "config_error"
    assert classify("TypeError", "TrainingArguments.__init__() got an unexpected keyword argument "
                    "'evaluation_strategy'", "train.py:main").name == "script_api_version"
    # a library's own call is the libraries' versions; a scheduler's params come from the ds_config
    assert classify("TypeError", "Accelerator.unwrap_model() got an unexpected keyword argument 'x'",
                    "/opt/venv/lib/python3.11/site-packages/transformers/trainer.py:_wrap_model").name == "api_mismatch"
    assert classify("TypeError", msg, "/opt/venv/lib/python3.11/site-packages/trl/scripts/sft.py:main").name \
        != "script_api_version"
    assert classify("TypeError", "WarmupLR.__init__() got an unexpected keyword argument 'warmup_max'",
                    "/opt/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py:_scheduler_from_config"
                    ).name != "script_api_version"
    assert classify("TypeError", "forward() got an unexpected keyword argument 'labels'", "train.py:main").name \
        != "script_api_version"
