"""DeepSpeed's own features used the wrong way (detect/ds_misuse.py, rule failure-deepspeed-misuse):
three misuses provoked for real with the installed DeepSpeed on the CPU (1 rank, gloo), and the
family of each raise site the fixtures gen_q_* captured, with look-alikes that must not match."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dsdoctor.detect.families import classify

sys.path.insert(0, str(Path(__file__).parent))
from test_failure import ahead, output_of, top  # noqa: E402

# one rank, gloo, the torch optimizer (no fused_adam build)
_PRELUDE = """
import os
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000))
import torch, deepspeed
from torch import nn
deepspeed.init_distributed(dist_backend="gloo")
CFG = {"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
"""


def _ahead(code: str) -> str:
    """`code`, its process listed to start one test ahead (tests/run_ahead.py)."""
    ahead(_PRELUDE + code, timeout=300)
    return code


def _misuse(code: str):
    f = top(output_of(_PRELUDE + code, timeout=300))
    assert f.rule == "failure-deepspeed-misuse" and f.category == "config_error", (f.rule, f.summary)
    return f


PIPELINE_CALLED_PLAIN = _ahead("from deepspeed.pipe import PipelineModule\n"
                               "m = PipelineModule(layers=[nn.Linear(8, 8), nn.Linear(8, 8)], num_stages=1, "
                               "loss_fn=nn.MSELoss())\n"
                               "e, *_ = deepspeed.initialize(model=m, model_parameters=m.parameters(), config=CFG)\n"
                               "e(torch.randn(2, 8))\n")
MOE_PLAIN_OPTIMIZER = _ahead("from deepspeed.moe.layer import MoE\n"
                             "m = MoE(hidden_size=8, expert=nn.Linear(8, 8), num_experts=2, ep_size=1, k=1)\n"
                             "opt = torch.optim.AdamW(m.parameters(), lr=1e-3)\n"
                             "deepspeed.initialize(model=m, optimizer=opt, config={'train_micro_batch_size_per_gpu': 2, "
                             "'zero_optimization': {'stage': 2}})\n")
STEP_WITHOUT_BACKWARD = _ahead("m = nn.Linear(8, 1)\n"
                               "e, *_ = deepspeed.initialize(model=m, model_parameters=m.parameters(), "
                               "config={**CFG, 'zero_optimization': {'stage': 2}})\n"
                               "e(torch.randn(2, 8)).mean()\n"
                               "e.step()\n")


def test_a_pipeline_engine_called_like_the_plain_engine():
    f = _misuse(PIPELINE_CALLED_PLAIN)
    assert "Only train_batch() is accessible in pipeline mode" in f.evidence[0].text
    assert "train_batch" in f.fixes[0].title and f.fixes[0].config_patch is None


def test_a_moe_model_with_a_plain_optimizer():
    f = _misuse(MOE_PLAIN_OPTIMIZER)
    assert "None of the param groups are marked as MoE" in f.evidence[0].text
    assert "split_params_into_different_moe_groups_for_optimizer" in f.fixes[0].advice


def test_step_without_backward_under_zero():
    f = _misuse(STEP_WITHOUT_BACKWARD)
    assert f.fixes[0].title == "Call engine.backward(loss) before engine.step()"


_DS = "/usr/lib/python3/site-packages/deepspeed/"
_TORCH = "/usr/lib/python3/site-packages/torch/"


@pytest.mark.parametrize("type_,message,site,frames,family", [
    ("RuntimeError", "num_stages (3) must divide distributed world size (2)", _DS + "runtime/pipe/module.py:__init__",
     [], "ds_parallel_layout"),
    ("RuntimeError", "Partitioning 'conv2d' found no valid layers to partition.", _DS + "runtime/pipe/module.py:"
     "_find_layer_type", [], "ds_parallel_layout"),
    ("AssertionError", "Number of experts (4) should be divisible by expert parallel size (3)",
     _DS + "moe/layer.py:__init__", [], "ds_parallel_layout"),
    ("AssertionError", "16 is not divisible by 3", _DS + "utils/groups.py:_ensure_divisibility", [],
     "ds_parallel_layout"),
    ("deepspeed.runtime.pipe.module.PipelineError", "Only train_batch() is accessible in pipeline mode.",
     _DS + "runtime/pipe/engine.py:forward", [], "ds_pipe_api"),
    ("StopIteration", "", _DS + "runtime/pipe/engine.py:_next_batch", [_DS + "runtime/pipe/engine.py:train_batch"],
     "ds_pipe_data"),
    ("AssertionError", "loss must be a scalar tensor. If you need to pass output gradients, backward() of output "
     "tensors", _DS + "runtime/engine.py:backward", [], "ds_loss_not_scalar"),
    ("AssertionError", "No. of tokens (batch-size) should be greater than min_capacity. Either set min_capacity to 0 "
     "or increase your batch size.", _DS + "moe/sharded_moe.py:top1gating", [], "ds_moe_capacity"),
    ("NotImplementedError", "unsupported mix of model_dtype=torch.bfloat16 and grad_accum_dtype=torch.float16",
     _DS + "runtime/engine.py:_do_optimizer_sanity_check", [], "ds_grad_accum_dtype"),
    ("ValueError", "optimizer got an empty parameter list", _TORCH + "optim/optimizer.py:__init__",
     [_DS + "runtime/engine.py:_configure_basic_optimizer"], "ds_empty_params"),
    ("KeyError", "0", _DS + "runtime/zero/stage_1_and_2.py:scaled_global_norm", [], "ds_step_without_backward"),
    ("TypeError", "cannot pickle '_thread.lock' object", _TORCH + "serialization.py:_save",
     [_DS + "runtime/engine.py:save_checkpoint"], "unpicklable_save"),
    ("_pickle.PicklingError", "Can't pickle <function <lambda> at 0x7f4a>: attribute lookup <lambda> on __main__ "
     "failed", _TORCH + "serialization.py:_save", [], "unpicklable_save"),
    ("RuntimeError", "Trying to backward through the graph a second time (or directly access saved tensors after "
     "they have already been freed).", _TORCH + "autograd/graph.py:_engine_run_backward", [], "backward_twice"),
    # torch autograd's words, real runs here (tests: fixtures lead13_*)
    ("RuntimeError", "one of the variables needed for gradient computation has been modified by an inplace "
     "operation: [torch.FloatTensor [4, 16]], which is output 0 of Sigmoid, is at version 1; expected version 0 "
     "instead.", _TORCH + "autograd/graph.py:_engine_run_backward", [], "autograd_inplace"),
    ("RuntimeError", "Cannot re-initialize CUDA in forked subprocess. To use CUDA with multiprocessing, you must "
     "use the 'spawn' start method", _TORCH + "cuda/__init__.py:_lazy_init", [], "cuda_in_fork"),
    ("RuntimeError", "No backend type associated with device type cpu", "/w/train.py:<module>", [],
     "collective_device"),
    ("AssertionError", "no_sync context manager is incompatible with gradient partitioning logic of ZeRO stage 2",
     _DS + "runtime/engine.py:no_sync", [], "ds_no_sync"),
])
def test_each_raise_site_is_its_family(type_, message, site, frames, family):
    fam = classify(type_, message, site, frames)
    assert (fam.name, fam.category) == (family, "config_error")


@pytest.mark.parametrize("type_,message,site,frames", [
    ("KeyError", "0", "/w/train.py:<module>", []),                              # a script's own dict
    ("StopIteration", "", "/w/train.py:<module>", []),                          # next() outside the pipeline engine
    ("AssertionError", "16 is not divisible by 3", "/w/model.py:__init__", []),  # the script's own check
    ("ValueError", "optimizer got an empty parameter list", _TORCH + "optim/optimizer.py:__init__",
     ["/w/train.py:<module>"]),                                                 # plain torch, no DeepSpeed
    ("TypeError", "cannot pickle '_thread.lock' object", "/usr/lib/python3.11/multiprocessing/reduction.py:dump",
     []),                                                                        # a DataLoader worker, not a save
])
def test_look_alikes_are_not_misuse(type_, message, site, frames):
    assert not classify(type_, message, site, frames).name.startswith(("ds_", "unpicklable", "backward_twice"))


def test_zero3_empty_weights_in_a_matmul_and_in_a_saved_state_dict():
    # the lines of real ZeRO-3 runs here (stage3_param_persistence_threshold 0): a weight read after training,
    # and module.state_dict() saved then loaded into a fresh model
    fam = classify("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (1x0 and 16x16)", "/w/train.py:<module>")
    assert fam.name == "zero3_partitioned"
    assert classify("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (4x10 and 16x16)",
                    "/w/train.py:<module>").name != "zero3_partitioned"
    f = top("Traceback (most recent call last):\n"
            '  File "/w/train.py", line 9, in <module>\n'
            "    fresh.load_state_dict(torch.load('sd.pt'))\n"
            "RuntimeError: Error(s) in loading state_dict for Net:\n"
            "\tsize mismatch for a.weight: copying a param with shape torch.Size([0]) from checkpoint, the shape in "
            "current model is torch.Size([16, 16]).\n")
    assert f.rule == "zero3-partitioned-param-used"
    assert any(x.config_patch == {"zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True}}
               for x in f.fixes)
    g = top("Traceback (most recent call last):\n"
            '  File "/w/train.py", line 9, in <module>\n'
            "    fresh.load_state_dict(torch.load('sd.pt'))\n"
            "RuntimeError: Error(s) in loading state_dict for Net:\n"
            "\tsize mismatch for a.weight: copying a param with shape torch.Size([32, 16]) from checkpoint, the shape "
            "in current model is torch.Size([16, 16]).\n")
    assert g.rule == "failure-state-dict-mismatch"
