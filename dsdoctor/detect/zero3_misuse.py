"""ZeRO stage 3's partitioned parameters handled the wrong way by the script: gathered by hand and changed,
created or replaced after DeepSpeed converted the model, read inside a module's __init__ under zero.Init,
or given their gradient twice by reentrant checkpointing. Each entry is a raise site of the installed
DeepSpeed 0.19.8 (or torch under it), provoked for real here on the CPU (part AG); the message (or the
raise site, for a bare assert) says what the script must change, so these are config_error.
"""
from __future__ import annotations

from ..lazy_regex import compile_later
from .family import Family

# runtime/zero/partition_parameters.py GatheredParameters.__enter__ ('Nested GatheredParameters contexts cannot
# overlap parameters; parameter ds_ids already gathered by an outer context: [...]'), _exit ('Detected in-place
# modification of ZeRO-3 parameters inside GatheredParameters with modifier_rank=None. Use modifier_rank=<rank>
# ...', only with zero_optimization.enable_sanity_checks; 'Parameter N is on {device} but broadcast requires it
# to be on {device}' with modifier_rank set), free_param ('Cannot free a ZeRO-3 parameter while it is still
# active in submodules ...'); the first two run here on 1 and 2 ranks
_GATHERED = ("Nested GatheredParameters contexts cannot overlap parameters",
             "inside GatheredParameters with modifier_rank=None",
             "but broadcast requires it to be on",
             "Cannot free a ZeRO-3 parameter while it is still active in submodules")
GATHERED_PARAMS = Family("zero3_gathered_params", "config_error", 3,
                         "deepspeed.zero.GatheredParameters used in a way ZeRO-3 refuses (contexts nested over the same "
                         "parameters, or weights changed under modifier_rank=None)")

# A parameter ZeRO-3 never converted: its hooks read the attributes zero.Init / deepspeed.initialize add to every
# parameter (partition_parameters.py _convert_to_deepspeed_param: ds_id, ds_status, ds_numel, ds_shape, ds_tensor,
# ds_active_sub_modules, ...). Run here: a module added to engine.module after deepspeed.initialize
# ("'Parameter' object has no attribute 'ds_active_sub_modules'", raised in partitioned_param_coordinator.py) and
# a weight replaced by a new nn.Parameter ("... no attribute 'ds_id'")
_UNCONVERTED = compile_later(r"^'(?!NoneType'|dict'|list'|tuple'|str')\w+' object has no attribute 'ds_(?:id|status|numel|"
                             r"shape|tensor|active_sub_modules|persist|summary|process_group|external|version|grad)\w*'")
UNCONVERTED_PARAM = Family("zero3_unconverted_param", "config_error", 3,
                           "a parameter ZeRO-3 never converted: a module added or a weight replaced (a new nn.Parameter) "
                           "after deepspeed.initialize, so ZeRO-3's hooks meet a plain tensor")

# zero/stage3.py __reduce_and_partition_ipg_grads: 'assert len(set(p.ds_id for p in params_in_bucket)) ==
# len(params_in_bucket)', a bare assert: one parameter's gradient hook fired twice in one backward. Run here: a
# module called twice under torch.utils.checkpoint(use_reentrant=True), ZeRO-3 (gone with use_reentrant=False);
# ZeRO-1/2 say it in words (formats/deepspeed.py gradient_reduced_twice)
_REDUCE_TWICE_SITE = "zero/stage3.py:__reduce_and_partition_ipg_grads"
GRAD_REDUCED_TWICE = Family("zero3_grad_reduced_twice", "config_error", 3,
                            "ZeRO-3 got the same parameter's gradient twice in one backward (its reduce bucket holds "
                            "one parameter twice): a module called twice under reentrant activation checkpointing")

# zero.Init wraps every module's __init__ (partition_parameters.py InsertPostInitMethodToModuleSubClasses
# wrapper) and partitions each parameter as soon as the layer that made it returns: code in a parent's __init__
# that reads a child's weight gets the empty tensor. Run here: `.view(16, 16)` of a Linear's weight in __init__
# under deepspeed.zero.Init ("shape '[16, 16]' is invalid for input of size 0")
_ZERO_INIT_FRAME = "zero/partition_parameters.py:wrapper"
_EMPTY_READ = compile_later(r"invalid for input of size 0\b|torch\.Size\(\[0\]\)|\bvec \(0\)|"
                            r"expected tensor \[0\]|size of tensor [ab] \(0\)|'weight' must be 2-D|"
                            r"\((?:\d+x0|0x\d+) and|and (?:\d+x0|0x\d+)\)")
