"""DeepSpeed's own features used the wrong way: pipeline parallelism, MoE, the engine's API, what
save_checkpoint writes. Each entry is a raise site of the installed DeepSpeed 0.19.8 (or of torch,
reached through DeepSpeed), provoked for real here (tests/test_ds_misuse.py); the message says what
the script or the config must change, so these are config_error, not an unexplained failure.
"""
from __future__ import annotations

from .family import Family
from .zero3_misuse import zero3_family

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
    # AutoTP (part T): runtime/engine.py _apply_autotp_partitioning 'tensor_parallel.tp.tp_size (N) does not
    # match tensor_parallel.autotp_size (M).'; module_inject/auto_tp.py AutoTP.tp_parser 'Not able to determine
    # model policy automatically. Please provide policy.' (a model with no HF layer names AutoTP knows)
    ("ds_autotp", "tensor_parallel.autotp_size set on a model or world AutoTP cannot shard",
     ("does not match tensor_parallel.autotp_size", "Not able to determine model policy automatically"), ()),
    # Ulysses sequence parallelism (part T), runtime/sequence_parallel/ulysses_sp.py: UlyssesSPAttentionHF.__init__
    # 'Attention head count N is not divisible by SP size M', 'KV attention head count N is not divisible by SP
    # size M or vice versa'; register_with_transformers "core_attn_implementation='x' does not match model config
    # attn_implementation='y'", 'eager attn_implementation isn't currently supported by Ulysses sequence
    # parallelism', 'Either `seq_length_is_variable` needs to be `True` or `seq_length` ...';
    # UlyssesSPDataLoaderAdapter.refill "batch's seqlen=N isn't divisible by sp-size=M", 'Ulysses SP requires
    # `position_ids` in every dataloader batch'; forward 'Ulysses SP requires position_ids in every forward()',
    # '[r]: query input tensor does not match the required shape' (a fixed seq_length the batches do not have)
    ("ds_ulysses", "Ulysses sequence parallelism given a model, attention or batch it cannot split",
     ("is not divisible by SP size", "does not match model config attn_implementation",
      "isn't currently supported by Ulysses sequence parallelism", "Either `seq_length_is_variable` needs to be",
      "isn't divisible by sp-size", "Ulysses SP requires", "input tensor does not match the required shape"), ()),
    # ZenFlow (part T): runtime/zenflow/zenflow_stage_1_and_2.py _configure_zenflow 'Zenflow must be used with cpu
    # offload', __init__ 'offload selective optimizer should be used with overlap_comm', zenflow/engine.py
    # configure_zenflow 'Select interval must be greater or equal to update interval', "If don't use auto select
    # strategy, select_interval must be a number.", and a Warning raised as an exception: 'If use auto select
    # strategy, select_interval will be set to 1 ...' (select_interval given with the default strategy "auto")
    ("ds_zenflow", "a zero_optimization.zenflow block without the offload it runs on or with intervals it refuses",
     ("Zenflow must be used with cpu offload", "offload selective optimizer should be used with overlap_comm",
      "Select interval must be greater or equal to update interval", "select_interval must be a number",
      "If use auto select strategy, select_interval will be set to 1"), ()),
    # runtime/chunked_cross_entropy.py (part T): _resolve_backend 'The Triton chunked cross-entropy backend needs CUDA
    # logits and Triton; use backend="torch" to run elsewhere' (run here on the CPU), 'Unsupported chunked
    # cross-entropy backend', _validate_block_rows 'block_rows must be a positive integer', _refuse_create_graph
    # 'The chunked cross entropy has no second derivative'
    ("ds_chunked_ce", "DeepSpeed's chunked cross-entropy called with a backend or arguments it does not take",
     ("chunked cross-entropy backend", "chunked cross entropy has no second derivative"), ()),
    ("ds_chunked_ce", "DeepSpeed's chunked cross-entropy called with a backend or arguments it does not take",
     ("block_rows must be a positive integer",), ("chunked_cross_entropy.py",)),
    # runtime/superoffload/superoffload_stage3.py: "SuperOffload only supports NVIDIA CUDA GPUs, but found
    # accelerator 'cpu'." (offload_optimizer.super_offload under ZeRO-3, run here)
    ("ds_superoffload", "offload_optimizer.super_offload on an accelerator other than NVIDIA CUDA",
     ("SuperOffload only supports NVIDIA CUDA GPUs",), ()),
    # runtime/engine.py _configure_basic_optimizer (Muon): 'The Muon optimizer needs every parameter tagged with
    # use_muon, and N are not.'
    ("ds_muon_params", "the Muon optimizer given parameters the model passed to deepspeed.initialize does not hold",
     ("The Muon optimizer needs every parameter tagged with use_muon",), ()),
    # transformers configuration_utils.py validate_architecture 'The hidden size (N) is not a multiple of the
    # number of attention heads (M).': met here changing the head count to fit the SP / TP size
    ("model_heads", "a model config whose hidden_size is not a multiple of num_attention_heads",
     ("is not a multiple of the number of attention heads",), ()),
    # an nn.Embedding(sparse=True) (or any sparse gradient) given an optimizer without sparse updates: torch/optim
    # adam.py 'Adam does not support sparse gradients, please consider SparseAdam instead' (the config's AdamW with
    # torch_adam, run here; adamw.py goes through adam.py), rmsprop.py, adamax.py, nadam.py, radam.py ... '{X} does not
    # support sparse gradients'; deepspeed ops/adam/fused_adam.py, lamb/fused_lamb.py, lion/fused_lion.py the same
    ("sparse_grad_optimizer", "a sparse gradient (an nn.Embedding(sparse=True)) given to an optimizer that only "
     "takes dense ones", ("does not support sparse gradients",), ()),
    # the same sparse gradient under ZeRO 1-2, whose gradient buckets view it as dense: "Could not run 'aten::view' with
    # arguments from the 'SparseCPU' backend" raised in zero/stage_1_and_2.py reduce_independent_p_g_buckets_and_
    # remove_grads (optimizer "SGD" with zero_allow_untested_optimizer, run here on 2 ranks; stage 0 reduces it)
    ("sparse_grad_zero", "a sparse gradient (an nn.Embedding(sparse=True)) under ZeRO, whose gradient buckets take "
     "dense tensors only", ("with arguments from the 'Sparse",), ("zero/stage_1_and_2.py", "zero/stage3.py")),
    # runtime/engine.py _checkpoint_tag_validation with checkpoint.tag_validation "FAIL": '[rank=N] The checkpoint tag
    # name '{tag}' is not consistent across all ranks. Including rank unique information ...' (ranks given their own
    # tags, run here on 2 ranks; "WARN", the default, logs the same words as a warning and goes on)
    ("ds_ckpt_tag", "save_checkpoint given a different tag on each rank",
     ("is not consistent across all ranks",), ()),
    # runtime/engine.py _do_optimizer_sanity_check 'unsupported mix of model_dtype=... and grad_accum_dtype=...'
    ("ds_grad_accum_dtype", "data_types.grad_accum_dtype set to a dtype this precision and ZeRO stage cannot "
     "accumulate in", ("unsupported mix of model_dtype",), ()),
    # runtime/engine.py DeepSpeedEngine.no_sync 'no_sync context manager is incompatible with gradient
    # partitioning logic of ZeRO stage {n}' (a real run here: DDP's accumulation idiom under ZeRO-2)
    ("ds_no_sync", "DDP's `with model.no_sync():` gradient-accumulation idiom used on a ZeRO stage 2/3 engine",
     ("no_sync context manager is incompatible with gradient partitioning",), ()),
    # The script's own use of torch, not DeepSpeed: torch/csrc/autograd (libtorch_cpu: 'one of the variables
    # needed for gradient computation has been modified by an inplace operation': a real run here; 'element 0 of
    # tensors does not require grad' is families.py's no_grad_graph); torch/cuda/__init__.py _lazy_init ('Cannot
    # re-initialize CUDA in forked subprocess'); c10d ProcessGroup::getBackend (libtorch_cpu: 'No backend type
    # associated with device type {}': a collective on a tensor of a device the group has no backend for)
    ("autograd_inplace", "an in-place operation changed a tensor autograd had saved for the backward pass",
     ("modified by an inplace operation",), ()),
    ("cuda_in_fork", "CUDA used in a forked child process (a DataLoader worker or multiprocessing pool touching "
     "the GPU)", ("Cannot re-initialize CUDA in forked subprocess",), ()),
    ("collective_device", "a collective called on a tensor whose device the process group has no backend for (a "
     "CPU tensor in an NCCL group, or a GPU tensor in a gloo one)",
     ("No backend type associated with device type",
      # ProcessGroupNCCL's own checks of a tensor it was handed (strings of torch 2.13's libtorch_cuda.so:
      # check_gpu_single_tensor 'Tensors must be CUDA and dense', 'NCCL only supports CUDA tensors, but got a
      # tensor on {device}')
      "Tensors must be CUDA and dense", "NCCL only supports CUDA tensors"), ()),
    # the same library: a tensor on another GPU than the one the group was bound to (init_process_group's
    # device_id, or the device DeepSpeed/accelerate set for the rank): 'Attempt to perform collective on tensor
    # not on device passed to init_process_group'
    ("collective_wrong_gpu", "a collective called on a tensor that lives on another GPU than the one this rank's "
     "process group was bound to", ("Attempt to perform collective on tensor not on device passed to",), ()),
    # ... and a collective NCCL has no kernel for, as called (libtorch_cuda.so 2.13: 'Cannot use ReduceOp.BAND
    # with NCCL' (BOR, BXOR), 'NCCL does not support all_reduce with sparse tensors. Please use dense tensors
    # instead.', 'Input tensor data type is not supported for NCCL process group: {dtype}', 'Unsupported Float8
    # type for NCCL reduction', 'ProcessGroupNCCL does not support allgather_coalesced' / 'recvAnysource',
    # 'Tensors must be non-overlapping and dense'; 'Tensors must be contiguous' and 'Tensor list must be nonempty'
    # are c10d's checks of every backend)
    # gloo's and distributed_c10d.py's counterparts, run here on gloo: 'Cannot use ReduceOp.BAND with non-integral
    # dtype', 'Cannot use ReduceOp.PREMUL_SUM with Gloo', 'all_reduce does not support RedOpType.MAX on complex tensors'
    ("collective_unsupported", "a collective the process group's backend cannot run as called: a reduction, a dtype "
     "or a tensor layout it has no kernel for",
     ("Cannot use ReduceOp.", "does not support RedOpType.", "NCCL does not support", "not supported for NCCL process group", "type for NCCL reduction",
      "ProcessGroupNCCL does not support", "Tensors must be non-overlapping and dense", "Tensors must be contiguous",
      "Tensor list must be nonempty"), ()),
    # ... and a first collective that cannot tell which GPU is the rank's: ProcessGroupNCCL::getNCCLComm 'Not able
    # to create/get the NCCL Communicator since the GPU devices are not known', and the mem pool's 'NCCL
    # communicator has not been initialized before mem pool creation. You can pass `device_id` to
    # init_process_group'
    ("collective_no_device", "a first NCCL collective with no GPU chosen for the rank (no torch.cuda.set_device, no "
     "device_id given to init_process_group)",
     ("since the GPU devices are not known", "NCCL communicator has not been initialized before mem pool creation"),
     ()),
]

