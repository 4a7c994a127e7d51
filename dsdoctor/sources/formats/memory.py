"""Out-of-memory messages: the CUDA caching allocator (three wordings over torch 1.x-2.13) and its
twins on ROCm, Intel XPU, Ascend NPU, Apple MPS and Intel Gaudi, the raw 'CUDA error: out of memory',
and the CPU allocator (host RAM)."""
from __future__ import annotations

import re

from ...lazy_regex import compile_later
from ...torch_oom import SIZE, size
from ...findings import clip
from ..lines import MAX_EVIDENCE_TEXT, Line, StreamState
from ..recogniser import on
from .traceback import take_phase


_REQ = compile_later(r"Tried to allocate " + SIZE)
# the allocator's own word for the device beside its index: 'GPU' (CUDA, HIP and XPU builds alike) or
# torch_npu's 'NPU' (Event data `gpu_word`: the one place a finding's title and text take it from)
_GPU = compile_later(r"\((GPU|NPU) (\d+);|(GPU) (\d+) has a total (?:capacity|capacty) of")
# 1a/1b/1c: "(GPU 0; 15.78 GiB total capacity; 14.2 GiB already allocated; 10.19 MiB free; 14.4 GiB reserved in total by PyTorch)"
# torch_npu keeps this wording with one more field: "(NPU 3; 60.97 GiB total capacity; 54.02 GiB already allocated;
# 54.02 GiB current active; 3.21 GiB free; 56.88 GiB reserved in total by PyTorch)" (libtorch_npu.so 2.14, NPUCachingAllocator)
_OLD = compile_later(SIZE + r" total capacity; " + SIZE + r" already allocated;(?: " + SIZE + r" current active;)? "
                  + SIZE + r" free;(?: " + SIZE + r" allowed;)? " + SIZE + r" (?:reserved in total by PyTorch|cached)")
# c10/xpu/XPUCachingAllocator.cpp (torch 2.5+) has no free amount: "GPU 0 has a total capacity of 47.98 GiB. Of the ..."
_TOTAL_ONLY = compile_later(r"total capacity of " + SIZE + r"\.")
# 1d-1g: "GPU 0 has a total capacity of 79.15 GiB of which 3.44 MiB is free. ... Of the allocated memory 77.1 GiB is
# allocated by PyTorch, and 1.2 GiB is reserved by PyTorch but unallocated."
_NEW_TOTAL = compile_later(r"total (?:capacity|capacty) of " + SIZE + r" of which " + SIZE + r" is free")
_NEW_ALLOC = compile_later(r"Of the allocated memory " + SIZE + r" is allocated by PyTorch,(?: with " + SIZE +
                        r" allocated in private pools \(e\.g\., CUDA Graphs\),)? and " + SIZE +
                        r" is reserved by PyTorch but unallocated")
_PROCS = compile_later(r"Process (\d+) has " + SIZE + r" memory in use")
_THIS_PROC = compile_later(r"this process has " + SIZE + r" memory in use")


# The same allocator message where torch runs on other accelerators: ROCm builds hipify
# c10/cuda/CUDACachingAllocator.cpp ('HIP out of memory', PYTORCH_HIP_ALLOC_CONF: torch/utils/hipify maps the
# CUDA names, torch/utils/collect_env.py lists the variable), c10/xpu/XPUCachingAllocator.cpp ('XPU out of memory'),
# torch_npu's NPUCachingAllocator ('NPU out of memory. Tried to allocate'; strings of libtorch_npu.so 2.14);
# accelerate/utils/memory.py should_reduce_batch_size treats them as one (" out of memory.": CUDA, HIP, XPU).
_DEVICE_OF = (("HIP out of memory", "hip"), ("XPU out of memory", "xpu"), ("NPU out of memory", "npu"))


# An OOM a script caught and logged as a warning (a batch-size finder: accelerate's find_executable_batch_size
# retries on should_reduce_batch_size, and scripts log what they caught, 'WARNING:__main__:batch_size=128 failed:
# CUDA out of memory. ...; retrying with 115'): a logger's level before the message and no exception type.
# detect/memory.py reports it only when the run did not go on training after it.
_LOGGED = compile_later(r"\b(?:WARNING|WARN|Warning|INFO|DEBUG)\b")
_RAISED = ("Error", "Exception", "Traceback", "raise ", "ERROR", "FATAL", "CRITICAL")


def _own_entry(others: list[tuple[int, int | None]], reserved: int) -> tuple[int, int | None] | None:
    """The 'Process N has M memory in use' entry that is the failing process itself. torch's
    c10/cuda/CUDACachingAllocator.cpp reportProcessMemoryInfo words an NVML entry 'this process has'
    only when its pid equals getpid(); in a container (a pid namespace) NVML's host pids never do, so the
    process names itself by pid. It holds at least what PyTorch reserved (plus its CUDA context): the
    smallest entry that large is it; without one, every entry is another process."""
    own = [e for e in others if e[1] is not None and e[1] >= reserved]
    return min(own, key=lambda e: e[1]) if own else None


