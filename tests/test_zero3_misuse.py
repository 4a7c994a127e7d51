"""ZeRO-3's partitioned parameters handled the wrong way (detect/zero3_misuse.py, the rules
failure-deepspeed-misuse, zero3-partitioned-param-used, failure-zero-grad-none, failure-zero-optimizer-layout and
log-cfg-zero3-empty-weights-loaded): the rule each gen_ag_* fixture (a real run, part AG) must get, one real
provocation, and look-alikes that must keep their own family."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dsdoctor.detect.families import classify
from dsdoctor.detect.zero3_misuse import grad_read_family

sys.path.insert(0, str(Path(__file__).parent))
from diagnose_text import events, top as top_of_text  # noqa: E402
from test_failure import output_of, top  # noqa: E402

EXCERPTS = Path(__file__).parent.parent / "fixtures" / "excerpts"

# fixture -> (rule, a word the first fix must hold)
_RULES = {
    "gen_ag_z3_reentrant_ckpt_module_twice.log": ("failure-deepspeed-misuse", "use_reentrant"),
    "gen_ag_z3_gathered_parameters_nested.log": ("failure-deepspeed-misuse", "modifier_rank"),
    "gen_ag_z3_gathered_modifier_rank_none_sanity.log": ("failure-deepspeed-misuse", "modifier_rank=0"),
    "gen_ag_z3_module_added_after_initialize.log": ("failure-deepspeed-misuse", "then call deepspeed.initialize"),
    "gen_ag_z3_weight_replaced_after_initialize.log": ("failure-deepspeed-misuse", "then call deepspeed.initialize"),
    "gen_ag_z3_zero_init_weight_viewed_in_init.log": ("zero3-partitioned-param-used", "GatheredParameters"),
    "gen_ag_z3_load_state_dict_into_engine.log": ("zero3-partitioned-param-used", "GatheredParameters"),
    "gen_ag_z3_lm_head_weight_read_outside_forward.log": ("zero3-partitioned-param-used", "GatheredParameters"),
    "gen_ag_z3_save_pretrained_empty_then_from_pretrained.log": ("log-cfg-zero3-empty-weights-loaded",
                                                                "save_16bit_model"),
    "gen_ag_z3_save_pretrained_empty_reinit_trains_on.log": ("log-cfg-zero3-empty-weights-loaded", "save_16bit_model"),
    "gen_ag_z3_resume_nonstrict_extra_layer.log": ("failure-zero-optimizer-layout", "load_module_only=True"),
    "gen_ag_z2_param_grad_read_none.log": ("failure-zero-grad-none", "safe_get_full_grad"),
    "gen_ag_z3_param_grad_read_none.log": ("failure-zero-grad-none", "safe_get_full_grad"),
    "gen_ag_z3_lora_reentrant_frozen_inputs_no_grad_fn.log": ("failure-deepspeed-misuse", "use_reentrant"),
    "gen_ag_zero_init_model_under_stage2_engine.log": ("zero3-partitioned-param-used", "zero_optimization.stage: 3"),
    "gen_ag_z3_lora_exclude_frozen_resume_strict.log": ("failure-state-dict-mismatch", "load_module_strict=False"),
}


@pytest.mark.parametrize("name", sorted(_RULES))
def test_each_fixture_gets_its_rule(name):
    rule, word = _RULES[name]
    f = top_of_text((EXCERPTS / name).read_text(encoding="utf-8"))
    assert f is not None and f.rule == rule, (f.rule if f else None, f.summary if f else None)
    assert any(word in (x.advice or "") for x in f.fixes), [x.title for x in f.fixes]


def test_a_frozen_weights_checkpoint_is_not_called_another_architecture():
    f = top_of_text((EXCERPTS / "gen_ag_z3_lora_exclude_frozen_resume_strict.log").read_text(encoding="utf-8"))
    assert "exclude_frozen_parameters" in f.summary and "another config" not in f.summary
    assert [x.title for x in f.fixes][0].startswith("A checkpoint saved without its frozen weights")


def test_the_fixes_that_do_not_fit_are_left_out():
    # a load into the partitions is not a save: no gather-on-save patch
    f = top_of_text((EXCERPTS / "gen_ag_z3_load_state_dict_into_engine.log").read_text(encoding="utf-8"))
    assert not any(x.config_patch for x in f.fixes), [x.title for x in f.fixes]
    f = top_of_text((EXCERPTS / "gen_ag_z3_save_pretrained_empty_reinit_trains_on.log").read_text(encoding="utf-8"))
    assert f.fixes[0].config_patch == {"zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True}}


_TWICE = "/v/lib/python3.11/site-packages/deepspeed/runtime/zero/stage3.py:__reduce_and_partition_ipg_grads"
_INIT = "/v/lib/python3.11/site-packages/deepspeed/runtime/zero/partition_parameters.py:wrapper"


@pytest.mark.parametrize("type_,message,site,frames,family", [
    ("AssertionError", "", _TWICE, [], "zero3_grad_reduced_twice"),
    # another bare assert of stage3.py is not the double reduction
    ("AssertionError", "", "/v/deepspeed/runtime/zero/stage3.py:_create_fp16_partitions_with_defragmentation", [],
     "other"),
    ("AttributeError", "'Parameter' object has no attribute 'ds_id'", "/v/deepspeed/x.py:f", [],
     "zero3_unconverted_param"),
    ("AttributeError", "'Params4bit' object has no attribute 'ds_status'", "/v/deepspeed/x.py:f", [],
     "zero3_unconverted_param"),
    # None where a parameter was expected is another mistake
    ("AttributeError", "'NoneType' object has no attribute 'ds_id'", "/w/train.py:main", [], "other"),
    ("RuntimeError", "Nested GatheredParameters contexts cannot overlap parameters; parameter ds_ids already "
     "gathered by an outer context: [6, 7]", "/v/deepspeed/runtime/zero/partition_parameters.py:__enter__", [],
     "zero3_gathered_params"),
    ("RuntimeError", "shape '[16, 16]' is invalid for input of size 0", "/w/model.py:__init__", [_INIT, "/w/model.py:__init__"],
     "zero3_partitioned"),
    # the same view of an empty batch, not under zero.Init
    ("RuntimeError", "shape '[16, 16]' is invalid for input of size 0", "/w/train.py:collate", ["/w/train.py:collate"],
     "other"),
    ("RuntimeError", "inconsistent tensor size, expected tensor [0] and src [32] to have the same number of elements, "
     "but got 0 and 32 elements respectively", "/w/train.py:main", [], "zero3_partitioned"),
    ("RuntimeError", "The size of tensor a (426) must match the size of tensor b (417) at non-singleton dimension 0",
     "/v/deepspeed/runtime/zero/stage3.py:_rigid_load_state_dict", [], "zero_optimizer_layout"),
    # the same words in the script's own arithmetic
    ("RuntimeError", "The size of tensor a (426) must match the size of tensor b (417) at non-singleton dimension 0",
     "/w/train.py:main", [], "other"),
])
def test_families(type_, message, site, frames, family):
    assert classify(type_, message, site, frames).name == family


def test_a_grad_line_only_names_a_none_gradient():
    assert grad_read_family("AttributeError", ["gn = p.grad.norm()"]).name == "zero_grad_none"
    assert grad_read_family("AttributeError", ["n = batch.norm()"]) is None
    assert grad_read_family("ValueError", ["gn = p.grad.norm()"]) is None


def test_the_grad_line_is_kept_only_right_above_its_exception():
    text = ("Traceback (most recent call last):\n"
            '  File "/w/train.py", line 9, in <module>\n'
            "    loss = out.grad_fn\n"                 # .grad_fn is not .grad
            "AttributeError: 'NoneType' object has no attribute 'grad_fn'\n")
    ex = events(text, "exception")
    assert ex and not ex[0].data.get("detail")
    text = ("Traceback (most recent call last):\n"
            '  File "/w/train.py", line 9, in <module>\n'
            "    clip(p.grad.data)\n"
            "    ^^^^^^^^^^^^^^^^\n"
            "AttributeError: 'NoneType' object has no attribute 'data'\n")
    assert events(text, "exception")[0].data.get("detail")[0][1] == "clip(p.grad.data)"


def test_a_load_report_of_another_shape_is_not_zero3():
    text = ("BertForSequenceClassification LOAD REPORT from: bert-base-uncased\n"
            "classifier.weight | MISMATCH | Reinit due to size mismatch - ckpt: torch.Size([3, 768]) vs "
            "model:torch.Size([2, 768])\n")
    assert not events(text, "config_error")


_PRELUDE = """
import os
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000))
import torch, deepspeed
from torch import nn
import torch.utils.checkpoint as cp
deepspeed.init_distributed(dist_backend="gloo")
CFG = {"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
       "zero_optimization": {"stage": 3}}
"""


def test_zero3_reentrant_checkpoint_of_a_module_called_twice():
    # ZeRO-3 says nothing in words: a bare assert in stage3.py (ZeRO-1/2 name the parameter)
    f = top(output_of(_PRELUDE + (
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.a = nn.Linear(8, 8); self.h = nn.Linear(8, 1)\n"
        "    def forward(self, x):\n"
        "        for _ in range(2):\n"
        "            x = cp.checkpoint(lambda t: torch.relu(self.a(t)), x, use_reentrant=True)\n"
        "        return self.h(x).mean()\n"
        "m = M()\n"
        "e, *_ = deepspeed.initialize(model=m, model_parameters=m.parameters(), config=CFG)\n"
        "x = torch.randn(2, 8, requires_grad=True)\n"
        "e.backward(e(x))\n"), timeout=300))
    assert f.rule == "failure-deepspeed-misuse", (f.rule, f.summary)
    assert "use_reentrant" in f.fixes[0].advice
