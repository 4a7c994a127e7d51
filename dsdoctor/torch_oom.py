"""What torch prints about memory, read once for the log recognisers
(sources/formats/memory.py) and the live hooks (live/hooks.py).

Sizes come from c10/core/Allocator.h: format_size (used by the CUDA caching allocator's
OutOfMemoryError message, c10/cuda/CUDACachingAllocator.cpp): "N bytes" up to 1 KiB, then
KiB/MiB/GiB with 1024 as the base. torch never prints KB/MB/GB there; a message that says
so (another tool, a hand-written note) is read with the same 1024 base.
The CPU allocator (c10/core/impl/alloc_cpu.cpp: alloc_cpu) prints the exact count:
"DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes".
"""
from __future__ import annotations

from . import regex_cache

SIZE = r"([\d.]+ ?(?:bytes|[KMGT]i?B))"        # a regex group holding one printed size
_UNITS = {"bytes": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
          "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_ONE_SIZE = regex_cache.compile(r"([\d.]+) ?(bytes|[KMGT]i?B)")
_REQ_EXACT = regex_cache.compile(r"you tried to allocate (\d+) bytes")
_REQ_SIZE = regex_cache.compile(r"Tried to allocate " + SIZE)


def size(s: str | None) -> int | None:
    """Bytes of one printed size ('2.00 GiB', '512 bytes'); None if it is not one."""
    if not s:
        return None
    m = _ONE_SIZE.match(s)
    if not m:
        return None
    try:
        return int(float(m.group(1)) * _UNITS[m.group(2)])
    except ValueError:              # '1.2.3 GiB'
        return None


def requested_bytes(msg: str) -> int | None:
    """The allocation an OOM message says failed: the CPU allocator's exact count, else the
    CUDA allocator's 'Tried to allocate 2.00 GiB'."""
    m = _REQ_EXACT.search(msg)
    if m:
        return int(m.group(1))
    m = _REQ_SIZE.search(msg)
    return size(m.group(1)) if m else None