def _logged_not_raised(head: str) -> bool:
    return bool(head.strip()) and _LOGGED.search(head) is not None and not any(w in head for w in _RAISED)


@on("CUDA out of memory", "HIP out of memory", "XPU out of memory", "NPU out of memory")
def cuda_oom(line: Line, st: StreamState):
    t = line.text
    if "Tried to allocate" not in t and "preemptively rejected" not in t:
        return None
    device = next((dev for lit, dev in _DEVICE_OF if lit in t), "cuda")
    d: dict = {"device": device, "phase": take_phase(line, st)}
    if _logged_not_raised(t[:t.find(" out of memory")]):
        d["logged"] = True
    m = _REQ.search(t)
    d["requested"] = size(m.group(1)) if m else None
    m = _GPU.search(t)
    if m:
        d["gpu"] = int(m.group(2) or m.group(4))
        d["gpu_word"] = m.group(1) or m.group(3)
    m = _OLD.search(t)
    if m:
        d.update(total=size(m.group(1)), allocated=size(m.group(2)), free=size(m.group(4)),
                 reserved=size(m.group(6)), wording="torch<=2.0")
    else:
        m = _NEW_TOTAL.search(t)
        if m:
            d.update(total=size(m.group(1)), free=size(m.group(2)), wording="torch>=2.1")
        elif (m := _TOTAL_ONLY.search(t)):
            d["total"] = size(m.group(1))
        m = _NEW_ALLOC.search(t)
        if m:
            alloc, unalloc = size(m.group(1)), size(m.group(3))
            d.update(allocated=alloc, reserved=(alloc or 0) + (unalloc or 0), unallocated=unalloc)
        mine = _THIS_PROC.search(t)
        others = [(int(p), size(s)) for p, s in _PROCS.findall(t)]
        if not mine and others and d.get("reserved"):
            own = _own_entry(others, d["reserved"])
            if own is not None:
                others.remove(own)
                d["this_process"] = own[1]
        if others:
            d["other_processes"] = len(others)
            d["other_process_bytes"] = sum(b or 0 for _, b in others)
        if mine:
            d["this_process"] = size(mine.group(1))
    if "preemptively rejected" in t or " allowed;" in t:
        d["fraction_cap"] = True
    res, alloc = d.get("reserved"), d.get("allocated")
    # fragmented: a large share of the reserve unallocated, or a reserve that held the request unallocated
    # (the allocator frees its unsplit cached blocks before it fails: what stays are split segments)
    req = d.get("requested")
    d["fragmented"] = bool(res and alloc is not None and (res - alloc > max(0.2 * res, 1 << 30)
                                                          or (req and res - alloc >= max(req, 1 << 30))))
    ev = line.event("oom", step=st.step_of(line.rank), **d)
    # torch 2.1+'s message is longer than the evidence a line keeps, and clipped in its middle it loses the figures
    # (allocated, reserved but unallocated, private pools); its last sentences are the allocator's standing advice
    # ('If reserved but unallocated memory is large try setting ... See documentation for Memory Management ...')
    cut = t.find(" If reserved ")
    if len(t) > MAX_EVIDENCE_TEXT and cut > 0:
        ev.text = clip(t[:cut].rstrip(), MAX_EVIDENCE_TEXT)
    return ev


# Apple MPS (aten/src/ATen/mps/MPSAllocator.mm, strings of torch 2.14's macOS libtorch_cpu.dylib):
#   "MPS backend out of memory (MPS allocated: 17.66 GB, other allocations: 384.00 KB, max allowed: 18.13 GB).
#    Tried to allocate 500.00 MB on private pool. Use PYTORCH_MPS_HIGH_WATERMARK_RATIO=0.0 to disable ..."
_MPS = compile_later(r"MPS allocated: " + SIZE + r", other allocations: " + SIZE + r", max allowed: " + SIZE)


@on("MPS backend out of memory")
def mps_oom(line: Line, st: StreamState):
    t = line.text
    d: dict = {"device": "mps", "phase": take_phase(line, st)}
    m = _REQ.search(t)
    d["requested"] = size(m.group(1)) if m else None
    m = _MPS.search(t)
    if m:
        d.update(allocated=size(m.group(1)), total=size(m.group(3)))
    return line.event("oom", step=st.step_of(line.rank), **d)


# Intel Gaudi's device allocator, the wording accelerate/utils/memory.py should_reduce_batch_size knows as the
# HPU OOM: "FATAL ERROR :: MODULE:PT_DEVMEM Allocation failed for size::1073741824 (1024)MB"
_HPU_SIZE = compile_later(r"Allocation failed for size::(\d+)")


@on("MODULE:PT_DEVMEM Allocation failed")
def hpu_oom(line: Line, st: StreamState):
    m = _HPU_SIZE.search(line.text)
    return line.event("oom", step=st.step_of(line.rank), device="hpu", phase=take_phase(line, st),
                      requested=int(m.group(1)) if m else None)


_CUDA_ERR = compile_later(r"CUDA error: ([^.\n]+?)(?:\s*$|\.?\s*(?:CUDA kernel|Search for|Compile with|For debugging))")