_EMPTY_PARAMS = "optimizer got an empty parameter list"      # torch/optim/optimizer.py Optimizer.__init__
# 'IndexError: list index out of range' where DeepSpeed 0.19 indexes a list of trainable parameters that is
# empty (run here, part V): every parameter frozen (zero/stage_1_and_2.py __init__ 'self.bit16_groups[i][0]';
# ZeRO-0: runtime/utils.py clip_grad_norm_ 'parameters[0]'), or the one trainable module unused by the loss,
# so it gets no gradient (stage_1_and_2.py reduce_ipg_grads 'bucket.buffer[bucket.index]')
_EMPTY_INDEX_SITES = ("zero/stage_1_and_2.py:__init__", "zero/stage_1_and_2.py:reduce_ipg_grads",
                      "runtime/utils.py:clip_grad_norm_")
# torch/autograd: a second backward through a freed graph (engine.backward twice, or loss.backward()
# and engine.backward(loss))
_BACKWARD_TWICE = "Trying to backward through the graph a second time"


# DeepSpeed refusing two features together in words detect/families.py's _FEATURE_REFUSED does not know:
# runtime/torch_autocast.py _validate_auto_cast_settings 'Cannot enable both torch autocast and zero quantized
# weights' (run here): the generic config rule, whose advice is the setting the message names
_FEATURES_REFUSED = ("Cannot enable both",)