ZERO_INIT_READ = Family("zero3_partitioned", "config_error", 3,
                        "a weight read inside a module's __init__ under deepspeed.zero.Init, which has already "
                        "partitioned it (an empty tensor)")


# zero.Init swaps F.linear for its own (zero/linear.py LinearFunctionForZeroStage3.forward: torch.addmm(bias, input,
# weight.t())), which meets the empty weight when no ZeRO-3 engine gathers it: run here, a model built under
# deepspeed.zero.Init handed to an engine whose zero_optimization.stage is 2 ('mat2 must be a matrix, got 1-D tensor')
_ZERO_LINEAR = "zero/linear.py:forward"
ZERO_INIT_UNGATHERED = Family("zero3_partitioned", "config_error", 3,
                              "a model built under deepspeed.zero.Init (its weights partitioned) run without a ZeRO "
                              "stage 3 engine to gather them")


def zero3_family(name: str, message: str, raise_site: str | None, frames: list[str] | None) -> Family | None:
    """The family of an exception from ZeRO-3's partitioned parameters, or None."""
    if any(t in message for t in _GATHERED):
        return GATHERED_PARAMS
    if name == "AttributeError" and _UNCONVERTED.search(message):
        return UNCONVERTED_PARAM
    site = raise_site or ""
    if name == "AssertionError" and not message and _REDUCE_TWICE_SITE in site:
        return GRAD_REDUCED_TWICE
    if _EMPTY_READ.search(message) and any(_ZERO_INIT_FRAME in f for f in (frames or ())):
        return ZERO_INIT_READ
    if _ZERO_LINEAR in site and ("got 1-D tensor" in message or _EMPTY_READ.search(message)):
        return ZERO_INIT_UNGATHERED
    return None


# The script's own line reading `param.grad` raised on None (sources/formats/traceback.py keeps that source line as
# the exception's detail). ZeRO stages 1-3 move each gradient into their own partitioned buffers during
# engine.backward and leave param.grad None (run here under ZeRO-2 and ZeRO-3: "'NoneType' object has no attribute
# 'norm'" from `p.grad.norm()` after backward); deepspeed.utils.safe_get_full_grad(param) reads it.
ZERO_GRAD_NONE = Family("zero_grad_none", "config_error", 3,
                        "the script read param.grad after engine.backward, which ZeRO leaves None (the gradients are "
                        "in ZeRO's partitioned buffers)")


def grad_read_family(name: str, detail_lines: list[str]) -> Family | None:
    if name in ("AttributeError", "TypeError") and any(".grad" in t for t in detail_lines):
        return ZERO_GRAD_NONE
    return None


# engine.load_checkpoint's module load (runtime/engine.py load_module_state_dict -> torch module.py load_state_dict,
# strict by default) refusing a checkpoint with weights missing and nothing else wrong ('Missing key(s) in
# state_dict: "emb.weight", ...' with no unexpected key and no size mismatch). Run here: a LoRA-style run's
# save_checkpoint(..., exclude_frozen_parameters=True) resumed into the same model, under ZeRO-2 and ZeRO-3
_DS_MODULE_LOAD = "engine.py:load_module_state_dict"
MISSING_KEYS_ONLY = Family("state_dict_mismatch", "config_error", 3,
                           "a DeepSpeed checkpoint that lacks some of the model's weights and has nothing else wrong "
                           "(only missing keys): saved with exclude_frozen_parameters=True (a run whose base weights "
                           "were frozen), or a model with layers the saved one did not have")


def missing_keys_only(detail_lines: list[str], frames: list[str] | None) -> Family | None:
    if not any(_DS_MODULE_LOAD in f for f in (frames or ())):
        return None
    kinds = {k for t in detail_lines for k in ("Missing key(s)", "Unexpected key(s)", "size mismatch") if k in t}
    return MISSING_KEYS_ONLY if kinds == {"Missing key(s)"} else None
