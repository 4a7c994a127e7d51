"""Exception families: which kind of trouble an exception says, from its type, its message and
the file that raised it, so a failure no specific rule knows still lands in the right category.

The tables come from the raise sites of the installed libraries (cited per entry); a family is
a *class* of errors, not one wording. First match wins, so the texts that say the most come
first: a 'CUDA error: unknown error' is the GPU whatever exception type carries it.

weight: how likely an exception is the cause rather than a consequence. Communication errors
(the peers of a rank that died) and launcher wrappers (torchelastic's ChildFailedError, which
only repeats that a child failed) are consequences; a user's Ctrl-C is a cause, but a weak one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..lazy_regex import compile_later


@dataclass(frozen=True)
class Family:
    name: str               # environment | storage | config | hardware | gpu_memory | host_memory | launcher | comm | wrapper | interrupt | other
    category: str           # the dsdoctor category of a failure of this family
    weight: int             # 3 cause, 2 weak cause (interrupt), 1 consequence (comm), 0 wrapper
    why: str                # one line: what in the exception said so


# (family, category, weight, names, message texts, raise-site texts, why)
_TABLE: list[tuple[str, str, int, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = [
    # Ctrl-C lands wherever the program waited (a collective in distributed_c10d.py, a DataLoader
    # queue): where it was raised says where the run hung, not that communication failed
    ("interrupt", "other", 2, ("KeyboardInterrupt",), (), (), "an interruption (Ctrl-C / SIGINT)"),
    # cudaGetErrorString texts of a failing GPU (torch c10/cuda/CUDAException.cpp 'CUDA error: %s';
    # the driver's Xid codes, open-gpu-kernel-modules nverror.h)
    ("hardware", "hardware", 3, (),
     ("uncorrectable ECC error", "cudaErrorECCUncorrectable", "GPU has fallen off the bus", "unspecified launch failure",
      "an illegal memory access was encountered", "CUDA error: unknown error", "uncorrectable NVLink error",
      "Xid (PCI:"), (),
     "a CUDA error that a failing GPU produces"),
    # vLLM's engine refusing to start or to serve for lack of GPU memory: its KV cache (vllm/worker/worker.py
    # raise_if_cache_size_invalid 'No available memory for the cache blocks. Try increasing
    # `gpu_memory_utilization` ...', vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory '... larger than
    # the available KV cache memory ...'), its start-up check (vllm/v1/worker/gpu_worker.py init_device 'Free
    # memory on device ... is less than desired GPU memory utilization'). gpu_memory_utilization is vLLM's
    # argument (TRL vllm_gpu_memory_utilization, OpenRLHF --vllm_gpu_memory_utilization), not DeepSpeed's.
    ("vllm_memory", "oom", 3, (),
     ("gpu_memory_utilization", "desired GPU memory utilization", "memory for the cache blocks",
      "available KV cache memory", "can be stored in KV cache"), (),
     "vLLM's engine (the rollout / generation side) had too little GPU memory for its weights and KV cache"),
    # torch/cuda/memory.py & c10 CUDACachingAllocator: torch.OutOfMemoryError 'CUDA out of memory'
    ("gpu_memory", "oom", 3, ("OutOfMemoryError",),
     ("CUDA out of memory", "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "HIP out of memory",
      "XPU out of memory"), (),
     "a GPU out-of-memory error"),
    # Python's MemoryError; c10/core/impl/alloc_cpu.cpp 'DefaultCPUAllocator: can't allocate memory'; errno 12
    ("host_memory", "host_oom", 3, ("MemoryError",),
     ("DefaultCPUAllocator", "Cannot allocate memory", "std::bad_alloc"), (),
     "a host (CPU) out-of-memory error"),
    # deepspeed/ops/op_builder/builder.py: MissingCUDAException ('CUDA_HOME does not exist', 'Unable to run
    # nvcc'), CUDAMismatchException, 'Unable to JIT load the {op} op', 'PyTorch version mismatch! DeepSpeed ops
    # were compiled...'; torch/utils/cpp_extension.py: "Error building extension '{name}'", 'Ninja is required
    # to load C++ extensions', CUDA_NOT_FOUND_MESSAGE, CUDA_MISMATCH_MESSAGE, _run_ninja_build's
    # CalledProcessError "Command '['ninja', '-v']'"; torch/cuda/__init__.py: 'Torch not compiled with CUDA
    # enabled', 'Found no NVIDIA driver', 'The NVIDIA driver on your system is too old', 'No CUDA GPUs are
    # available'; the dynamic loader: 'undefined symbol', 'cannot open shared object file', GLIBCXX.
    ("environment", "environment", 3,
     ("ImportError", "ModuleNotFoundError", "MissingCUDAException", "CUDAMismatchException"),
     ("CUDA_HOME", "nvcc", "ninja", "Ninja", "Error building extension", "Unable to JIT load", "undefined symbol",
      "cannot open shared object file", "GLIBC", "version mismatch! DeepSpeed ops were compiled",
      "Torch not compiled with CUDA enabled", "compiled without CUDA support", "Found no NVIDIA driver",
      "NVIDIA driver on your system is too old", "CUDA driver version is insufficient", "No CUDA GPUs are available",
      "no kernel image is available", "CUDA was not found on the system", "mismatches the version that was used to compile",
      "Unsupported gpu architecture", "libcudart", "libcuda.so", "op_builder"),
     ("op_builder/", "cpp_extension.py", "importlib/__init__.py:import_module"),
     "an install problem (a DeepSpeed op that did not build, a missing package, CUDA/driver mismatch)"),
    # a full disk or quota while writing (a checkpoint, a cache, a log): errno 28 ENOSPC / 122 EDQUOT / 30 EROFS
    # (OSError '[Errno 28] No space left on device'); torch.save's writer caffe2/serialize/inline_container.cc
    # PyTorchStreamWriter ('PytorchStreamWriter failed writing file ...: file write failed', '[enforce fail at
    # inline_container.cc] . unexpected pos N vs M': the file came out shorter than written). /dev/shm is
    # host memory, not disk: launcher.py makes that an shm_error before it gets here. torch 2.13's
    # torch.save to a full device raises 'basic_ios::clear: iostream error' first (its std::ostream
    # write failing), then 'unexpected pos' while handling it (seen writing to /dev/full).
    ("storage", "environment", 3, (),
     ("No space left on device", "[Errno 28]", "Disk quota exceeded", "[Errno 122]", "Read-only file system",
      "[Errno 30]", "PytorchStreamWriter failed writing file", "file write failed", "unexpected pos ",
      "basic_ios::clear: iostream error"),
     (), "a full disk (or quota, or a read-only file system) while writing"),
    # a per-process limit (errno 24 EMFILE, 'Too many open files'): torch's DataLoader shares each
    # batch's tensors through file descriptors by default (torch/multiprocessing/reductions.py,
    # libshm 'unable to open shared memory object <...> in read-write mode: Too many open files (24)')
    ("open_files", "environment", 3, (), ("Too many open files", "[Errno 24]"), (),
     "the open-files limit of the process (ulimit -n) reached"),
    # CUDA's device-side assert (c10/cuda/CUDAException.cpp 'CUDA error: device-side assert triggered'):
    # a kernel's index check failed, nearly always an index out of range in the data or the model
    ("device_assert", "other", 3, (), ("device-side assert triggered",), (),
     "a CUDA kernel's own index check (an index out of range)"),
    # deepspeed/runtime/config.py DeepSpeedConfigError and its asserts; runtime/config_utils.py
    # DeepSpeedConfigModel (pydantic ValidationError); runtime/zero/utils.py ZeRORuntimeException
    # (engine.py: client optimizer under ZeRO-Offload, checkpoint DP world size); transformers
    # integrations/deepspeed.py HfTrainerDeepSpeedConfig ('Please correct the following DeepSpeed config
    # values that mismatch TrainingArguments values'); accelerate utils/deepspeed.py and dataclasses.py
    # DeepSpeedPlugin
    ("config", "config_error", 3,
     ("DeepSpeedConfigError", "ZeRORuntimeException", "ValidationError"),
     ("DeepSpeed config", "deepspeed config", "ds_config", "DeepSpeed Config", "zero_optimization",
      "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "zero_force_ds_cpu_optimizer",
      "offload_optimizer", "offload_param", "validation error for DeepSpeed"),
     ("deepspeed/runtime/config.py", "deepspeed/runtime/config_utils.py", "deepspeed/runtime/zero/config.py",
      "deepspeed/runtime/zero/offload_config.py", "deepspeed/runtime/precision_config.py",
      "integrations/deepspeed.py", "transformers/deepspeed.py", "accelerate/utils/deepspeed.py",
      "accelerate/utils/dataclasses.py", "engine.py:_do_sanity_check", "engine.py:_do_args_sanity_check",
      "engine.py:_configure_optimizer", "engine.py:_configure_basic_optimizer", "engine.py:_configure_lr_scheduler",
      "engine.py:_configure_zero_optimizer"),
     "a configuration that DeepSpeed (or the HF/accelerate integration) refused"),
    # a GPU this process cannot use (cudaGetErrorString texts; c10/cuda/CUDAFunctions.cpp
    # 'Unexpected error from cudaGetDeviceCount()'): more ranks than GPUs on the node or a wrong
    # CUDA_VISIBLE_DEVICES ('invalid device ordinal'), GPUs in exclusive-process mode or held by
    # another job ('all CUDA-capable devices are busy or unavailable'), a driver that does not
    # match the CUDA runtime ('forward compatibility was attempted on non supported HW')
    ("environment", "environment", 3, (),
     ("invalid device ordinal", "all CUDA-capable devices are busy or unavailable",
      "device(s) is/are busy or unavailable",     # cudaErrorDevicesUnavailable's cudaGetErrorString text
      "forward compatibility was attempted", "Unexpected error from cudaGetDeviceCount"), (),
     "a GPU this process cannot use: more ranks than GPUs on the node or a wrong CUDA_VISIBLE_DEVICES "
     "(invalid device ordinal), GPUs busy with another job or in exclusive mode, or a driver that does not "
     "match the CUDA runtime"),
    # deepspeed/launcher/runner.py main(): hostfile parsing, the ssh check ('was not reachable via ssh'),
    # 'Unable to proceed, no GPU resources available', "launcher '{x}' not installed"; the launcher's
    # --local_rank=N argument refused by the script's argparse ('unrecognized arguments: --local_rank=0')
    ("launcher", "environment", 3, (),
     ("was not reachable via ssh", "Hostfile", "hostfile", "no GPU resources available", "not installed.",
      "Unable to detect suitable master address", "--local_rank"),
     ("deepspeed/launcher/",),
     "a launch problem (the ranks could not be started as launched)"),
    # the peers of a failed rank: torch.distributed DistBackendError / DistNetworkError / DistStoreError,
    # ProcessGroupNCCL ('NCCL error', 'Watchdog caught collective operation timeout'), gloo
    # ('Connection closed by peer', 'Connection reset by peer'); torch.cuda.nccl's own calls
    # (torch/csrc/cuda/nccl.cpp: throw_nccl_error 'NCCL Error {code}: {ncclGetErrorString}')
    ("comm", "nccl_error", 1,
     ("DistBackendError", "DistNetworkError", "DistStoreError", "DistError", "RendezvousConnectionError",
      "RendezvousTimeoutError", "RendezvousClosedError"),
     ("NCCL error", "NCCL Error ", "ProcessGroupNCCL", "NCCL communicator", "Connection closed by peer", "Connection reset by peer",
      "Broken pipe", "Socket Timeout", "collective operation timeout", "third_party/gloo", "ncclSystemError",
      "ncclInternalError", "ncclUnhandledCudaError", "ncclRemoteError"),
     # c10d's own C++ (a c10::Error's 'Exception raised from recvBytes at .../c10d/Utils.hpp'): the store's
     # and sockets' transport, not the DDP reducer's usage errors (c10d/reducer.cpp)
     ("distributed_c10d.py", "torch/distributed/elastic/rendezvous", "c10d/Utils.hpp", "c10d/TCPStore",
      "c10d/socket.cpp", "c10d/ProcessGroupNCCL", "c10d/ProcessGroupGloo", "c10d/NCCLUtils"),
     "a communication error, usually what the other ranks see when one rank died"),
    # torch/distributed/elastic/multiprocessing/errors: ChildFailedError (the launcher's summary of a failed
    # child), api.py SignalException; torch/multiprocessing/spawn.py ProcessRaisedException / ProcessExitedException
    ("wrapper", "other", 0,
     ("ChildFailedError", "ProcessRaisedException", "ProcessExitedException", "SignalException", "CalledProcessError"),
     (), (), "the launcher reporting that a rank failed"),
    # Ray re-raising in the driver what a task or actor raised (ray/exceptions.py: RayTaskError, printed as
    # 'ray.exceptions.RayTaskError(OutOfMemoryError): ray::Actor.method() (pid=.., ip=..)' above the worker's
    # own traceback; ActorDiedError 'The actor died because of an error raised in its creation task' likewise,
    # or 'The actor died unexpectedly' with the worker's exit detail on the next lines; Ray Train's
    # TrainingFailedError); vLLM V1's 'Engine core initialization failed. See root cause above.'
    ("wrapper", "other", 0,
     ("RayTaskError", "ActorDiedError", "RayActorError", "TrainingFailedError", "WorkerCrashedError",
      "TaskCancelledError"),
     ("See root cause above",), (), "a wrapper (Ray, a vLLM engine client) re-raising another process's error"),
    # the raylet losing its pipe to a worker that died without a Python error (node_manager.cc: 'Worker
    # unexpectedly exits with a connection error code 2. End of file. There are some potential root causes.
    # (1) The process is killed by SIGKILL by OOM killer ...'): the worker's own end (an NCCL watchdog's
    # abort, the kernel's OOM killer) says why
    ("wrapper", "other", 0, (), ("Worker unexpectedly exits with",), (),
     "Ray reporting that a worker process died without a Python error (its own log or the kernel's says why)"),
    # torch/utils/data/_utils/signal_handling.py & dataloader.py: the main process reporting a
    # worker's death ('DataLoader worker (pid N) is killed by signal: Segmentation fault.',
    # 'DataLoader worker (pid(s) N) exited unexpectedly'): the cause is the worker's signal
    # (launcher.py reads it from the same line and from the worker's own handler)
    ("wrapper", "other", 0, (), ("DataLoader worker (pid",), (), "the DataLoader reporting that a worker died"),
    # the pipe to a process that died, as the survivor sees it: EOFError / ConnectionResetError
    # raised inside multiprocessing (connection.py: Connection._recv, queues.py) while the
    # DataLoader or a launcher was reading from a worker; the worker's own end says why
    ("ipc", "other", 1, (), (), ("multiprocessing/connection.py", "multiprocessing/queues.py"),
     "a lost pipe to another process (one that died first)"),
]

OTHER = Family("other", "other", 3, "an error in the training script or a library that no rule knows")
TRUNCATED = Family("unknown", "other", 1, "a traceback cut off before its exception line")


def classify(type_: str, message: str = "", raise_site: str | None = None, frames: list[str] | None = None) -> Family:
    """The family of one exception."""
    if type_.startswith("(traceback without"):
        return TRUNCATED
    name = re.split(r"[.:]+", type_)[-1]          # torch.distributed.DistBackendError, c10::DistBackendError
    if type_.startswith("pydantic") and name == "ValidationError":
        name = "ValidationError"
    # CalledProcessError of a ninja build (torch cpp_extension._run_ninja_build) is the op build itself
    if name == "CalledProcessError" and "ninja" in message:
        return _family("environment")
    # a launcher re-reporting its child's exit (CPython subprocess.CalledProcessError.__str__
    # "Command '[...]' returned non-zero exit status N"; accelerate/commands/launch.py:
    # _run_subprocess raises it for `deepspeed --hostfile ...`): the command's words (a hostfile
    # path, --local_rank) must not make it look like the launch problem itself
    if name == "CalledProcessError" and "returned non-zero exit status" in message:
        return _family("wrapper")
    # another process's output raised again as a message (accelerate/commands/launch.py
    # _run_subprocess: CalledProcessError(...) from RuntimeError(<the child's stderr tail>)): the
    # child's own traceback, read on its own lines, is the cause
    if "Traceback (most recent call last)" in message:
        return _family("wrapper")
    # torch/_utils.py ExceptionWrapper.reraise: 'Caught {type} {where}.' then 'Original Traceback (most recent
    # call last):' and the worker's own traceback, whose exception is the cause (where: 'in DataLoader worker
    # process N', 'in replica N on device M' of DataParallel, 'in pin memory thread for device N')
    if message.startswith("Caught ") and _RERAISED.match(message):
        return _family("wrapper")
    # bitsandbytes' native library not loaded (bitsandbytes/cextension.py leaves `lib` None after 'The
    # installed version of bitsandbytes was compiled without GPU support'; functional.py then calls
    # lib.c...): an install problem, whatever op it reached first
    if name == "AttributeError" and "'NoneType' object has no attribute" in message and \
            "bitsandbytes/" in (raise_site or ""):
        return _family("environment")
    if _DTYPE_MISMATCH.search(message):
        return Family("dtype", "config_error", 3, "a tensor of one dtype met weights of another")
    if _META_TENSOR.search(message):
        return Family("meta_tensor", "config_error", 3,
                      "a weight still on the meta device (never loaded) was moved or read")
    if name == "ValueError" and _AMP_FP16_GRADS in message:
        return Family("amp_fp16_grads", "config_error", 3,
                      "torch AMP's GradScaler met gradients that are already fp16 (fp16 trainable weights)")
    if _ZERO3_EMPTY.search(message):
        return Family("zero3_partitioned", "config_error", 3,
                      "a weight with no elements or no second dimension: a ZeRO-3 partitioned parameter read directly")
    if name in ("JSONDecodeError", "HjsonDecodeError") and \
            any(loader in f for f in frames or () for loader in _CONFIG_LOADERS):
        return Family("config_json", "config_error", 3, "a ds_config file that is not valid JSON")
    sites = [raise_site] if raise_site else []
    sites += frames or []
    for fam, cat, weight, names, texts, site_texts, why in _TABLE:
        if name in names or any(t in message for t in texts) or \
                (site_texts and raise_site and any(s in raise_site for s in site_texts)) or \
                (fam == "config" and _SETTINGS_REFUSED.search(message)):
            if fam == "config" and name not in names and not _config_shaped(name):
                continue
            if fam == "comm" and "timeout" in message.lower() or fam == "comm" and "timed out" in message.lower():
                return Family("comm", "comm_stall", 1, why)
            return Family(fam, cat, weight, why)
    return OTHER


# the readers of a ds_config file: accelerate utils/deepspeed.py HfDeepSpeedConfig.__init__ (json.load;
# transformers integrations/deepspeed.py HfDeepSpeedConfig subclasses it) and deepspeed/runtime/config.py
# DeepSpeedConfig.__init__ (hjson.load): a JSONDecodeError under one of them is the user's config file
_CONFIG_LOADERS = ("accelerate/utils/deepspeed.py", "integrations/deepspeed.py", "transformers/deepspeed.py",
                   "deepspeed/runtime/config.py")


# transformers (modeling_utils, integrations/deepspeed.py, trainer.py) and accelerate (accelerator.py,
# utils/dataclasses.py DeepSpeedPlugin) refuse a combination of settings with a ValueError /
# NotImplementedError that names DeepSpeed or ZeRO ('DeepSpeed Zero-3 is not compatible with
# `low_cpu_mem_usage=True`', 'ZeRO inference only makes sense with ZeRO Stage 3', 'Please specify
# the ZeRO optimization config in the DeepSpeed config.')
_SETTINGS_REFUSED = compile_later(r"\b(?:DeepSpeed|ZeRO|Zero-?[0-3])\b")


# torch's checks that fail on a ZeRO-3 parameter read outside the engine's forward, where DeepSpeed
# leaves it partitioned (a 1-D tensor of 0 elements on each rank): aten/src/ATen/native/Embedding.cpp
# "'weight' must be 2-D", aten addmv "size mismatch, got input (N), mat (AxB), vec (0)", and the
# broadcasting check "The size of tensor a (0) must match the size of tensor b (N)" (seen on a real
# ZeRO-3 run here with stage3_param_persistence_threshold 0).
# a tensor on the meta device (shape, no data) reached a copy: aten's _to_copy 'Cannot copy out of meta
# tensor; no data!' (torch/nn/modules/module.py Module.to adds 'Please use torch.nn.Module.to_empty()
# ...'), and '.item()' on one (aten 'Tensor.item() cannot be called on meta tensors'). Weights are on the
# meta device when the model was built empty (low_cpu_mem_usage=True, a device_map, accelerate's
# init_empty_weights) and the loading that fills them did not happen for them.
_META_TENSOR = compile_later(r"Cannot copy out of meta tensor|cannot be called on meta tensors")
# torch/amp/grad_scaler.py GradScaler._unscale_grads_ (and fsdp/sharded_grad_scaler.py):
# raise ValueError("Attempting to unscale FP16 gradients.") when a trainable parameter is fp16
_AMP_FP16_GRADS = "Attempting to unscale FP16 gradients"
_RERAISED = compile_later(r"Caught \w+ in (?:DataLoader worker process \d+|replica \d+ on device \d+|pin memory thread)")
_ZERO3_EMPTY = compile_later(r"'weight' must be 2-D|\bvec \(0\)|size of tensor [ab] \(0\) must match")


# torch's dtype checks (aten: matmul/addmm 'mat1 and mat2 must have the same dtype, but got Float and
# BFloat16', older 'expected mat1 and mat2 to have the same dtype' / 'expected m1 and m2 to have the same
# dtype', 'expected scalar type Half but found Float', convolutions 'Input type (...) and weight type
# (...) should be the same'): under DeepSpeed's fp16/bf16 the engine casts the weights, not the batch
# (seen on a real bf16 run here, a float32 batch into the engine)
_DTYPE_MISMATCH = compile_later(r"(?:mat1 and mat2|m1 and m2) (?:must|to) have the same dtype|expected scalar type \w+ but "
                                r"found \w+|Input type \(.*?\) and weight type \(.*?\) should be the same")


def _config_shaped(name: str) -> bool:
    # a configuration mistake is refused with these; a TypeError in a forward is not one
    return name in ("ValueError", "AssertionError", "KeyError", "TypeError", "NotImplementedError", "RuntimeError",
                    "Exception", "AttributeError")


def _family(name: str) -> Family:
    for fam, cat, weight, _n, _t, _s, why in _TABLE:
        if fam == name:
            return Family(fam, cat, weight, why)
    return OTHER
