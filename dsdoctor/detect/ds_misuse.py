"""DeepSpeed's own features used the wrong way: pipeline parallelism, MoE, the engine's API, what
save_checkpoint writes. Each entry is a raise site of the installed DeepSpeed 0.19.8 (or of torch,
reached through DeepSpeed), provoked for real here (tests/test_ds_misuse.py); the message says what
the script or the config must change, so these are config_error, not an unexplained failure.
"""
from __future__ import annotations

from .family import Family

# (family, why, message texts, raise-site texts any of which must also match, or () for none)
_MISUSE: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    # pipe/module.py PipelineModule.__init__ 'num_stages ({}) must divide distributed world size ({})',
    # _find_layer_type "Partitioning '{layername}' found no valid layers to partition.", moe/layer.py
    # MoE.__init__ 'Number of experts ({}) should be divisible by expert parallel size ({})', utils/groups.py
    # _ensure_divisibility '{} is not divisible by {}' (the world by ep_size / mp_size)
    ("ds_parallel_layout", "the pipeline stages or the MoE experts do not fit the ranks the run has",
     ("must divide distributed world size", "found no valid layers to partition",
      "should be divisible by expert parallel size"), ()),
    ("ds_parallel_layout", "the pipeline stages or the MoE experts do not fit the ranks the run has",
     ("is not divisible by",), ("deepspeed/utils/groups.py",)),
    # pipe/engine.py PipelineEngine.forward / backward / step: PipelineError('Only train_batch() is
    # accessible in pipeline mode.')
    ("ds_pipe_api", "a PipelineEngine driven like the plain engine (engine(x), backward, step)",
     ("is accessible in pipeline mode",), ()),
    # runtime/engine.py DeepSpeedEngine.backward 'loss must be a scalar tensor...' (runtime/utils.py
    # maybe_loss_for_backward: one element AND a grad_fn): a PipelineModule without loss_fn hands its last
    # layer's output to backward; a loss made under torch.no_grad() or from frozen parameters has no grad_fn
    ("ds_loss_not_scalar", "engine.backward() got no loss it can differentiate (a tensor of more than one "
     "number, or one with no gradient graph)",
     ("loss must be a scalar tensor",), ()),
    # zero/stage_1_and_2.py _configure_moe_settings: "The model has moe layers, but None of the param groups
    # are marked as MoE. Create a param group with 'moe' key set to True before creating optimizer"
    ("ds_moe_param_groups", "an optimizer built over a MoE model's parameters without MoE parameter groups",
     ("None of the param groups are marked as MoE",), ()),
    # moe/sharded_moe.py top1gating / top2gating 'No. of tokens (batch-size) should be greater than
    # min_capacity. Either set min_capacity to 0 or increase your batch size.'
    ("ds_moe_capacity", "a MoE layer given fewer tokens per batch than its min_capacity",
     ("should be greater than min_capacity",), ()),
    # runtime/engine.py _do_optimizer_sanity_check 'unsupported mix of model_dtype=... and grad_accum_dtype=...'
    ("ds_grad_accum_dtype", "data_types.grad_accum_dtype set to a dtype this precision and ZeRO stage cannot "
     "accumulate in", ("unsupported mix of model_dtype",), ()),
    # runtime/engine.py DeepSpeedEngine.no_sync 'no_sync context manager is incompatible with gradient
    # partitioning logic of ZeRO stage {n}' (a real run here: DDP's accumulation idiom under ZeRO-2)
    ("ds_no_sync", "DDP's `with model.no_sync():` gradient-accumulation idiom used on a ZeRO stage 2/3 engine",
     ("no_sync context manager is incompatible with gradient partitioning",), ()),
]