def _config_value_refused(name: str, message: str, where: list[str]) -> bool:
    """A value of the ds_config DeepSpeed could not read: runtime/config.py get_torch_autocast_dtype calls
    DtypeEnum(value) and enum.py raises "ValueError: 'float8' is not a valid DtypeEnum" (run here) from
    below DeepSpeed's config module, so the raise site is enum.py, not a config file."""
    return name == "ValueError" and "is not a valid" in message and \
        any("deepspeed/" in w and "config" in w.rsplit("/", 1)[-1] for w in where)


# A path the ds_config names, which DeepSpeed itself makes or opens (part X, each run here): zero/stage3.py
# _configure_tensor_swapping os.path.join(nvme_path, 'zero_stage_3') then os.makedirs (nvme_path a file:
# NotADirectoryError; under /proc: FileNotFoundError; no nvme_path at all: TypeError 'expected str, bytes or
# os.PathLike object, not NoneType'), monitor/tensorboard.py get_summary_writer and monitor/csv_monitor.py
# os.makedirs(output_path/job_name), profiling/flops_profiler/profiler.py print_model_profile open(output_file).
# A denied or read-only write stays write_denied (environment): the place exists, the job may not write there.
_CONFIG_PATH_SITES = (
    ("stage3.py:_configure_tensor_swapping", "zero_optimization.offload_optimizer / offload_param nvme_path"),
    ("swap_tensor/", "zero_optimization.offload_optimizer / offload_param nvme_path"),
    ("monitor/tensorboard.py:", "tensorboard.output_path"),
    ("monitor/csv_monitor.py:", "csv_monitor.output_path"),
    ("flops_profiler/profiler.py:print_model_profile", "flops_profiler.output_file"),
)
_PATH_ERRORS = ("NotADirectoryError", "FileNotFoundError", "IsADirectoryError", "FileExistsError")


