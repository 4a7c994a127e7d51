"""DeepSpeed 0.19's newest features used the wrong way (part T; detect/ds_misuse.py, rule
failure-deepspeed-misuse): AutoTP, Ulysses sequence parallelism, Muon. Two misuses provoked for real
with the installed DeepSpeed on the CPU (1 rank, gloo), and the family of each raise site the fixtures
gen_t_* captured, with look-alikes that must not match."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dsdoctor.detect.families import classify

sys.path.insert(0, str(Path(__file__).parent))
from test_failure import ahead, diagnose, output_of, top  # noqa: E402
from test_ds_misuse import _PRELUDE  # noqa: E402

_NET = "m = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 1))\n"


def _misuse(code: str):
    f = top(output_of(_PRELUDE + code, timeout=300))
    assert f.rule == "failure-deepspeed-misuse" and f.category == "config_error", (f.rule, f.summary)
    return f


# both processes listed to start one test ahead (tests/run_ahead.py)
AUTOTP_PAST_THE_WORLD = _NET + ("deepspeed.initialize(model=m, model_parameters=m.parameters(), "
                                "config={**CFG, 'tensor_parallel': {'autotp_size': 2}})\n")
MUON_FOREIGN_PARAMETER = _NET + ("extra = nn.Parameter(torch.zeros(8, 8))\n"
                                 "deepspeed.initialize(model=m, model_parameters=[*m.parameters(), extra], "
                                 "config={**CFG, 'optimizer': {'type': 'Muon', 'params': {'lr': 1e-3}}, "
                                 "'zero_optimization': {'stage': 2}})\n")
for _code in (AUTOTP_PAST_THE_WORLD, MUON_FOREIGN_PARAMETER):
    ahead(_PRELUDE + _code, timeout=300)


def test_autotp_size_larger_than_the_world():
    # utils/groups.py _init_tp_mesh_device builds a (world // autotp_size, autotp_size) mesh: torch's
    # _pycute/layout.py raises a bare AssertionError
    f = _misuse(AUTOTP_PAST_THE_WORLD)
    assert f.fixes[0].title.startswith("Make AutoTP's tensor_parallel.autotp_size fit")


def test_muon_given_a_parameter_the_model_does_not_hold():
    f = _misuse(MUON_FOREIGN_PARAMETER)
    assert "needs every parameter tagged with use_muon" in f.evidence[0].text
    assert "use_muon" in f.fixes[0].advice


_DS = "/usr/lib/python3/site-packages/deepspeed/"
_TORCH = "/usr/lib/python3/site-packages/torch/"
_SP = _DS + "runtime/sequence_parallel/ulysses_sp.py:"


@pytest.mark.parametrize("type_,message,site,frames,family", [
    ("ValueError", "tensor_parallel.tp.tp_size (4) does not match tensor_parallel.autotp_size (2).",
     _DS + "runtime/engine.py:_apply_autotp_partitioning", [], "ds_autotp"),
    ("AssertionError", "Not able to determine model policy automatically. Please provide policy.",
     _DS + "module_inject/auto_tp.py:tp_parser", [], "ds_autotp"),
    ("AssertionError", "", _TORCH + "distributed/_pycute/layout.py:complement",
     [_TORCH + "distributed/_mesh_layout.py:remap_to_tensor", _TORCH + "distributed/device_mesh.py:mesh"],
     "ds_autotp"),
    ("ValueError", "Attention head count 3 is not divisible by SP size 2", _SP + "__init__", [], "ds_ulysses"),
    ("ValueError", "KV attention head count 3 is not divisible by SP size 2 or vice versa", _SP + "__init__", [],
     "ds_ulysses"),
    ("ValueError", "eager attn_implementation isn't currently supported by Ulysses sequence parallelism because it "
     "requires a 4D attention_mask (O(n²) memory).", _SP + "register_with_transformers", [], "ds_ulysses"),
    ("ValueError", "core_attn_implementation='sdpa' does not match model config attn_implementation='eager'. Set both "
     "to the same value", _SP + "register_with_transformers", [], "ds_ulysses"),
    ("ValueError", "batch's seqlen=15 isn't divisible by sp-size=2", _SP + "refill", [], "ds_ulysses"),
    ("ValueError", "Ulysses SP requires `position_ids` in every dataloader batch so that each token retains its "
     "correct global position", _SP + "refill", [], "ds_ulysses"),
    ("AssertionError", "[0]: query input tensor does not match the required shape", _SP + "forward", [],
     "ds_ulysses"),
    ("ValueError", "The Muon optimizer needs every parameter tagged with use_muon, and 1 are not.",
     _DS + "runtime/engine.py:_muon_param_groups", [], "ds_muon_params"),
    ("ValueError", "Zenflow must be used with cpu offload", _DS + "runtime/zenflow/zenflow_stage_1_and_2.py:"
     "_configure_zenflow", [], "ds_zenflow"),
    ("ValueError", "Select interval must be greater or equal to update interval",
     _DS + "runtime/zenflow/engine.py:configure_zenflow", [], "ds_zenflow"),
    ("Warning", "If use auto select strategy, select_interval will be set to 1 and select_strategy will be set to "
     "epoch, thus select_interval would be overwritten.", _DS + "runtime/zenflow/engine.py:configure_zenflow", [],
     "ds_zenflow"),
    ("RuntimeError", 'The Triton chunked cross-entropy backend needs CUDA logits and Triton; use backend="torch" to '
     "run elsewhere", _DS + "runtime/chunked_cross_entropy.py:_resolve_backend", [], "ds_chunked_ce"),
    ("AssertionError", "SuperOffload only supports NVIDIA CUDA GPUs, but found accelerator 'cpu'.",
     _DS + "runtime/superoffload/superoffload_stage3.py:<module>", [], "ds_superoffload"),
    ("ValueError", "Invalid for universal checkpoint: /ck/latest_universal does not exist",
     _DS + "runtime/engine.py:load_checkpoint", [], "checkpoint_missing"),
    ("huggingface_hub.errors.StrictDataclassClassValidationError", "Class validation error for validator "
     "'validate_architecture': ValueError: The hidden size (32) is not a multiple of the number of attention heads "
     "(3).", "/usr/lib/python3/site-packages/huggingface_hub/dataclasses.py:validate", [], "model_heads"),
])
def test_each_raise_site_is_its_family(type_, message, site, frames, family):
    fam = classify(type_, message, site, frames)
    assert (fam.name, fam.category) == (family, "config_error")


@pytest.mark.parametrize("type_,message,site,frames", [
    # runtime/torch_autocast.py _validate_auto_cast_settings; runtime/config.py get_torch_autocast_dtype's enum
    ("AssertionError", "Cannot enable both torch autocast and zero quantized weights",
     _DS + "runtime/torch_autocast.py:_validate_auto_cast_settings", []),
    ("ValueError", "'float8' is not a valid DtypeEnum", "/usr/lib/python3.11/enum.py:__new__",
     ["/usr/lib/python3.11/enum.py:__call__", _DS + "runtime/config.py:get_torch_autocast_dtype"]),
])
def test_refused_settings_are_the_config_family(type_, message, site, frames):
    assert classify(type_, message, site, frames).name == "config"
    # the same words from the script's own code are not DeepSpeed's config
    assert classify(type_, message, "/w/train.py:<module>", []).name != "config"


@pytest.mark.parametrize("type_,message,site,frames", [
    ("AssertionError", "", "/w/train.py:<module>", []),                                # a script's bare assert
    ("AssertionError", "", _TORCH + "distributed/_pycute/layout.py:complement", []),   # no mesh in the frames
    ("ValueError", "batch size 15 isn't divisible by 2", "/w/train.py:collate", []),   # the script's own check
])
def test_look_alikes_are_not_misuse(type_, message, site, frames):
    assert not classify(type_, message, site, frames).name.startswith(("ds_", "model_heads"))


def test_a_warning_raised_as_an_exception_ends_its_traceback():
    # deepspeed/runtime/zenflow/engine.py configure_zenflow raises Warning(...) (the lines of a real run here)
    f = top("[rank0]: Traceback (most recent call last):\n"
            '[rank0]:   File "/w/train.py", line 40, in <module>\n'
            "[rank0]:     engine, *_ = deepspeed.initialize(model=m, config=cfg)\n"
            '[rank0]:   File "/usr/lib/python3/site-packages/deepspeed/runtime/zenflow/engine.py", line 38, in '
            "configure_zenflow\n"
            "[rank0]:     raise Warning(\n"
            "[rank0]: Warning: If use auto select strategy, select_interval will be set to 1 and select_strategy "
            "will be set to epoch, thus select_interval would be overwritten.\n")
    assert f.rule == "failure-deepspeed-misuse" and "select_strategy" in f.fixes[0].advice
    # a warnings.warn line outside a traceback stays a warning
    assert not [g for g in diagnose("UserWarning: the default of use_reentrant will change\nstep 1 loss 0.5\n")
                if g.severity != "info"]