_EMPTY_PARAMS = "optimizer got an empty parameter list"      # torch/optim/optimizer.py Optimizer.__init__
# torch/autograd: a second backward through a freed graph (engine.backward twice, or loss.backward()
# and engine.backward(loss))
_BACKWARD_TWICE = "Trying to backward through the graph a second time"
# The script's own use of torch, not DeepSpeed: torch/csrc/autograd (libtorch_cpu: 'one of the variables needed
# for gradient computation has been modified by an inplace operation': a real run here; 'element 0 of tensors does
# not require grad' is families.py's no_grad_graph); torch/cuda/__init__.py _lazy_init ('Cannot re-initialize CUDA in
# forked subprocess'); c10d ProcessGroup::getBackend (libtorch_cpu: 'No backend type associated with device type
# {}': a collective on a tensor whose device the group has no backend for, e.g. a CPU tensor in an NCCL group)
_TORCH_SCRIPT = [
    ("autograd_inplace", "an in-place operation changed a tensor autograd had saved for the backward pass",
     "modified by an inplace operation"),
    ("cuda_in_fork", "CUDA used in a forked child process (a DataLoader worker or multiprocessing pool touching "
     "the GPU)", "Cannot re-initialize CUDA in forked subprocess"),
    ("collective_device", "a collective called on a tensor whose device the process group has no backend for (a "
     "CPU tensor in an NCCL group, or a GPU tensor in a gloo one)", "No backend type associated with device type"),
]


def misuse_family(name: str, message: str, raise_site: str | None, frames: list[str] | None) -> Family | None:
    site = raise_site or ""
    where = [site, *(frames or ())]
    for fam, why, texts, sites in _MISUSE:
        if any(t in message for t in texts) and (not sites or any(s in site for s in sites)):
            return Family(fam, "config_error", 3, why)
    if _BACKWARD_TWICE in message:
        return Family("backward_twice", "config_error", 3,
                      "backward() run twice over one forward's graph (engine.backward twice, or loss.backward() "
                      "and engine.backward(loss))")
    for fam, why, text in _TORCH_SCRIPT:
        if text in message:
            return Family(fam, "config_error", 3, why)
    in_ds = any("deepspeed/" in w for w in where)
    # pipe/engine.py PipelineEngine._next_batch: next(self.data_iterator) ran dry inside train_batch
    if name == "StopIteration" and any("pipe/engine.py" in w for w in where):
        return Family("ds_pipe_data", "config_error", 3,
                      "the data iterator ran out inside train_batch(), which takes gradient_accumulation_steps "
                      "micro-batches from it per call")
    if _EMPTY_PARAMS in message and in_ds:
        return Family("ds_empty_params", "config_error", 3,
                      "a rank (a pipeline stage) or the engine got no trainable parameters for its optimizer")
    # zero/stage_1_and_2.py scaled_global_norm reads averaged_gradients[i], filled only by backward
    if name == "KeyError" and "stage_1_and_2.py" in site and "norm" in site:
        return Family("ds_step_without_backward", "config_error", 3,
                      "engine.step() ran with no engine.backward() before it (ZeRO had no gradients to reduce)")
    # torch/serialization.py _save: pickler.dump of what save_checkpoint (client_state) or torch.save got
    if ("cannot pickle" in message or "Can't pickle" in message or name == "PicklingError") and \
            any("serialization.py" in w for w in where):
        return Family("unpicklable_save", "config_error", 3,
                      "the object saved holds something pickle cannot write (a lock, a lambda, an open file, a "
                      "generator; in save_checkpoint: client_state)")
    return None


def zero3_empty_checkpoint(detail_lines: list[str]) -> Family | None:
    """torch module.py load_state_dict's lines under 'Error(s) in loading state_dict' ('size mismatch for
    a.weight: copying a param with shape torch.Size([0]) from checkpoint'): weights saved from a ZeRO-3
    engine's module.state_dict(), its empty local partitions (a real run here), not another architecture."""
    if any("torch.Size([0]) from checkpoint" in t for t in detail_lines):
        return Family("zero3_partitioned", "config_error", 3,
                      "weights saved as ZeRO-3's empty partitions (module.state_dict() without gathering)")
    return None