def _config_path(name: str, message: str, where: list[str]) -> Family | None:
    if name not in _PATH_ERRORS and not (name == "TypeError" and "os.PathLike object, not NoneType" in message):
        return None
    for site, key in _CONFIG_PATH_SITES:
        if any("deepspeed/" in w and site in w for w in where):
            return Family("ds_config_path", "config_error", 3,
                          f"a path the ds_config gives DeepSpeed ({key}) that is missing or cannot be made a directory "
                          "or file")
    return None


# ops/op_builder/cpu/no_impl.py NotImplementedBuilder.load: 'This op had not been implemented on CPU backend.'
# (the CPU accelerator's stand-in for an op it has no kernel for): a ds_config feature this accelerator cannot
# run, not a build to repair. Which feature, from the frames (part X, run here: zero_quantized_gradients reaches it
# through runtime/comm/coalesced_collectives.py all_to_all_quant_reduce, zero_quantized_weights through
# zero/partition_parameters.py's quantizer)
_NO_KERNEL = "had not been implemented on CPU backend"
_NO_KERNEL_FEATURES = (("coalesced_collectives.py:all_to_all_quant_reduce", "zero_quantized_gradients"),
                       ("partition_parameters.py", "zero_quantized_weights"))


def _no_kernel(message: str, where: list[str]) -> Family | None:
    if _NO_KERNEL not in message:
        return None
    feature = next((f for site, f in _NO_KERNEL_FEATURES if any(site in w for w in where)), None)
    return Family("ds_op_not_on_accelerator", "config_error", 3,
                  f"a ds_config feature ({feature or 'the one whose op the traceback loads'}) that has no kernel on the "
                  "CPU accelerator: DeepSpeed's stand-in op refuses it, no build can add it")


