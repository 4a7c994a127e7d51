"""torch finding no usable GPU at start-up: the warning CUDA initialization prints, reported as env_error
'cuda_init' (rules/environment.yaml env-cuda-init-failed).

Wording: c10/cuda/CUDAFunctions.cpp device_count_impl (torch 1.x-2.13), TORCH_WARN when cudaGetDeviceCount fails,
a UserWarning on the first `torch.cuda.is_available()`:

    UserWarning: CUDA initialization: The NVIDIA driver on your system is too old (found version 12020). Please update ...
    UserWarning: CUDA initialization: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU ...
    UserWarning: CUDA initialization: Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before
        calling NumCudaDevices() that might have already set an error? Error 802: system not yet initialized

After it torch sees no GPU: the launcher's 'no GPU resources available', NCCL's 'no GPUs found', a CUDA call's
'no CUDA GPUs are available' follow from this one line.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_REASON = compile_later(r"CUDA initialization: (.+?)(?: \(Triggered internally at .*)?$")
_ERROR_CODE = compile_later(r"\bError (\d+): ([^.(]+)")
_DRIVER_VERSION = compile_later(r"too old \(found version (\d+)\)")


@on("CUDA initialization: ")
def cuda_init_failed(line: Line, st: StreamState):
    m = _REASON.search(line.text)
    if m is None or not st.once(("cuda_init",)):
        return None                       # every rank warns: one finding
    reason = m.group(1).strip()
    data = {}
    if "too old" in reason:
        data["cause"] = "driver_too_old"
        v = _DRIVER_VERSION.search(reason)
        if v:                             # cudaDriverGetVersion's 12020 is CUDA 12.2
            n = int(v.group(1))
            data["driver_cuda"] = f"{n // 1000}.{n % 1000 // 10}"
    elif "Found no NVIDIA driver" in reason:
        data["cause"] = "no_driver"
    elif (c := _ERROR_CODE.search(reason)) is not None:
        # cudaError_t 802 cudaErrorSystemNotReady (NVSwitch systems: the fabric manager is not running), 803
        # cudaErrorSystemDriverMismatch, 804 cudaErrorCompatNotSupportedOnDevice (CUDA's forward-compatibility libs
        # on a GPU that does not support them)
        data["cause"] = {"802": "fabric_manager", "803": "driver_mismatch", "804": "compat_libs"}.get(c.group(1), "cuda_error")
        data["code"] = int(c.group(1))
    else:
        data["cause"] = "other"
    # the reason's first sentence, or the driver's error for cudaGetDeviceCount's (the rest is torch's advice)
    short = f"Error {c.group(1)}: {c.group(2).strip()}" if data.get("code") else reason.split(". ")[0]
    return line.event("env_error", error="cuda_init", op=None, message=short[:200], **data)
