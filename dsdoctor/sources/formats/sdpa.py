"""torch's scaled_dot_product_attention refusing its fused kernels, in the warnings it prints above
'No available kernel. Aborting execution.': one head per kernel ('Flash attention kernel not used
because:'), then one warning per reason. Each reason is an `sdpa_refusal` event; detect/failure.py
names the cause beside that exception (detect/sdpa_refusal.py).

Templates, torch 2.13: aten/src/ATen/native/transformers/sdp_utils_cpp.h / sdp_utils_cpp.cpp (shared by
the CPU and CUDA builds; a real CPU run here under `sdpa_kernel(SDPBackend.FLASH_ATTENTION)`, fixtures
gen_an_sdpa_*_cpu_real.log) and cuda/sdp_utils.cpp (the CUDA wheel's libtorch_cuda.so strings, read in
the lead's eighteenth session: fixtures/excerpts/lead18_sdpa_no_kernel_torch213.log).
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

# the heads: sdp_utils_cpp.cpp:99 'Flash attention kernel not used because:'; cuda/sdp_utils.cpp 'Memory
# efficient kernel not used because:', 'cuDNN attention kernel not used because:'
_HEAD = "kernel not used because:"
_KERNELS = (("Flash attention", "flash"), ("Memory efficient", "mem_efficient"), ("Mem Efficient", "mem_efficient"),
            ("cuDNN", "cudnn"))
# (literal of the reason's warning, cause)
REASONS = (
    # cuda/sdp_utils.cpp check_sm_version: 'Flash attention only supports gpu architectures in the range [sm80,
    # sm121]. Attempting to run on a sm 3.7 gpu.' (also 'Mem Efficient Attention ...', 'cuDNN MHA ...')
    ("only supports gpu architectures in the range", "gpu_arch"),
    # sdp_utils_cpp.h check_tensor_dtype: 'Expected query, key and value to all be of dtype: {Float, Double,
    # BFloat16, Half}. Got Query dtype: long int, ...' (the CUDA kernels' set is {Half, BFloat16})
    ("Expected query, key and value to all be of dtype", "dtype"),
    # sdp_utils_cpp.h check_for_dropout: 'Both fused kernels do not support non-zero dropout.'
    ("fused kernels do not support non-zero dropout", "dropout"),
    # sdp_utils_cpp.h check_tensor_shapes: 'All fused kernels requires query, key and value to be 4 dimensional,
    # but got Query dim: 3, ...'
    ("fused kernels requires query, key and value to be 4 dimensional", "dims"),
    # sdp_utils_cpp.cpp check_head_dim_size_cpp: 'Flash attention requires q,k,v to have the same last dimension.
    # Got Query.size(-1): 16, Key.size(-1): 16, Value.size(-1): 24 instead.'
    ("to have the same last dimension", "head_dim"),
    # sdp_utils_cpp.h check_last_dim_stride_equals_1: 'All fused kernels require the last dimension of the input
    # to have stride 1. Got Query.stride(-1): 8, ...'
    ("require the last dimension of the input to have stride 1", "stride"),
    # sdp_utils_cpp.h check_grouped_query_attention: 'The number of heads in key/value must divide number of
    # heads in query.Got input Key sizes(): 3, ...'
    ("must divide number of heads in query", "gqa"),
)
_SM = compile_later(r"Attempting to run on a sm (\d+\.\d+) gpu")
_TRIGGERED = " (Triggered internally at "


def _reason(text: str) -> str:
    """The warning's own words: after 'UserWarning: ', before torch's '(Triggered internally at ...)'."""
    at = text.find("Warning: ")
    text = text[at + 9:] if at >= 0 else text
    end = text.find(_TRIGGERED)
    return (text[:end] if end >= 0 else text).strip()[:240]


@on(_HEAD)
def sdpa_kernel_head(line: Line, st: StreamState):
    # the kernel the next reasons are about (its reason lines do not all name it)
    st.scratch["sdpa.kernel"] = next((k for w, k in _KERNELS if w in line.text), None)
    return None


@on(*(lit for lit, _ in REASONS))
def sdpa_refusal(line: Line, st: StreamState):
    t = line.text
    cause = next(c for lit, c in REASONS if lit in t)
    kernel = next((k for w, k in _KERNELS if w in t), None)       # ('Both fused kernels ...': the head's)
    m = _SM.search(t) if cause == "gpu_arch" else None
    return line.event("sdpa_refusal", cause=cause, kernel=kernel or st.scratch.get("sdpa.kernel"),
                      sm=m.group(1) if m else None, reason=_reason(t))
