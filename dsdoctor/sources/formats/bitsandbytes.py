"""bitsandbytes (8-bit/4-bit optimizers and quantisation, used by QLoRA fine-tuning front-ends)
failing to load its native CUDA library: the run stops at the first quantised layer or 8-bit
optimizer step. An install problem (the wheel has no binary for torch's CUDA, or the CUDA
runtime is not on the library path), reported as env_error 'bnb_native'.

Wordings: bitsandbytes 0.44+ cextension.py (`logger.error(f"bitsandbytes library load error:
{error_msg}")` in the module body, `get_native_library`: "No compatible {BNB_BACKEND} binary found
at {path}", ErrorHandlerMockBNBNativeLibrary: "Native code method attempted to call: lib.{name}()",
BNBNativeLibrary: "Method '{name}' not available in CPU-only version of bitsandbytes."); 0.3x-0.41
cuda_setup/main.py ("CUDA Setup failed despite GPU being available", cited: that version is not
installed here).
"""
from __future__ import annotations

from ..lines import Line, StreamState
from ..recogniser import on
from .deepspeed import code_echo


@on("bitsandbytes library load error:", "No compatible CUDA binary found at", "No compatible ROCm binary found at",
    "Native code method attempted to call: lib.", "not available in CPU-only version of bitsandbytes",
    "CUDA Setup failed despite GPU being available")
def bnb_native_library(line: Line, st: StreamState):
    if code_echo(line):
        return None                       # a traceback's source line, not the message
    if not st.once(("bnb_native", line.rank)):
        return None                       # the load error, then every call into the missing library
    return line.event("env_error", error="bnb_native", op=None, message=line.text.strip()[-300:])
