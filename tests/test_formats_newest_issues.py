"""Issue pastes in the wordings of the versions users run today (part AW): torch's CUDA initialization warning,
Triton's missing C compiler, accelerate's default config printed by `accelerate env`. Text in, events and
findings out."""
from __future__ import annotations

from tests.diagnose_text import events, top

DRIVER_OLD = (
    "/usr/local/lib/python3.12/dist-packages/torch/cuda/__init__.py:182: UserWarning: CUDA initialization: The NVIDIA "
    "driver on your system is too old (found version 12020). Please update your GPU driver by downloading and installing "
    "a new version from the URL: http://www.nvidia.com/Download/index.aspx Alternatively, go to: https://pytorch.org to "
    "install a PyTorch version that has been compiled with your version of the CUDA driver. (Triggered internally at "
    "/pytorch/c10/cuda/CUDAFunctions.cpp:109.)\n"
    "  return torch._C._cuda_getDeviceCount() > 0\n")


def test_cuda_init_warning_is_the_cause_of_the_no_gpu_error_after_it():
    text = DRIVER_OLD * 4 + "RuntimeError: Unable to proceed, no GPU resources available\n"
    (ev,) = events(text, "env_error")
    assert (ev.data["cause"], ev.data["driver_cuda"]) == ("driver_too_old", "12.2")
    assert ev.data["message"] == "The NVIDIA driver on your system is too old (found version 12020)"
    f = top(text)
    assert f.rule == "env-cuda-init-failed" and f.category == "environment"


def test_cuda_init_error_code_names_its_cause():
    text = ("UserWarning: CUDA initialization: Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions "
            "before calling NumCudaDevices() that might have already set an error? Error 802: system not yet initialized "
            "(Triggered internally at ../c10/cuda/CUDAFunctions.cpp:108.)\n")
    (ev,) = events(text, "env_error")
    assert (ev.data["cause"], ev.data["code"], ev.data["message"]) == ("fabric_manager", 802, "Error 802: system not yet initialized")


def test_triton_without_a_c_compiler_is_the_machine():
    text = ('  File "/usr/local/lib/python3.11/site-packages/triton/runtime/build.py", line 32, in _build\n'
            '    raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")\n'
            "torch._inductor.exc.InductorError: RuntimeError: Failed to find C compiler. Please specify via CC environment "
            "variable.\n")
    f = top(text)
    assert f.rule == "failure-compile-toolchain" and f.category == "environment"
