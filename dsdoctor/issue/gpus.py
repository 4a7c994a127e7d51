"""Whether a GPU model an issue body names (`GPU type: ...`, collect_env's `GPU 0: ...`)
supports bf16: compute capability 8.0 or newer (NVIDIA's CUDA GPUs table; DeepSpeed's CUDA
accelerator asks torch.cuda.is_bf16_supported(), which tests the same). Only families whose
capability is certain are listed; any other name says nothing (None)."""
from __future__ import annotations

import re

# Volta 7.0 (V100, Titan V), Turing 7.5 (T4, RTX 20xx, Quadro RTX), Pascal 6.x (P100, P40, P4,
# GTX 10xx), Maxwell / Kepler (M40, M60, K80)
_NO_BF16 = re.compile(r"(?i)\b(?:V100|Titan V|T4|RTX 20[5-8]0|Quadro RTX|P100|P40|P4|GTX|M40|M60|K80|K40)\b")
# Ampere 8.x (A100, A800, A10, A10G, A30, A40, A16, A2, RTX A6000, RTX 30xx), Ada 8.9 (L4, L40,
# L40S, RTX 40xx, RTX 6000 Ada), Hopper 9.0 (H100, H800, H200, GH200), Blackwell 10.x/12.x (B100, B200,
# GB200, RTX 50xx)
_BF16 = re.compile(r"(?i)\b(?:A100|A800|A10G?|A30|A40|A16|A2|RTX A\d000|RTX [345]0\d0(?: Ti)?|L4|L40S?|"
                   r"RTX 6000 Ada|H100|H800|H200|GH200|B100|B200|GB200)\b")


def bf16_supported(gpu_name: str) -> bool | None:
    if _NO_BF16.search(gpu_name):
        return False
    if _BF16.search(gpu_name):
        return True
    return None