@on("CUDA error: ")
def cuda_error(line: Line, st: StreamState):
    m = _CUDA_ERR.search(line.text) or re.search(r"CUDA error: (.+)$", line.text)
    if not m:
        return None
    err = m.group(1).strip().rstrip(".")
    return line.event("cuda_error", step=st.step_of(line.rank), error=err,
                      phase=take_phase(line, st) if "Error" in line.text.split("CUDA error")[0] else None)


# A CUDA kernel's failed assert as the device prints it (the CUDA runtime's device-side __assert_fail:
# '{file}:{line}: {function}: block: [x,y,z], thread: [x,y,z] Assertion `{expr}` failed.', e.g. torch's
# aten/src/ATen/native/cuda/Indexing.cu 'Assertion `srcIndex < srcSelectDimSize` failed.'), one line per thread
# that failed: the CUDA context is then broken, and the next CUDA call on that process raises whatever it
# raises ('device-side assert triggered', or cuBLAS's 'CUBLAS_STATUS_NOT_INITIALIZED' when that call created
# its handle). Once per input: the cause beside that later error (detect/failure.py)
_KERNEL_ASSERT = compile_later(r"block: \[\d+,\d+,\d+\], thread: \[\d+,\d+,\d+\] Assertion `.*` failed")


@on("] Assertion `")
def kernel_assert(line: Line, st: StreamState):
    if not _KERNEL_ASSERT.search(line.text) or not st.once(("kernel_assert",)):
        return None
    return line.event("cuda_error", step=st.step_of(line.rank), error="device-side assert triggered",
                      via="kernel_assert", phase=None)


# torch <= 1.4's THC: 'RuntimeError: cuda runtime error (2) : out of memory at .../THCCachingAllocator.cpp:510'
# (THCudaCheck: 'cuda runtime error (%d) : %s at %s:%d'); the same CUDA error, the older wording
# ('unknown error' is hardware.py's)
_THC = compile_later(r"cuda runtime error \((\d+)\) : (.+?) at \S+:\d+")


@on("cuda runtime error (")
def thc_cuda_error(line: Line, st: StreamState):
    m = _THC.search(line.text)
    if not m or m.group(2).strip() == "unknown error":
        return None
    if m.group(2).strip() == "out of memory" and "CachingAllocator" in line.text:
        # the caching allocator's own OOM, before it printed sizes
        return line.event("oom", step=st.step_of(line.rank), device="cuda", phase=take_phase(line, st),
                          requested=None, wording="THC")
    return line.event("cuda_error", step=st.step_of(line.rank), error=m.group(2).strip(), code=int(m.group(1)),
                      phase=take_phase(line, st))


@on("CUBLAS_STATUS_ALLOC_FAILED")
def cublas_alloc(line: Line, st: StreamState):
    return line.event("cuda_error", step=st.step_of(line.rank), error="out of memory",
                      via="CUBLAS_STATUS_ALLOC_FAILED", phase=take_phase(line, st))


# NCCL's CUDACHECK when its own cudaMalloc (buffers, proxy, P2P) fails (src/include/checks.h: WARN("Cuda failure
# '%s'", cudaGetErrorString(err)); later NCCL "Cuda failure %d '%s'"), then 'unhandled cuda error' in torch: a CUDA
# call outside the caching allocator that found the GPU full, what 'CUDA error: out of memory' says
_NCCL_CUDA_OOM = compile_later(r"\bCuda failure (?:\d+ )?'out of memory'")


@on("Cuda failure")
def nccl_cuda_oom(line: Line, st: StreamState):
    if not _NCCL_CUDA_OOM.search(line.text):
        return None
    return line.event("cuda_error", step=st.step_of(line.rank), error="out of memory", via="NCCL", phase=None)


_CPU = compile_later(r"DefaultCPUAllocator: (?:can't allocate memory|not enough memory): you tried to allocate (\d+) bytes")


@on("DefaultCPUAllocator")
def cpu_oom(line: Line, st: StreamState):
    t = line.text
    m = _CPU.search(t)
    ev = line.event("oom", step=st.step_of(line.rank), device="cpu",
                    requested=int(m.group(1)) if m else None, phase=take_phase(line, st))
    if _logged_not_raised(t[:t.find("DefaultCPUAllocator")]):
        ev.data["logged"] = True        # caught and logged (a batch-size finder also retries on this one)
    return ev


# numpy's allocation failure (numpy/_core/_exceptions.py _ArrayMemoryError.__str__, numpy 1.17+: 'Unable to allocate
# {size} for an array with shape {shape} and data type {dtype}', raised as numpy.core._exceptions._ArrayMemoryError,
# numpy._core... in numpy 2): host RAM, in preprocessing or a dataset held in memory
_NUMPY = compile_later(r"MemoryError: Unable to allocate " + SIZE + r" for an array with shape")


@on("MemoryError: Unable to allocate ")
def numpy_oom(line: Line, st: StreamState):
    m = _NUMPY.search(line.text)
    if not m:
        return None
    return line.event("oom", step=st.step_of(line.rank), device="cpu", requested=size(m.group(1)),
                      phase=take_phase(line, st), via="numpy")
