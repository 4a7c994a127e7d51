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

from ..lazy_regex import compile_later
from .ds_misuse import misuse_family
from .family import Family


# (family, category, weight, names, message texts, raise-site texts, why)
_TABLE: list[tuple[str, str, int, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = [
    # Ctrl-C lands wherever the program waited (a collective in distributed_c10d.py, a DataLoader
    # queue): where it was raised says where the run hung, not that communication failed
    ("interrupt", "other", 2, ("KeyboardInterrupt",), (), (), "an interruption (Ctrl-C / SIGINT)"),
    # cudaGetErrorString texts of a failing GPU (torch c10/cuda/CUDAException.cpp 'CUDA error: %s';
    # the driver's Xid codes, open-gpu-kernel-modules nverror.h)
    ("hardware", "hardware", 3, (),
     ("uncorrectable ECC error", "cudaErrorECCUncorrectable", "GPU has fallen off the bus", "unspecified launch failure",
      "an illegal memory access was encountered", "CUDA error: unknown error", "CUDA driver error: unknown error",
      "uncorrectable NVLink error",
      "Xid (PCI:",
      # cudaErrorContained (706, libcudart's text): 'an exception occurred on the device that is now contained by
      # the GPU's error containment capability', per CUDA's driver_types.h invalid peer accesses over NVLink or
      # hardware errors
      "Invalid access of peer GPU memory over nvlink or a hardware error"), (),
     "a CUDA error that a failing GPU produces"),
    # the other kernel faults that, like cudaErrorIllegalAddress, 'leave the process in an inconsistent state'
    # (CUDA driver_types.h 714-718; texts as libcudart prints them): a faulty kernel (a custom or fused op, an
    # extension built for another GPU, shapes a kernel does not support) or a failing GPU
    ("kernel_fault", "hardware", 3, (),
     ("misaligned address", "an illegal instruction was encountered", "hardware stack error",
      "invalid program counter"), (),
     "a CUDA kernel fault that leaves the process's GPU context unusable: a faulty kernel (a custom or fused op, an "
     "extension built for another GPU) or a failing GPU"),
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
    # torch/cuda/memory.py & c10 CUDACachingAllocator: torch.OutOfMemoryError 'CUDA out of memory'; the other
    # accelerators' allocators as accelerate/utils/memory.py should_reduce_batch_size lists them (HIP, XPU, 'MPS
    # backend out of memory', Gaudi's 'FATAL ERROR :: MODULE:PT_DEVMEM Allocation failed') and torch_npu's
    # NPUCachingAllocator ('NPU out of memory', a RuntimeError; strings of libtorch_npu.so 2.14); and
    # accelerate's batch-size finder giving up (utils/memory.py find_executable_batch_size: 'No executable batch
    # size found, reached zero.', raised once every batch size down to 1 ran out of memory, its OOMs caught)
    ("gpu_memory", "oom", 3, ("OutOfMemoryError",),
     ("CUDA out of memory", "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "HIP out of memory",
      "XPU out of memory", "NPU out of memory", "MPS backend out of memory", "MODULE:PT_DEVMEM Allocation failed",
      "HIP error: out of memory", "No executable batch size found",
      # cuBLASLt's workspace (torch 2.13 libtorch_cuda.so, aten/src/ATen/cuda/CUDABlas.cpp: 'OOM trying to allocate
      # workspace for cublaslt')
      "OOM trying to allocate workspace", "CUDNN_STATUS_ALLOC_FAILED", "CUSOLVER_STATUS_ALLOC_FAILED"), (),
     "a GPU out-of-memory error"),
    # Python's MemoryError; c10/core/impl/alloc_cpu.cpp 'DefaultCPUAllocator: can't allocate memory'; errno 12
    # (ENOMEM by its number too: its text is translated where a program set LC_MESSAGES)
    ("host_memory", "host_oom", 3, ("MemoryError",),
     ("DefaultCPUAllocator", "Cannot allocate memory", "std::bad_alloc", "[Errno 12]"), (),
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
      "Unsupported gpu architecture", "libcudart", "libcuda.so", "op_builder",
      # libcudart's texts for a driver / toolkit / build that do not fit together (CUDA driver_types.h 34, 98, 200,
      # 221-223, 803): a stub libcuda loaded, code not built for this GPU, PTX newer than the driver's JIT
      "CUDA driver is a stub library", "invalid device function", "device kernel image is invalid",
      "PTX JIT compiler library not found", "compiled with an unsupported toolchain", "PTX JIT compilation was disabled",
      "unsupported display driver / cuda driver combination",
      # deepspeed/autotuning/autotuner.py Autotuner.__init__: 'Missing required package `tabulate`, please
      # install with `pip install deepspeed[autotuning]`.' (an AssertionError; `deepspeed --autotuning run`, run here)
      "Missing required package",
      # the runtime compiler torch's jiterator and fused kernels load (torch 2.13 libtorch_cuda.so 'CUDA NVRTC error:
      # {nvrtcGetErrorString}', e.g. NVRTC_ERROR_BUILTIN_OPERATION_FAILURE: libnvrtc-builtins missing or of another CUDA)
      "CUDA NVRTC error",
      # an NCCL older than the call needs (torch 2.13 libtorch_cuda.so ProcessGroupNCCL: 'ProcessGroupNCCL::shrink
      # requires NCCL version 2.27.0 or later. Found version: {v}', 'Capturing NCCL collectives is only allowed with
      # NCCL >= 2.9.6', 'NCCL mem allocator is not supported in this NCCL version')
      "requires NCCL version", "only allowed with NCCL >=", "not supported in this NCCL version",
      # deepspeed/ops/adam/cpu_adam.py DeepSpeedCPUAdam.__init__ 'DeepSpeedCPUAdam requires the cpu_adam op, which
      # failed to build/load.' (raised from the build's own error; run here: no ninja, a missing compiler, a
      # read-only TORCH_EXTENSIONS_DIR): the op's build, not the config
      "failed to build/load",
      # an extension compiled against NumPy 1.x under NumPy 2 (numpy/core/_multiarray_umath.py; the C-API check's
      # 'module compiled against ABI version 0x1000009 but this version of numpy is 0x2000000'; Cython's
      # 'numpy.dtype size changed, may indicate binary incompatibility')
      "_ARRAY_API not found", "numpy.core.multiarray failed to import", "compiled against ABI version",
      "compiled against API version", "may indicate binary incompatibility"),
     ("op_builder/", "cpp_extension.py", "importlib/__init__.py:import_module"),
     "an install problem (a DeepSpeed op that did not build, a missing package, CUDA/driver mismatch)"),
    # a full disk or quota while writing (a checkpoint, a cache, a log): errno 28 ENOSPC / 122 EDQUOT / 30 EROFS
    # (OSError '[Errno 28] No space left on device'); torch.save's writer caffe2/serialize/inline_container.cc
    # PyTorchStreamWriter ('PytorchStreamWriter failed writing file ...: file write failed', '[enforce fail at
    # inline_container.cc] . unexpected pos N vs M': the file came out shorter than written). /dev/shm is
    # host memory, not disk: launcher.py makes that an shm_error before it gets here. torch 2.13's
    # torch.save to a full device raises 'basic_ios::clear: iostream error' first (its std::ostream
    # write failing), then 'unexpected pos' while handling it (seen writing to /dev/full).
    # a write (or read) the operating system refused: errno 13 EACCES ('[Errno 13] Permission denied: '
    # '/ckpt/global_step100''), errno 30 EROFS ('[Errno 30] Read-only file system'), raised by open()/os.makedirs
    # under torch.save, DeepSpeed's save_checkpoint, HF Trainer._save_checkpoint (seen here writing into a
    # directory another user owns, and onto a read-only mount): a place the job may not write, not a full disk
    ("write_denied", "environment", 3, ("PermissionError",),
     ("[Errno 13] Permission denied", "[Errno 30]", "Read-only file system",
      # torch.save's writer (caffe2/serialize/inline_container.cc: 'open file failed with strerror: {strerror}')
      "strerror: Permission denied"), (),
     "a write the operating system refused: a directory the job may not write, or a read-only mount"),
    # the Hugging Face Hub not reachable (or offline mode on) for a model, tokenizer or dataset not in the
    # local cache: transformers/utils/hub.py cached_files ("We couldn't connect to '{ENDPOINT}' to load the
    # files, and couldn't find them in the cached files", 'There was a specific connection error when trying
    # to load'), huggingface_hub/errors.py LocalEntryNotFoundError ('Cannot find the requested files in the
    # disk cache and outgoing traffic has been disabled'), OfflineModeIsEnabled; datasets' "Couldn't reach
    # '{path}' on the Hub" (seen here with HF_HUB_OFFLINE=1 and with HF_ENDPOINT on a closed loopback port)
    ("hub_unreachable", "environment", 3, ("LocalEntryNotFoundError", "OfflineModeIsEnabled"),
     ("couldn't find them in the cached files", "outgoing traffic has been disabled",
      "specific connection error when trying to load", "Couldn't reach '", "We couldn't connect to '"), (),
     "a Hugging Face Hub that could not be reached (or offline mode on) for files that are not in the local cache"),
    # a model name that is neither a local folder nor a Hub repository (transformers 5.25 utils/hub.py
    # cached_files: '{path} is not a local folder and is not a valid model identifier listed on ...', '{path}
    # does not appear to have a file named {file}', '{revision} is not a valid git identifier'; huggingface_hub
    # 2.4 utils/_validators.py validate_repo_id "Repo id must be in the form 'repo_name' or
    # 'namespace/repo_name': '{id}'" re-raised as OSError, seen here with a local path that did not exist)
    ("model_path", "config_error", 3, ("RepositoryNotFoundError", "HFValidationError", "RevisionNotFoundError"),
     ("is not a local folder and is not a valid model identifier", "Repo id must be in the form",
      "Repo id must use alphanumeric chars", "does not appear to have a file named", "is not a valid git identifier"), (),
     "a model path or Hub id that names nothing there: a local directory that does not exist (or lacks the model's "
     "files), or a misspelt repository id"),
    # a gated or private repository this machine's token may not read (transformers utils/hub.py 'You are trying
    # to access a gated repo.', '{path} is a gated repository. Make sure to request access at'; huggingface_hub
    # GatedRepoError; cited, not run: the network here is loopback only)
    ("hub_access", "environment", 3, ("GatedRepoError",),
     ("You are trying to access a gated repo", "is a gated repository"), (),
     "a gated (or private) Hugging Face repository that the token on this machine may not read"),
    # a kernel this GPU is too old for: transformers modeling_utils.py ('FlashAttention{v} requires compute
    # capability >= {x}, but found ...'), integrations ('Blocked attention requires CUDA compute capability >=
    # 8.0', 'FP8 quantized models is only supported on GPUs with compute capability >= 8.9'), deepspeed
    # inference/v2 blocked_flash.cpp ('FlashAttention only supports Ampere GPUs or newer.', 'bfloat16 is only
    # supported on Ampere GPUs or newer'): the machine, not a failing GPU and not the DeepSpeed config
    ("gpu_capability", "environment", 3, (),
     ("Ampere GPUs or newer", "requires compute capability >=", "requires CUDA compute capability >=",
      "only supported on GPUs with compute capability",
      # torch 2.13 (libtorch_cuda.so): cuDNN's SDPA 'SDPA FP16/BF16 requires SM80 (Ampere) or newer architecture';
      # the libraries' own status for a feature this GPU lacks (cuBLAS/cuDNN/cuSOLVER *_STATUS_ARCH_MISMATCH)
      "or newer architecture", "CUBLAS_STATUS_ARCH_MISMATCH", "CUDNN_STATUS_ARCH_MISMATCH",
      "CUSOLVER_STATUS_ARCH_MISMATCH"), (),
     "a kernel or data type this GPU is too old for (its compute capability)"),
    # the experiment tracker, not the training: an exception raised inside wandb (wandb 0.31 provoked here
    # with WANDB_BASE_URL on a closed loopback port: wandb/sdk/wandb_init.py re-raises the service's
    # 'CommError: Timed out while retrying: Post ".../graphql": ... connection refused' with 'Consider
    # increasing the init_timeout setting')
    ("tracker", "environment", 3, (), ("Consider increasing the init_timeout setting",), ("wandb/sdk/", "wandb/apis/"),
     "the experiment tracker (Weights & Biases) failing: its server out of reach, or its set-up refused"),
    ("storage", "environment", 3, (),
     ("No space left on device", "[Errno 28]", "Disk quota exceeded", "[Errno 122]", "Read-only file system",
      "[Errno 30]", "PytorchStreamWriter failed writing file", "file write failed", "unexpected pos ",
      "basic_ios::clear: iostream error"),
     (), "a full disk (or quota, or a read-only file system) while writing"),
    # a file system that failed under the run, not a full one: errno 116 ESTALE ('[Errno 116] Stale file handle':
    # an NFS file replaced or its export remounted), 107 ENOTCONN ('Transport endpoint is not connected': a FUSE
    # mount, s3fs / gcsfuse / blobfuse / sshfs, whose daemon died), 5 EIO ('Input/output error': the disk or the
    # network file system failing, or a print() to a terminal that closed); CPython's OSError wording of strerror
    ("storage_io", "environment", 3, (),
     ("Stale file handle", "[Errno 116]", "Transport endpoint is not connected", "[Errno 107]",
      "Input/output error", "[Errno 5]"), (),
     "a file system that failed under the run: a network or FUSE mount that dropped or went stale, or an I/O error"),
    # a batch the tokenizer cannot make rectangular: transformers 5.25 tokenization_utils_base.py _get_padding_truncation_
    # strategies ('Asking to pad but the tokenizer does not have a padding token'), BatchEncoding.convert_to_tensors
    # ('Unable to create tensor, you should probably activate truncation and/or padding'); both run here
    ("tokenizer_batch", "other", 3, (),
     ("Asking to pad but the tokenizer does not have a padding token",
      "Unable to create tensor, you should probably activate truncation and/or padding"), (),
     "a batch the tokenizer or data collator cannot pad into one tensor (no pad token, or rows of different "
     "lengths with padding off)"),
    # a per-process limit (errno 24 EMFILE, 'Too many open files'): torch's DataLoader shares each
    # batch's tensors through file descriptors by default (torch/multiprocessing/reductions.py,
    # libshm 'unable to open shared memory object <...> in read-write mode: Too many open files (24)')
    # CPython multiprocessing/reduction.py recvfds ('received 0 items of ancdata'): the descriptor of a shared
    # tensor did not arrive (torch/multiprocessing/reductions.py rebuild_storage_fd), the receiver out of them
    ("open_files", "environment", 3, (), ("Too many open files", "[Errno 24]", "items of ancdata"), (),
     "the open-files limit of the process (ulimit -n) reached"),
    # text read with a codec that does not fit the bytes (CPython Objects/exceptions.c UnicodeDecodeError.__str__:
    # "'{codec}' codec can't decode byte 0x{b:02x} in position {n}: {reason}", run here reading a Latin-1 file as
    # UTF-8; 'ascii' is the codec open() takes under the C/POSIX locale: LANG unset in a container or a pdsh shell)
    ("text_encoding", "environment", 3, ("UnicodeDecodeError", "UnicodeEncodeError"),
     ("codec can't decode byte", "codec can't encode character"), (),
     "text read or written with an encoding that does not fit it (the file's, or the locale's default)"),
    # the process/thread limit (RLIMIT_NPROC, a container's or cgroup's pids.max): CPython Modules/_threadmodule.c
    # "can't start new thread" (run here under pids.max: DataLoader workers starting their threads), libgomp's
    # fatal 'libgomp: Thread creation failed: Resource temporarily unavailable' (run here: torch's OpenMP pool),
    # OpenBLAS 'pthread_create failed for thread N of M'
    ("thread_limit", "environment", 3, (),
     ("can't start new thread", "Thread creation failed", "pthread_create failed"), (),
     "the limit on processes and threads (ulimit -u, a container's or cgroup's pids limit) reached"),
    # CUDA's device-side assert (c10/cuda/CUDAException.cpp 'CUDA error: device-side assert triggered'):
    # a kernel's index check failed, nearly always an index out of range in the data or the model
    ("device_assert", "other", 3, (), ("device-side assert triggered",), (),
     "a CUDA kernel's own index check (an index out of range)"),
    # cuBLAS could not create its handle (torch/include/ATen/cuda/Exceptions.h TORCH_CUDABLAS_CHECK: 'CUDA error: ',
    # _cublasGetErrorEnum(err), ' when calling `cublasCreate(handle)`', from CublasHandlePool.cpp): cublasCreate
    # allocates its workspace on the device, so a GPU already full says this instead of an OOM; a CUDA context an
    # earlier kernel fault broke (a device-side assert printed above it) says it too. Weight 2: an OOM or a
    # kernel's assert beside it is the cause (detect/failure.py reads the assert lines)
    # cuDNN's handle likewise (torch 2.13 libtorch_cuda.so, aten/src/ATen/cudnn: 'cuDNN error: {cudnnGetErrorString}',
    # cudnnCreate failing with CUDNN_STATUS_NOT_INITIALIZED)
    ("cublas_init", "oom", 2, (), ("CUBLAS_STATUS_NOT_INITIALIZED", "CUDNN_STATUS_NOT_INITIALIZED"), (),
     "cuBLAS (or cuDNN) could not initialise on its GPU: nearly always no device memory left for its handle"),
    # cudaErrorLaunchTimeout (CUDA driver_types.h 702, libcudart's text 'the launch timed out and was terminated'):
    # a kernel ran past the watchdog that a GPU driving a display has (X server, Windows' TDR); it 'leaves the
    # process in an inconsistent state'
    ("launch_timeout", "environment", 3, (), ("the launch timed out and was terminated", "cudaErrorLaunchTimeout"), (),
     "a kernel ran past the display watchdog of a GPU that also drives a display"),
    # a precision the device cannot compute in: deepspeed/runtime/engine.py _do_sanity_check ('Type fp16 is not
    # supported on your device.', 'Type bf16 ...': get_accelerator().is_fp16_supported() / is_bf16_supported(),
    # seen here with fp16 on the CPU accelerator); transformers training_args.py ("Your setup doesn't support
    # bf16/gpu. ... You need Ampere+ GPU with cuda>=11.0."; 4.x: '... You need torch>=1.10, using Ampere GPU
    # with cuda>=11.0'): the config asks for it, so another precision is the fix (config_error)
    ("precision_unsupported", "config_error", 3, (),
     ("is not supported on your device", "doesn't support bf16/gpu"), (),
     "a mixed precision this device cannot compute in"),
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
    # cudaErrorSystemNotReady (802; cudaGetErrorString 'system not yet initialized', read in libcudart; CUDA's
    # driver_types.h: 'verify the system configuration is in a valid state and all required driver daemons are
    # actively running'): on NVSwitch machines (HGX/DGX A100, H100) the fabric manager is not running, or is not
    # the driver's version; no GPU on the node can start work until it is
    ("gpu_not_ready", "environment", 3, (), ("system not yet initialized",), (),
     "the node's GPUs not ready for CUDA work: a driver daemon is not running (on NVSwitch machines the fabric "
     "manager)"),
    # a GPU this process cannot use (cudaGetErrorString texts; c10/cuda/CUDAFunctions.cpp
    # 'Unexpected error from cudaGetDeviceCount()'): more ranks than GPUs on the node or a wrong
    # CUDA_VISIBLE_DEVICES ('invalid device ordinal'), GPUs in exclusive-process mode or held by
    # another job ('all CUDA-capable devices are busy or unavailable'), a driver that does not
    # match the CUDA runtime ('forward compatibility was attempted on non supported HW')
    ("environment", "environment", 3, (),
     ("invalid device ordinal", "all CUDA-capable devices are busy or unavailable",
      "device(s) is/are busy or unavailable",     # cudaErrorDevicesUnavailable's cudaGetErrorString text
      "forward compatibility was attempted", "Unexpected error from cudaGetDeviceCount",
      # libcudart: cudaErrorNoDevice (100); the MPS daemon's (805-810: the client could not connect, was
      # terminated by the server, the server not ready)
      "no CUDA-capable device is detected", "MPS client failed to connect", "MPS client has been terminated",
      "MPS server is not ready",
      # torch 2.13 libtorch_cuda.so, ProcessGroupNCCL's constructor: an NCCL group made where no GPU is visible
      "ProcessGroupNCCL is only supported with GPUs, no GPUs found"), (),
     "a GPU this process cannot use: more ranks than GPUs on the node or a wrong CUDA_VISIBLE_DEVICES "
     "(invalid device ordinal), GPUs busy with another job or in exclusive mode, or a driver that does not "
     "match the CUDA runtime"),
    # a CUDA library call that failed (torch 2.13 libtorch_cuda.so: 'CUDA error: CUBLAS_STATUS_{status} when calling
    # `cublasGemmEx(...)`', 'cuDNN error: CUDNN_STATUS_{status}', 'cusolver error: CUSOLVER_STATUS_{status}, when
    # calling ...'): cuBLAS's and cuDNN's statuses name no cause of their own. EXECUTION_FAILED / INTERNAL_ERROR /
    # MAPPING_ERROR follow an earlier asynchronous kernel error (an index out of range, an illegal access) or a
    # full GPU; NOT_SUPPORTED / INVALID_VALUE / BAD_PARAM are a dtype or shape the library has no kernel for on
    # this GPU (bf16 before Ampere, a dimension past 2^31). NOT_INITIALIZED and ALLOC_FAILED are the memory's.
    ("gpu_library", "other", 3, (),
     ("CUBLAS_STATUS_EXECUTION_FAILED", "CUBLAS_STATUS_INTERNAL_ERROR", "CUBLAS_STATUS_MAPPING_ERROR",
      "CUBLAS_STATUS_NOT_SUPPORTED", "CUBLAS_STATUS_INVALID_VALUE", "CUDNN_STATUS_EXECUTION_FAILED",
      "CUDNN_STATUS_INTERNAL_ERROR", "CUDNN_STATUS_MAPPING_ERROR", "CUDNN_STATUS_NOT_SUPPORTED", "CUDNN_STATUS_BAD_PARAM",
      "CUSOLVER_STATUS_EXECUTION_FAILED", "CUSOLVER_STATUS_INTERNAL_ERROR", "CUSOLVER_STATUS_INVALID_VALUE"), (),
     "a CUDA math library call (cuBLAS, cuDNN, cuSOLVER) that failed with a status that names no cause: most often "
     "the consequence of an earlier asynchronous kernel error or a full GPU, else a dtype or shape the library has "
     "no kernel for on this GPU"),
    # torch's scaled_dot_product_attention with no kernel for its inputs (torch 2.13 libtorch_cuda.so sdp_utils:
    # 'No available kernel. Aborting execution.', after one warning per kernel: 'Flash attention kernel not used
    # because:', 'Memory efficient kernel not used because:', 'cuDNN attention kernel not used because:')
    # (the CPU build's attention.cpp says it with two spaces: 'No available kernel.  Aborting execution.', a real run)
    ("sdpa_no_kernel", "other", 3, (), ("No available kernel. Aborting execution", "No available kernel.  Aborting execution"), (),
     "torch's scaled_dot_product_attention found no kernel for these inputs on this GPU (dtype, head dimension, "
     "mask, dropout or the GPU's architecture; the warnings above it say why each kernel was refused)"),
    # deepspeed/launcher/runner.py main(): hostfile parsing, the ssh check ('was not reachable via ssh'),
    # 'Unable to proceed, no GPU resources available', "launcher '{x}' not installed"; the launcher's
    # --local_rank=N argument refused by the script's argparse ('unrecognized arguments: --local_rank=0')
    ("launcher", "environment", 3, (),
     ("was not reachable via ssh", "Hostfile", "hostfile", "no GPU resources available", "not installed.",
      "Unable to detect suitable master address", "--local_rank"),
     ("deepspeed/launcher/",),
     "a launch problem (the ranks could not be started as launched)"),
    # torch.distributed used before it was set up: distributed_c10d.py _get_default_group 'Default process
    # group has not been initialized, please make sure to call init_process_group.' (ValueError; RuntimeError
    # in 1.x), get_node_local_rank 'LOCAL_RANK is not in the environment', rendezvous.py _env_error
    # 'Error initializing torch.distributed using env:// rendezvous: environment variable MASTER_ADDR
    # expected, but not set': the script was started without a launcher, or before init_distributed
    ("dist_setup", "environment", 3, (),
     ("Default process group has not been initialized", "LOCAL_RANK is not in the environment",
      "rendezvous: environment variable"), (),
     "torch.distributed used before it was set up: the script was not started by a launcher (deepspeed, torchrun, "
     "accelerate) or called a collective before deepspeed.init_distributed / init_process_group"),
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
    # TrainingFailedError; Ray Train v2's ray/train/v2/api/exceptions.py WorkerGroupError 'Training failed due
    # to worker errors: [Rank N Error Snippet]: ...', ControllerError, WorkerGroupStartupFailedError); vLLM
    # V1's 'Engine core initialization failed. See root cause above.'
    ("wrapper", "other", 0,
     ("RayTaskError", "ActorDiedError", "RayActorError", "TrainingFailedError", "WorkerCrashedError",
      "TaskCancelledError", "WorkerGroupError", "ControllerError", "WorkerGroupStartupFailedError"),
     # (Ray Train v2's controller prints the same summary as 'Error: Training failed due to worker errors:')
     ("See root cause above", "Training failed due to worker errors", "Training failed due to controller error"),
     (), "a wrapper (Ray, a vLLM engine client) re-raising another process's error"),
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
    # torch.compile's toolchain missing (run here, torch 2.13: inductor on the CPU with no working C++ compiler,
    # torch/_inductor/cpp_builder.py cpp_compiler_search 'InvalidCxxCompiler: No working C++ compiler found in
    # torch._inductor.config.cpp.cxx: ...'; on the GPU torch/utils/_triton.py / _inductor 'Cannot find a working
    # triton installation'); Triton building its launcher stub with no C compiler (triton/runtime/build.py _build
    # 'Failed to find C compiler. Please specify via CC environment variable.', wrapped in Inductor's InductorError
    # in a slim container): the machine, not the model. Last in the table: a CUDA OOM or an NCCL error raised
    # from compiled code is that, not this
    ("compile_toolchain", "environment", 3, ("InvalidCxxCompiler",),
     ("InvalidCxxCompiler", "No working C++ compiler found", "Cannot find a working triton installation",
      "Failed to find C compiler"), (),
     "torch.compile's compiler toolchain missing on this machine (a C++ compiler for Inductor on the CPU, Triton "
     "on the GPU)"),
    # a C compiler the run started itself failing (subprocess.CalledProcessError "Command '['/usr/bin/gcc', ...]'
    # returned non-zero exit status 1": Triton building its driver module cuda_utils from a main.c in /tmp at the
    # first compiled step, triton/runtime/build.py; Inductor's cpp_builder): the machine lacks what the build needs
    # (Python.h of python3-dev, libcuda.so for -lcuda), not the model. Matched by classify() on the command
    ("compiler_run", "environment", 3, (), (), (),
     "a C/C++ compiler run by the training process itself (Triton's driver module or Inductor's kernels at the first "
     "compiled step) failing: a header or library it needs is missing on this machine"),
    # torch.compile failing to trace or compile the model (torch/_dynamo/exc.py: BackendCompilerFailed, Unsupported,
    # UserError 'Could not guard on data-dependent expression' - run here with fullgraph=True over a branch on
    # .item() -, TorchRuntimeError; torch/_inductor/exc.py InductorError), raised from dynamo's or inductor's own
    # frames
    ("compile", "config_error", 3, ("BackendCompilerFailed", "InductorError", "TorchRuntimeError"), (),
     ("torch/_dynamo/", "torch/_inductor/"),
     "torch.compile (TorchDynamo / Inductor) failing to trace or compile the model"),
]

OTHER = Family("other", "other", 3, "an error in the training script or a library that no rule knows")
CKPT_MISSING = Family("checkpoint_missing", "config_error", 3,
                      "a checkpoint to resume from that is not where the run looked (a wrong directory or tag, or the "
                      "files of another ZeRO stage)")
CKPT_CORRUPT = Family("checkpoint_corrupt", "environment", 3,
                      "a checkpoint file that cannot be read: cut short or damaged (a save that died half-way, a full "
                      "disk, a copy that did not finish)")
STATE_DICT_MISMATCH = Family("state_dict_mismatch", "config_error", 3,
                             "a checkpoint whose weights do not fit the model built: another architecture or size")
TRUNCATED = Family("unknown", "other", 1, "a traceback cut off before its exception line")
# the device_assert family of the table, for an error a kernel's assert line above it explains (detect/failure.py)
DEVICE_ASSERT = next(Family(n, c, w, why) for n, c, w, _, _, _, why in _TABLE if n == "device_assert")
# A pretrained model's files (not a training checkpoint) missing or cut short, read by from_pretrained
# (transformers 5.25 modeling_utils.py _load_pretrained_model: safetensors' safe_open 'No such file or
# directory: {dir}/model-00006-of-00006.safetensors' for a shard the index names, 'Error while deserializing
# header: incomplete metadata, file not fully covered' for a truncated one; both run here): a download or
# copy that did not finish, so fetching the files again is the fix, not resuming from another checkpoint
MODEL_FILES = Family("model_files_incomplete", "environment", 3,
                     "a pretrained model's files that are missing or cut short (a download or copy that did not "
                     "finish)")
# A model folder with no weights file at all (transformers modeling_utils.py _get_resolved_checkpoint_files:
# 'Error no file named model.safetensors, or pytorch_model.bin, found in directory {dir}.'): run here, the HF
# Trainer's save_model under ZeRO-3 without stage3_gather_16bit_weights_on_model_save writes config.json and
# the ZeRO checkpoint but no weights, and a later from_pretrained of that folder raises this (engine.save_16bit_model
# writes nothing either, and torch.load of its file raises FileNotFoundError)
MODEL_WEIGHTS_ABSENT = Family("model_weights_absent", "config_error", 3,
                              "a model's weights file that was never written: under ZeRO-3 the HF Trainer's "
                              "save_model and engine.save_16bit_model write none unless the weights are gathered")
# safetensors refusing tensors that share memory (safetensors/torch.py _evaluate_tensors_for_save: 'Some tensors
# share memory, this will lead to duplicate memory on disk ...'): tied weights (an LM head tied to the
# embedding) saved with save_file; run here by zero_to_fp32.py --safe_serialization of GPT-2
SAFETENSORS_SHARED = Family("safetensors_shared_tensors", "config_error", 3,
                            "tied weights (tensors that share memory) handed to safetensors' save_file, which refuses "
                            "them")
# ZeRO-1/2's optimizer states whose padding does not fit this model's parameters (runtime/zero/stage_1_and_2.py
# _load_legacy_checkpoint: 'The ZeRO checkpoint parameter-alignment layout does not match the current
# zero_optimization.parameter_alignment setting. ...'): run here with the setting untouched, a model with one
# more layer loaded with load_module_strict=False raises it, so the model is as likely as the setting
ZERO_OPTIM_LAYOUT = Family("zero_optimizer_layout", "config_error", 3,
                           "ZeRO optimizer states saved for other parameters than this model's (a changed model, or "
                           "another zero_optimization.parameter_alignment)")
# ZeRO-3's the same (zero/stage3.py _rigid_load_state_dict copies each saved flat fp32 partition into this run's:
# 'The size of tensor a (426) must match the size of tensor b (417) at non-singleton dimension 0'; run here, a model
# with one more layer resumed with load_module_strict=False on 2 ranks): no setting is named, the model changed
ZERO3_OPTIM_LAYOUT = Family("zero_optimizer_layout", "config_error", 3,
                            "ZeRO-3 optimizer partitions saved for other parameters than this model's (a layer added or "
                            "removed, other sizes, other trainable parameters)")
_ZERO3_OPTIM_LOAD = "zero/stage3.py:_rigid_load_state_dict"
# torch's own optimizer refusing saved states (torch/optim/optimizer.py Optimizer.load_state_dict: 'loaded state
# dict has a different number of parameter groups', 'loaded state dict contains a parameter group that doesn't
# match the size of optimizer's group'), reached from HF Trainer's _load_optimizer_and_scheduler or a script's
# resume: the trainable parameters (LoRA's targets or rank, what is frozen, the weight-decay grouping) changed
OPTIMIZER_STATE_MISMATCH = Family("optimizer_state_mismatch", "config_error", 3,
                                  "optimizer states saved for another set of trainable parameters than this run's")
_OPTIMIZER_STATE_MISMATCH = ("loaded state dict has a different number of parameter groups",
                             "loaded state dict contains a parameter group that doesn't match the size of optimizer's group")
# transformers' own checks of its TrainingArguments: training_args.py TrainingArguments.__post_init__ raises
# ValueError for settings that do not fit together ('--load_best_model_at_end requires the saving steps to be a
# multiple of the evaluation steps, ...', 'At most one of fp16 and bf16 can be True, but not both', 'evaluation
# strategy ... requires either non-zero --eval_steps or --logging_steps'), and trainer.py _determine_best_metric /
# _evaluate raise KeyError when the metric_for_best_model is no key of the evaluation's metrics ('The
# `metric_for_best_model` training argument is set to 'eval_f1', which is not found in the evaluation metrics.')
TRAINER_ARGS = Family("trainer_args", "config_error", 3,
                      "a Trainer setting (TrainingArguments) that transformers refused, or that does not fit the "
                      "metrics the evaluation returns")
_TRAINER_ARGS_SITE = "transformers/training_args.py:__post_init__"
_TRAINER_ARGS_TEXT = "training argument is set to '"
# the post-training front-ends' own checks of their arguments, raised where they build their config or trainer:
# TRL's trainer/<x>_config.py __post_init__ ('generation_batch_size (12) must be divisible by num_generations (8).')
# and trainer/<x>_trainer.py __init__ ('You passed both a ref_model and a peft_config. ...'), LLaMA-Factory's
# hparams/parser.py, ms-swift's llm/argument/*.py __post_init__: the settings passed to the front-end
FRONTEND_ARGS = Family("frontend_args", "config_error", 3,
                       "a setting the training front-end (TRL, LLaMA-Factory, ms-swift) refused when it built its "
                       "config or trainer")
_FRONTEND_ARGS_SITE = compile_later(r"trl/trainer/\w+_(?:config\.py:__post_init__|trainer\.py:__init__)|"
                                    r"llamafactory/hparams/\w+\.py:|swift/llm/argument/")
# TRL's client of a vLLM server (trl/generation/vllm_client.py VLLMClient.check_server: ConnectionError 'The vLLM
# server can't be reached at {base_url} after {total_timeout} seconds. Make sure the server is running by running
# `vllm serve`.'; get_server_info / init_communicator: RuntimeError 'The vLLM server at {url} does not expose its
# development endpoints ...' / '... has no weight-transfer engine. Restart it with ...'): the generation server
# the trainer needs is not up, not at that address, or started without what weight sync needs
GENERATION_SERVER = Family("generation_server", "environment", 3,
                           "the vLLM server the trainer generates with is not running, not at that address, or "
                           "started without what the weight sync needs")
_GENERATION_SERVER = compile_later(r"The vLLM server can't be reached at|The vLLM server at \S+ "
                                   r"(?:does not expose its development endpoints|has no weight-transfer engine)")
# torch.save's writer opening a file in a folder that is not there (caffe2/serialize/inline_container.cc
# PyTorchFileWriter: 'Parent directory {dir} does not exist.'): most often a save path on a node-local disk,
# created by rank 0 on its own node only, written by a rank on another node
WRITE_DIR_MISSING = Family("write_dir_missing", "environment", 3,
                           "a file written into a folder that does not exist on the node that wrote it")
_WRITER_REFUSED = compile_later(r"\bFile \S.* cannot be opened\.")
_WRITE_DIR_MISSING = compile_later(r"\bParent directory (?:of )?\S.* does not exist\.")
_MODEL_LOADERS = ("modeling_utils.py:from_pretrained", "modeling_utils.py:_load_pretrained_model",
                  "auto_factory.py:from_pretrained", "peft_model.py:from_pretrained")
# huggingface_hub / transformers shard names: '{prefix}-{i:05d}-of-{n:05d}.safetensors' (or .bin)
_SHARD_NAME = compile_later(r"-\d{5}-of-\d{5}\.(?:safetensors|bin)\b")


# CalledProcessError's message when the command is a compiler: "Command '['/usr/bin/gcc', ..." (or a list's repr
# of a versioned or cross gcc, clang, nvcc)
_COMPILER_COMMAND = compile_later(r"Command '\['(?:[^']*/)?(?:[\w.-]*-)?(?:gcc|g\+\+|cc|c\+\+|clang\+{0,2}|nvcc)(?:-[\d.]+)?'")


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
    if name == "CalledProcessError" and _COMPILER_COMMAND.match(message):
        return _family("compiler_run")
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
    # torch.distributed.checkpoint's gathered failures (torch/distributed/checkpoint/api.py
    # CheckpointException.__str__: 'CheckpointException ranks:dict_keys([2, 3])', then per rank
    # 'Traceback (most recent call last): (RANK 2)' and that rank's own exception, the cause)
    if name == "CheckpointException" and message.startswith("CheckpointException ranks:"):
        return _family("wrapper")
    # bitsandbytes' native library not loaded (bitsandbytes/cextension.py leaves `lib` None after 'The
    # installed version of bitsandbytes was compiled without GPU support'; functional.py then calls
    # lib.c...): an install problem, whatever op it reached first
    if name == "AttributeError" and "'NoneType' object has no attribute" in message and \
            "bitsandbytes/" in (raise_site or ""):
        return _family("environment")
    misuse = misuse_family(name, message, raise_site, frames)
    if misuse is not None:
        return misuse
    loader = _dataloader_family(message, raise_site, frames)
    if loader is not None:
        return loader
    ckpt = _checkpoint_family(name, message, raise_site, frames)
    if ckpt is not None:
        return ckpt
    if _WRITE_DIR_MISSING.search(message):
        return WRITE_DIR_MISSING
    # the same writer refused the file itself (inline_container.cc PyTorchFileWriter: 'File {name} cannot be
    # opened.'; the only word torch 1.x gives): the folder is there, the operating system would not open the file
    if _WRITER_REFUSED.search(message) and any("serialization.py" in f for f in (frames or []) + [raise_site or ""]):
        return _family("write_denied")
    if _TRAINER_ARGS_TEXT in message or (name == "ValueError" and _TRAINER_ARGS_SITE in (raise_site or "")):
        return TRAINER_ARGS
    if name == "ValueError" and _FRONTEND_ARGS_SITE.search(raise_site or ""):
        return FRONTEND_ARGS
    if _GENERATION_SERVER.search(message):
        return GENERATION_SERVER
    if name == "TypeError" and _LIBRARY_CALL.search(message) and _in_a_library(raise_site):
        return API_MISMATCH
    if name == "IndexError" and "index out of range in self" in message and \
            any("functional.py:embedding" in f for f in (frames or []) + [raise_site or ""]):
        return TOKEN_ID_RANGE
    if (name == "KeyError" and "datasets/formatting/" in (raise_site or "")) or "Current columns in the dataset" in message:
        return DATASET_COLUMN
    if name == "TypeError" and _STACK_CALL.search(message) and raise_site and not _in_a_library(raise_site):
        return SCRIPT_API_VERSION
    if _DTYPE_MISMATCH.search(message):
        return Family("dtype", "config_error", 3, "a tensor of one dtype met weights of another")
    if _META_TENSOR.search(message):
        return Family("meta_tensor", "config_error", 3,
                      "a weight still on the meta device (never loaded) was moved or read")
    if name == "ValueError" and _AMP_FP16_GRADS in message:
        return Family("amp_fp16_grads", "config_error", 3,
                      "torch AMP's GradScaler met gradients that are already fp16 (fp16 trainable weights)")
    for fam_name, (rx, why) in _GRAPH_SETUP.items():
        if rx in message:
            return Family(fam_name, "config_error", 3, why)
    # transformers 5.25 modeling_utils.py _get_resized_embeddings / _get_resized_lm_head unpack weight.size()
    # into two numbers, and gather the weight first only when is_deepspeed_zero3_enabled() (an HfDeepSpeedConfig
    # alive, or the Trainer's): resize_token_embeddings on a ZeRO-3 engine's module from a plain script meets the
    # 1-D empty partition ('not enough values to unpack (expected 2, got 1)'; run here, 2 ranks)
    if _ZERO3_EMPTY.search(message) or ("expected 2, got 1" in message and "modeling_utils.py:_get_resized" in (raise_site or "")):
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
            # distributed_c10d.py's own raises are argument and set-up checks (ValueError, TypeError,
            # AssertionError, NotImplementedError); a failed collective comes up from C++ with its own
            # type or text
            if fam == "comm" and name in _USAGE_TYPES and name not in names and not any(t in message for t in texts):
                continue
            if fam == "comm" and "timeout" in message.lower() or fam == "comm" and "timed out" in message.lower():
                return Family("comm", "comm_stall", 1, why)
            return Family(fam, cat, weight, why)
    if _refused_by_the_stack(name, message, raise_site):
        return Family("config", "config_error", 3,
                      "DeepSpeed (or the HF/accelerate layer above it) refused a combination of features or a setting")
    # the script's own argument parser refusing its command line: argparse's '{prog}: error: ...' line
    # (sources/formats/traceback.py argparse_error; the launcher's --local_rank is the launcher family
    # above), transformers hf_argparser.py HfArgumentParser.parse_args_into_dataclasses ('Some specified
    # arguments are not used by the HfArgumentParser: [...]') and parse_dict ('Some keys are not used')
    if (raise_site or "").startswith("argparse:") or "are not used by the HfArgumentParser" in message:
        return COMMAND_LINE
    return OTHER


# DeepSpeed refusing a combination of features anywhere in its runtime (deepspeed/runtime/engine.py
# _validate_zero3_moe_compatibility 'MoE not supported with Stage 3', zero/stage3.py 'Muon and reduce
# scatter cannot be used together', 'Hybrid Optimizer Only Supports DeepSpeedCPUAdam', engine.py compile
# 'compile.autoep_non_moe=True does not support pipeline parallelism yet', set_train_batch_size 'Train
# batch size must be divisible by micro-batch data parallelism', base_optimizer.py 'fp16_master_weights_and_
# gradients and bf16_master_weights_and_gradients are mutually exclusive'), or any error raised by one of
# its config modules (runtime/zenflow/zenflow_config.py validate_fields, ...): the user's configuration. The
# layers above it refuse settings the same way (accelerate/accelerator.py prepare_model "You can't train a
# model that has been loaded with `device_map='auto'` in any distributed mode", transformers/trainer.py
# 'Using --fsdp xxx together with --deepspeed is not possible', accelerator.py __init__ 'You cannot pass in
# both `deepspeed_plugins` and `deepspeed_plugin`.'). A version requirement ('requires PyTorch >= 1.8',
# 'requires `torch_xla` 2.2 or higher') is the install, not the config.
_FEATURE_REFUSED = compile_later(
    r"(?i)not supported (?:with|for|in|under|when|by|together)\b|cannot be (?:used|combined) (?:together|with)|"
    r"mutually exclusive|does not support|only supports?\b|is only (?:applicable|supported)|should also be enabled|"
    r"must be one of|must be divisible|not compatible with|incompatible with|"
    r"requires? (?:\w+ ){0,3}?\w*[_=]\w*|(?:be|is|are) enabled\b|"
    r"\bYou can(?:'|no)t\b|\bis not possible\b|only works (?:in|with|when)\b|deactivate one|only pass in one|"
    r"\btogether with\b")
_VERSION_REQUIRED = compile_later(r"(?i)requires? (?:PyTorch|torch|CUDA|python|a newer|version)|>=\s*\d|version of|"
                                  r"your version|or higher|or newer|at least version")
# the libraries whose own refusals are about the run's settings (their config and argument checks)
_SETTINGS_SITES = ("deepspeed/", "accelerate/", "transformers/trainer", "transformers/training_args.py",
                   "transformers/integrations/", "transformers/modeling_utils.py", "peft/", "trl/")


def _refused_by_the_stack(name: str, message: str, raise_site: str | None) -> bool:
    if not raise_site or not any(s in raise_site for s in _SETTINGS_SITES) or "deepspeed/comm/" in raise_site:
        return False
    if not _config_shaped(name) or name in ("KeyError", "AttributeError") or _VERSION_REQUIRED.search(message):
        return False
    module = raise_site.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return ("config" in module and "deepspeed/" in raise_site) or bool(_FEATURE_REFUSED.search(message))


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
# How the model and its training set-up are wired, as torch's autograd and DDP refuse it (their
# C++ texts, libtorch_cpu.so; each seen for real here except the two-device one, which needs a GPU):
# the loss not connected to any trainable weight (gradient checkpointing with frozen embeddings under
# LoRA/PEFT, every weight frozen), tensors on two devices (a model placed by device_map or by hand, a
# batch left on the CPU), DDP meeting parameters that got no gradient, and DDP marking a parameter
# ready twice (reentrant gradient checkpointing of shared weights).
_GRAPH_SETUP = {
    "no_grad_graph": ("element 0 of tensors does not require grad and does not have a grad_fn",
                      "the loss is not connected to any trainable weight"),
    "two_devices": ("Expected all tensors to be on the same device",
                    "tensors of one operation on two devices (a model placed by device_map or by hand, a batch on the CPU)"),
    "ddp_unused": ("Expected to have finished reduction in the prior iteration",
                   "DDP met parameters that received no gradient in the last step"),
    "ddp_ready_twice": ("Expected to mark a variable ready only once",
                        "DDP saw one parameter's gradient twice in a step (reentrant gradient checkpointing)"),
}
# torch/amp/grad_scaler.py GradScaler._unscale_grads_ (and fsdp/sharded_grad_scaler.py):
# raise ValueError("Attempting to unscale FP16 gradients.") when a trainable parameter is fp16
_AMP_FP16_GRADS = "Attempting to unscale FP16 gradients"
_RERAISED = compile_later(r"Caught \w+ in (?:DataLoader worker process \d+|replica \d+ on device \d+|pin memory thread)")
# and matmul's "mat1 and mat2 shapes cannot be multiplied (1x0 and 16x16)" (a real ZeRO-3 run here,
# stage3_param_persistence_threshold 0, a weight used in a matmul after training)
# torch's dot of a 1-D weight read outside the forward ('inconsistent tensor size, expected tensor [0] and src [32] to
# have the same number of elements': `engine.module.lm_head.weight @ v` under ZeRO-3, run here)
_ZERO3_EMPTY = compile_later(r"'weight' must be 2-D|\bvec \(0\)|size of tensor [ab] \(0\) must match|"
                             r"shapes cannot be multiplied \((?:\d+x0|0x\d+) and|and (?:\d+x0|0x\d+)\)|"
                             r"expected tensor \[0\] and src \[\d")


# torch's dtype checks (aten: matmul/addmm 'mat1 and mat2 must have the same dtype, but got Float and
# BFloat16', older 'expected mat1 and mat2 to have the same dtype' / 'expected m1 and m2 to have the same
# dtype', 'expected scalar type Half but found Float', convolutions 'Input type (...) and weight type
# (...) should be the same'): under DeepSpeed's fp16/bf16 the engine casts the weights, not the batch
# (seen on a real bf16 run here, a float32 batch into the engine)
_DTYPE_MISMATCH = compile_later(r"(?:mat1 and mat2|m1 and m2) (?:must|to) have the same dtype|expected scalar type \w+ but "
                                r"found \w+|Input type \(.*?\) and weight type \(.*?\) should be the same")


_USAGE_TYPES = ("ValueError", "TypeError", "AssertionError", "NotImplementedError")


def _config_shaped(name: str) -> bool:
    # a configuration mistake is refused with these; a TypeError in a forward is not one
    return name in ("ValueError", "AssertionError", "KeyError", "TypeError", "NotImplementedError", "RuntimeError",
                    "Exception", "AttributeError")


def _family(name: str) -> Family:
    for fam, cat, weight, _n, _t, _s, why in _TABLE:
        if fam == name:
            return Family(fam, cat, weight, why)
    return OTHER


# reading a checkpoint: torch/serialization.py load (its _open_file / _open_zipfile_reader), DeepSpeed's
# runtime/engine.py load_checkpoint / _load_checkpoint / _load_zero_checkpoint, HF trainer.py
# _load_from_checkpoint / _load_optimizer_and_scheduler / _load_rng_state, safetensors load_file / safe_open
_CKPT_READERS = ("serialization.py:load", "serialization.py:_load", "engine.py:load_checkpoint", "engine.py:_load_checkpoint",
                 "_load_zero_checkpoint", "trainer.py:_load_from_checkpoint", "trainer.py:_load_optimizer_and_scheduler",
                 "trainer.py:_load_rng_state", "safetensors/torch.py:load", "modeling_utils.py:load_state_dict")
# a checkpoint file that is not a whole one: caffe2/serialize/inline_container.cc PyTorchStreamReader
# ('PytorchStreamReader failed reading zip archive: failed finding central directory', '... failed reading
# file data/0: invalid header or archive is corrupted'), the safetensors header check ('Error while
# deserializing header: MetadataIncompleteBuffer' / 'HeaderTooLarge' / 'invalid header length'), pickle's
# ('invalid load key', 'pickle data was truncated', 'Ran out of input')
_CKPT_CORRUPT = compile_later(r"PytorchStreamReader failed|failed finding central directory|archive is corrupted|"
                              r"Error while deserializing header|invalid load key|pickle data was truncated|"
                              r"MetadataIncompleteBuffer|HeaderTooLarge")
# torch/nn/modules/module.py Module.load_state_dict: 'Error(s) in loading state_dict for {cls}:' with 'size
# mismatch for {key}: copying a param with shape ... from checkpoint, the shape in current model is ...',
# 'Missing key(s) in state_dict', 'Unexpected key(s) in state_dict' (transformers modeling_utils adds 'You
# may consider adding `ignore_mismatched_sizes=True`')
_STATE_DICT = compile_later(r"Error\(s\) in loading state_dict for|size mismatch for \S+: copying a param|"
                            r"Missing key\(s\) in state_dict|Unexpected key\(s\) in state_dict")


# deepspeed/utils/zero_to_fp32.py (save_checkpoint copies it into every save folder): the consolidation
# script's own raises in get_fp32_state_dict_from_zero_checkpoint, get_model_state_files/_get_files and
# parse_optim_states ('Unable to find 'latest' file at', "Directory '...' doesn't exist", "can't find ...
# files in directory", 'is not a zero checkpoint', "Expected N of '*_optim_states.pt' under ... but found M")
ZERO_TO_FP32 = Family("zero_to_fp32", "config_error", 3,
                      "zero_to_fp32 (which consolidates a ZeRO checkpoint's shards into one state dict) not finding "
                      "a whole ZeRO checkpoint where it was pointed")
_ZERO_TO_FP32_RAISES = compile_later(r"Unable to find 'latest' file at|Directory '[^']*' doesn't exist|"
                                     r"can't find (?:model states file at|\S+ files in directory)|"
                                     r"is not a (?:zero|model state) checkpoint|_optim_states\.pt' under .* but found")

# deepspeed/checkpoint/ds_to_universal.py main: _check_for_required_state ('Required universal_checkpoint_info
# state is missing in checkpoint': a checkpoint not saved by Megatron-DeepSpeed, without
# --inject_missing_state; seen here), _get_checkpoint_files ("can't find *_optim_states.pt files in directory":
# --input_folder must be a tag folder), the ZeRO-3 rank-file checks ('Missing ZeRO-3 checkpoint file',
# 'Missing ZeRO optimizer checkpoint for rank', 'rank sets do not match', 'has no model/optimizer rank files')
DS_TO_UNIVERSAL = Family("ds_to_universal", "config_error", 3,
                         "ds_to_universal (which converts a ZeRO checkpoint to the universal format) not finding the "
                         "checkpoint or the state it needs")
_DS_TO_UNIVERSAL_RAISES = compile_later(r"universal_checkpoint_info state is missing|can't find \S+ files in directory|"
                                        r"Missing ZeRO(?:-3)? (?:optimizer )?checkpoint|rank sets do not match|"
                                        r"has no model/optimizer rank files")


WEIGHTS_ONLY = Family("weights_only", "environment", 3,
                      "torch.load's weights_only=True default (torch 2.6 and later) refusing a whole checkpoint that "
                      "holds Python objects other than tensors")


def _checkpoint_family(name: str, message: str, raise_site: str | None, frames: list[str] | None) -> Family | None:
    """Resuming from a checkpoint that is not there, not whole, or not this model's."""
    # torch/serialization.py load: _get_wo_message ('Weights only load failed. This file can still be
    # loaded ...'), 'Cannot use ``weights_only=True`` with files saved in the legacy .tar format': the file is
    # whole, the loader (torch >= 2.6 default) refuses its pickled objects (seen here: an argparse.Namespace)
    if "Weights only load failed" in message or "weights_only=True`` with files saved in the legacy" in message:
        return WEIGHTS_ONLY
    if _STATE_DICT.search(message):
        if "torch.Size([0])" in message:
            # the shape of a ZeRO-3 partitioned parameter outside the engine (runtime/zero/partition_parameters.py)
            return Family("zero3_partitioned", "config_error", 3,
                          "a weight with no elements: a ZeRO-3 partitioned parameter read or loaded directly")
        return STATE_DICT_MISMATCH
    site = raise_site or ""
    from_pretrained = any(r in f for f in (frames or []) + [site] for r in _MODEL_LOADERS)
    if "ZeRO checkpoint parameter-alignment layout does not match" in message:
        return ZERO_OPTIM_LAYOUT
    if _ZERO3_OPTIM_LOAD in site and "must match the size of tensor" in message:
        return ZERO3_OPTIM_LAYOUT
    # transformers 5.25 utils/loading_report.py log_state_dict_report: the LOAD REPORT's MISMATCH rows above it
    # say which weights did not fit (formats/hf.py reads a report of ZeRO-3's empty weights)
    if "You set `ignore_mismatched_sizes` to `False`" in message:
        return STATE_DICT_MISMATCH
    if any(t in message for t in _OPTIMIZER_STATE_MISMATCH):
        return OPTIMIZER_STATE_MISMATCH
    if "Some tensors share memory, this will lead to duplicate memory on disk" in message:
        return SAFETENSORS_SHARED
    if "Error no file named " in message and " found in directory " in message:
        return MODEL_WEIGHTS_ABSENT
    # the one weights file a 16-bit save writes, read back and missing (torch.load of save_16bit_model's
    # output under ZeRO-3 without the gather key, run here in parts Q and AA); shards are MODEL_FILES below
    if (name == "FileNotFoundError" or "[Errno 2]" in message) and \
            message.rstrip("'\" .").endswith(("/pytorch_model.bin", "/model.safetensors")):
        return MODEL_WEIGHTS_ABSENT
    if from_pretrained and (_CKPT_CORRUPT.search(message) or name == "FileNotFoundError" and _SHARD_NAME.search(message)):
        return MODEL_FILES
    if _CKPT_CORRUPT.search(message):
        return CKPT_CORRUPT
    if "zero_to_fp32.py" in site and (_ZERO_TO_FP32_RAISES.search(message) or
                                      # a checkpoint without ZeRO's keys (stage 0: param_shapes None; seen
                                      # here), read by parse_model_states / parse_optim_states
                                      ("parse_" in site and name in ("TypeError", "KeyError"))):
        return ZERO_TO_FP32
    if _DS_TO_UNIVERSAL_RAISES.search(message) and ("ds_to_universal.py" in site or "universal_checkpoint_info" in message):
        return DS_TO_UNIVERSAL
    # DeepSpeed found no '*model_states.pt' for the tag (runtime/state_dict_factory.py
    # SDLoaderBase.check_ckpt_list: 'assert len(self.ckpt_list) > 0'): a tag that does not exist, or a
    # checkpoint of another ZeRO stage (stage 3 names them zero_pp_rank_N_mp_rank_00_model_states.pt)
    if site.endswith("state_dict_factory.py:check_ckpt_list"):
        return CKPT_MISSING
    # HF Trainer's resume_from_checkpoint (trainer.py: "Can't find a valid checkpoint at {path}", "No valid
    # checkpoint found in output directory ({output_dir})")
    if "find a valid checkpoint at" in message or "No valid checkpoint found in output directory" in message:
        return CKPT_MISSING
    reading = [f for f in (frames or []) + ([site] if site else []) if any(r in f for r in _CKPT_READERS)]
    if not reading:
        return None
    if name == "FileNotFoundError" or "[Errno 2]" in message:
        return CKPT_MISSING
    # torch 2.13's zip reader on a file cut short: 'OSError: [Errno 22] Invalid argument' from
    # PyTorchFileReader (serialization.py _open_zipfile_reader.__init__; seen here on a truncated file)
    if (name == "OSError" and "[Errno 22]" in message) or name in ("UnpicklingError", "EOFError"):
        return CKPT_CORRUPT
    return None


# One installed library calling another's method with a keyword that method does not have, raised in the
# caller's own code (transformers 4.53.3 trainer.py _wrap_model 'Accelerator.unwrap_model() got an unexpected
# keyword argument 'keep_torch_compile'' beside accelerate 1.0.1, run here; its declared minimum, accelerate>=0.26.0,
# allowed it): the two versions do not match. __init__ is left out: a constructor also receives keywords passed
# through from the user's code or config (DeepSpeed's scheduler params, from_pretrained's **kwargs).
API_MISMATCH = Family("api_mismatch", "environment", 3,
                      "two installed libraries whose versions do not match: one calls a method of the other with "
                      "a keyword argument that version does not have")
_LIBRARY_CALL = compile_later(r"\b\w+\.(?!__init__\(\))\w+\(\) got an unexpected keyword argument '\w+'")
_LIBRARY_DIRS = ("-packages/", "/transformers/", "/accelerate/", "/deepspeed/", "/peft/", "/trl/")


def _in_a_library(raise_site: str | None) -> bool:
    return bool(raise_site) and any(d in raise_site for d in _LIBRARY_DIRS)


# The script calling a class of the fine-tuning stack with a keyword the installed version does not have
# (trl 1.16 run here: 'SFTConfig.__init__() got an unexpected keyword argument 'max_seq_length'', renamed
# max_length in trl's sft_config.py; transformers 5 training_args.py has eval_strategy, trainer.py
# processing_class): the script was written for another release. Raised in the script's own frame (a
# library's call is API_MISMATCH; DeepSpeed's scheduler/optimizer params are read from the ds_config line).
SCRIPT_API_VERSION = Family("script_api_version", "config_error", 3,
                            "the script passing a keyword argument the installed version of a library does not "
                            "have (renamed or removed between releases)")
_STACK_CALL = compile_later(r"\b\w+(?:Config|Arguments|Trainer|Model|ForCausalLM)\.\w+\(\) got an unexpected keyword "
                            r"argument '\w+'")


# A column the code reads that the dataset does not have: datasets 5.2 formatting/formatting.py
# LazyDict.__getitem__ (KeyError '{column}' from a map function: trl 1.16 sft_trainer.py tokenize_fn reading
# dataset_text_field, dpo_trainer.py reading 'rejected', a script's own lambda; run here) and arrow_dataset.py's
# column checks ('Column name [...] not in the dataset. Current columns in the dataset: [...]')
DATASET_COLUMN = Family("dataset_column", "other", 3,
                        "the data set lacks a column the code (the trainer's preprocessing or the script's map "
                        "function) reads")


# A token id past the embedding's rows: torch's CPU embedding check (aten Embedding / index_select: 'IndexError:
# index out of range in self', raised in torch/nn/functional.py embedding; on a GPU the same is a device-side
# assert). Run here: a tokenizer given added tokens and the model not resized (transformers 5.25, DeepSpeed ZeRO-2).
TOKEN_ID_RANGE = Family("token_id_range", "other", 3,
                        "a token id larger than the model's embedding table: a tokenizer with more tokens than the "
                        "model's vocabulary (added tokens without resize_token_embeddings, or another model's tokenizer)")


COMMAND_LINE = Family("command_line", "config_error", 3,
                      "the script's argument parser refusing the command line it was started with")


DATALOADER_LOST = Family("dataloader_worker", "other", 1,
                         "a DataLoader worker the main process lost (its pipe closed, or it sent nothing before "
                         "the DataLoader's timeout): the worker died or hung, and its own error is not in this log")


def _dataloader_family(message: str, raise_site: str | None, frames: list[str] | None) -> Family | None:
    """The training process's side of a DataLoader worker that died or hung without a report."""
    # torch/utils/data/dataloader.py _try_get_data: 'DataLoader timed out after {timeout} seconds'
    if "DataLoader timed out after" in message:
        return DATALOADER_LOST
    # the pipe to a worker reset while a batch's tensors were received: CPython multiprocessing
    # connection.py / resource_sharer.py under torch/multiprocessing/reductions.py rebuild_storage_fd (the
    # 'file_descriptor' sharing strategy; seen here with a worker that called os._exit mid-epoch): not the
    # network, whatever 'Connection reset by peer' says
    site = raise_site or ""
    if "ancdata" in message or "Too many open files" in message:
        return None           # the descriptors ran out: the open-files family says so
    if "[Errno 12]" in message or "Cannot allocate memory" in message:
        return None           # os.fork of a worker refused for want of memory: host_memory says so
    if "multiprocessing/" in site and "torch/" not in site and \
            any("resource_sharer.py" in f or "torch/utils/data/" in f or "torch/multiprocessing/" in f for f in frames or ()):
        return DATALOADER_LOST
    # raised in CPython's own multiprocessing/connection.py (Connection._recv, answer_challenge) with no
    # torch.distributed frame among those kept (a pasted tail: the frames above, a DataLoader's or a
    # launcher's, cut): a pipe between local processes, not the network between ranks (gloo and NCCL raise
    # from c10d's C++), whatever 'Connection reset by peer' says
    if "multiprocessing/connection.py" in site and "torch/" not in site and \
            not any("torch/distributed" in f for f in frames or ()):
        return _family("ipc")
    return None
