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


def test_a_pretrained_models_missing_or_cut_shard_is_its_files_not_a_checkpoint():
    load = ["/opt/venv/lib/python3.11/site-packages/transformers/modeling_utils.py:from_pretrained",
            "/opt/venv/lib/python3.11/site-packages/transformers/modeling_utils.py:_load_pretrained_model"]
    f = classify("FileNotFoundError", "No such file or directory: /m/model-00006-of-00006.safetensors", load[-1], load)
    assert f.name == "model_files_incomplete" and f.category == "environment"
    assert classify("SafetensorError", "Error while deserializing header: incomplete metadata, file not fully covered",
                    load[-1], load).name == "model_files_incomplete"
    # the same header error resuming a training checkpoint stays a damaged checkpoint
    assert classify("SafetensorError", "Error while deserializing header: MetadataIncompleteBuffer",
                    "/opt/venv/lib/python3.11/site-packages/safetensors/torch.py:load_file").name == "checkpoint_corrupt"
    # a file the script opens itself is not the model's files
    assert classify("FileNotFoundError", "[Errno 2] No such file or directory: 'data/train.jsonl'", "train.py:main"
                    ).name != "model_files_incomplete"


def test_a_model_name_that_is_no_folder_and_no_repo_and_a_gated_repo():
    f = classify("OSError", "Repo id must be in the form 'repo_name' or 'namespace/repo_name': './output/checkpoint-500'. "
                 "Use `repo_type` argument if needed.", "/opt/venv/lib/python3.11/site-packages/transformers/utils/hub.py:cached_files")
    assert f.name == "model_path" and f.category == "config_error"
    assert classify("OSError", "You are trying to access a gated repo.").name == "hub_access"
    assert classify("OSError", "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
                    "them in the cached files.").name == "hub_unreachable"


def test_a_missing_dataset_column_read_by_a_map_function():
    site = "/opt/venv/lib/python3.11/site-packages/datasets/formatting/formatting.py:__getitem__"
    assert classify("KeyError", "'rejected'", site).name == "dataset_column"
    assert classify("ValueError", "Column name ['x'] not in the dataset. Current columns in the dataset: ['text']",
                    "/opt/venv/lib/python3.11/site-packages/datasets/arrow_dataset.py:remove_columns").name == "dataset_column"
    assert classify("KeyError", "'params'", "train.py:main").name != "dataset_column"


def test_resize_token_embeddings_on_a_zero3_module_is_the_partitioned_weight():
    site = "/opt/venv/lib/python3.11/site-packages/transformers/modeling_utils.py:_get_resized_embeddings"
    assert classify("ValueError", "not enough values to unpack (expected 2, got 1)", site).name == "zero3_partitioned"
    assert classify("ValueError", "not enough values to unpack (expected 2, got 1)", "train.py:main").name \
        != "zero3_partitioned"


def test_a_token_id_past_the_embedding_table():
    frames = ["/opt/venv/lib/python3.11/site-packages/torch/nn/modules/sparse.py:forward",
              "/opt/venv/lib/python3.11/site-packages/torch/nn/functional.py:embedding"]
    assert classify("IndexError", "index out of range in self", frames[-1], frames).name == "token_id_range"
    assert classify("IndexError", "list index out of range", "train.py:main").name != "token_id_range"