def misuse_family(name: str, message: str, raise_site: str | None, frames: list[str] | None) -> Family | None:
    site = raise_site or ""
    where = [site, *(frames or ())]
    path = zero3_family(name, message, raise_site, frames) or _config_path(name, message, where) or \
        _no_kernel(message, where)
    if path is not None:
        return path
    if (any(t in message for t in _FEATURES_REFUSED) and "deepspeed/" in site) or \
            _config_value_refused(name, message, where):
        return Family("config", "config_error", 3, "a configuration that DeepSpeed refused")
    for fam, why, texts, sites in _MISUSE:
        if any(t in message for t in texts) and (not sites or any(s in site for s in sites)):
            return Family(fam, "config_error", 3, why)
    if _BACKWARD_TWICE in message:
        return Family("backward_twice", "config_error", 3,
                      "backward() run twice over one forward's graph (engine.backward twice, or loss.backward() "
                      "and engine.backward(loss))")
    in_ds = any("deepspeed/" in w for w in where)
    # runtime/engine.py load_checkpoint with checkpoint.load_universal: 'Invalid for universal checkpoint:
    # <dir>/latest_universal does not exist' (run here: a checkpoint never converted by ds_to_universal, which
    # writes latest_universal): the rule failure-checkpoint-missing, whose fix names the conversion
    if "Invalid for universal checkpoint" in message:
        return Family("checkpoint_missing", "config_error", 3,
                      "checkpoint.load_universal set on a checkpoint never converted to the universal format")
    # torch/distributed/_pycute/layout.py complement: a bare AssertionError when a DeviceMesh's shape does not
    # multiply to the world size (deepspeed/utils/groups.py _init_tp_mesh_device builds (world // autotp_size,
    # autotp_size): autotp_size 3 on 2 ranks, run here); only the innermost frames are kept, so the mesh is named
    if name == "AssertionError" and "_pycute/" in site and any("device_mesh.py" in w for w in where):
        return Family("ds_autotp", "config_error", 3,
                      "a device mesh (tensor_parallel.autotp_size x data parallel) that does not fill the world")
    # pipe/engine.py PipelineEngine._next_batch: next(self.data_iterator) ran dry inside train_batch
    if name == "StopIteration" and any("pipe/engine.py" in w for w in where):
        return Family("ds_pipe_data", "config_error", 3,
                      "the data iterator ran out inside train_batch(), which takes gradient_accumulation_steps "
                      "micro-batches from it per call")
    if (_EMPTY_PARAMS in message and in_ds) or (name == "IndexError" and any(s in site for s in _EMPTY_INDEX_SITES)):
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
    # the other way round (run here, 2 ranks): a whole state dict loaded into a ZeRO-3 engine's module, whose
    # parameters are empty partitions ('... from checkpoint, the shape in current model is torch.Size([0]).')
    if any("the shape in current model is torch.Size([0])" in t for t in detail_lines):
        return Family("zero3_partitioned", "config_error", 3,
                      "weights loaded into a ZeRO-3 engine's module with load_state_dict, whose parameters are empty "
                      "partitions outside its forward")
    return None
