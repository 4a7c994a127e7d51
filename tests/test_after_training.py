"""Part AA: what runs after and between training runs (saving, converting, reloading), run for real here."""
from __future__ import annotations

from dsdoctor.api import analyze
from dsdoctor.detect.families import classify

# safetensors/torch.py _evaluate_tensors_for_save raises a triple-quoted message: its first line is the
# one after 'RuntimeError: ' (zero_to_fp32.py --safe_serialization of GPT-2, run here)
TIED = """Traceback (most recent call last):
  File "/ckpt/zero_to_fp32.py", line 592, in convert_zero_checkpoint_to_fp32_state_dict
    save_file(shard_state_dict, output_path, metadata={"format": "pt"})
  File "/venv/lib/python3.11/site-packages/safetensors/torch.py", line 557, in _evaluate_tensors_for_save
    raise RuntimeError(
RuntimeError: 
            Some tensors share memory, this will lead to duplicate memory on disk and potential differences when loading them again: [{'lm_head.weight', 'transformer.wte.weight'}].
            A potential way to correctly save your model is to use `save_model`.
"""


def _top(tmp_path, text):
    log = tmp_path / "run.log"
    log.write_text(text)
    return analyze(log).findings[0]


def test_a_message_on_the_line_after_the_exception_name_is_read(tmp_path):
    top = _top(tmp_path, TIED)
    assert top.rule == "failure-safetensors-shared-tensors"
    assert any("Some tensors share memory" in e.text for e in top.evidence)


def test_the_message_line_must_follow_an_empty_exception(tmp_path):
    # the same words quoted far from any exception (a print, a warning) are no message of one
    text = TIED.replace("RuntimeError: \n", "RuntimeError: boom\n")
    top = _top(tmp_path, text)
    assert top.rule != "failure-safetensors-shared-tensors"
    assert "boom" in top.summary


def test_a_model_folder_without_weights_is_its_own_family():
    # transformers modeling_utils.py _get_resolved_checkpoint_files
    fam = classify("OSError", "Error no file named model.safetensors, or pytorch_model.bin, found in directory out.")
    assert fam.name == "model_weights_absent"
    assert classify("OSError", "Error no file named model.safetensors found in directory out.").name == \
        "model_weights_absent"
    assert classify("OSError", "[Errno 2] No such file or directory: 'out'").name != "model_weights_absent"


def test_a_missing_16bit_weights_file_read_back_is_the_same_family():
    # torch.load of save_16bit_model's file under ZeRO-3 without the gather key (run here)
    msg = "[Errno 2] No such file or directory: '/tmp/out/pytorch_model.bin'"
    assert classify("FileNotFoundError", msg, "torch/serialization.py:__init__").name == "model_weights_absent"
    # a resume tag's file is not
    msg = "[Errno 2] No such file or directory: '/ckpt/global_step9/mp_rank_00_model_states.pt'"
    assert classify("FileNotFoundError", msg, "torch/serialization.py:__init__").name != "model_weights_absent"


def test_a_zero_optimizer_layout_mismatch_is_not_only_the_setting():
    # deepspeed/runtime/zero/stage_1_and_2.py _load_legacy_checkpoint, raised here by a changed model
    msg = ("The ZeRO checkpoint parameter-alignment layout does not match the current "
           "zero_optimization.parameter_alignment setting. Load with the setting used to save the checkpoint, "
           "or disable optimizer-state loading for a module-only warm start.")
    assert classify("RuntimeError", msg, "deepspeed/runtime/zero/stage_1_and_2.py:_load_legacy_checkpoint").name == \
        "zero_optimizer_layout"


def test_a_rank_that_left_generate_first_gets_the_synced_gpus_fix():
    # fixtures/excerpts/gen_aa_zero3_generate_*: run here, 2 ranks under ZeRO-3 generating 4 and 16 tokens
    from pathlib import Path
    log = Path(__file__).resolve().parent.parent / "fixtures/excerpts/gen_aa_zero3_generate_ranks_finish_apart_no_synced_gpus.log"
    top = analyze(log).findings[0]
    assert top.rule == "rank-exited-early"
    assert "synced_gpus=True" in top.fixes[0].title
    assert "generated" in top.title
