"""GPU hardware failures: driver Xid lines (dmesg / journal), uncorrectable ECC errors, and the
CUDA errors that a failing GPU produces ('unknown error', 'unspecified launch failure', 'GPU has
fallen off the bus', 'illegal memory access').

formats/memory.py also emits `cuda_error` for every 'CUDA error: X'; the handlers here add a
`hardware` event for the hardware ones (detect/passthrough.py turns it into `hardware.<error>`).
Templates: c10/cuda/CUDAException.cpp: c10_cuda_check_implementation ('CUDA error: X') and the
NVIDIA driver (open-gpu-kernel-modules src/nvidia/src/kernel/gpu/rc/kernel_rc.c: the
'NVRM: Xid' line; src/common/sdk/nvidia/inc/nverror.h: the codes).
"""
from __future__ import annotations

import re

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on
from ... import regex_cache

# Xid -> (error id, meaning) from open-gpu-kernel-modules nverror.h
XID: dict[int, tuple[str, str]] = {
    13: ("xid", "Graphics Engine Exception: a kernel fault (application bug or hardware)"),
    31: ("xid", "GPU memory page fault (MMU error): usually an application or driver bug, sometimes hardware"),
    43: ("xid", "channel reset after a user application fault (follows Xid 13/31)"),
    45: ("xid", "channel torn down because the process was killed: secondary"),
    48: ("ecc", "uncorrectable double-bit ECC error: the GPU needs a reset"),
    63: ("ecc", "ECC page retirement / row remapping recorded: reset the GPU soon"),
    64: ("ecc", "ECC page retirement / row remapping failed: RMA candidate"),
    74: ("xid", "NVLink error: NCCL hangs or 'unhandled cuda error' follow"),
    79: ("fell_off_bus", "GPU has fallen off the bus (power, PCIe or thermal): drain the node"),
    92: ("ecc", "excessive single-bit ECC error rate"),
    94: ("ecc", "contained uncorrectable ECC error (A100+): the affected process must restart"),
    95: ("ecc", "uncontained uncorrectable ECC error (A100+): the GPU needs a reset"),
    119: ("gsp", "GSP firmware RPC timeout: the GPU is unusable until reset"),
    120: ("gsp", "GSP firmware error: the GPU is unusable until reset"),
    # nverror.h's newest codes (r550+): the driver's recovery action for an error it saw ('GPU recovery action
    # changed from 0x0 (None) to 0x1 (GPU Reset Required)', also 'Node Reboot Required', 'Drain P2P')
    154: ("xid", "GPU recovery action changed: the driver asks for a GPU reset (or a node reboot)"),
}
# codes that say the GPU itself is unhealthy (the rest are mostly software faults)
HARDWARE_XIDS = frozenset({48, 63, 64, 74, 79, 92, 94, 95, 119, 120, 154})


def _gpu_report(line: Line, st: StreamState, error: str, **facts):
    """A `hardware` event of a line that is the report itself (no Xid code, no pid unless `facts` say)."""
    return line.event("hardware", step=st.step_of(line.rank),
                      **{"error": error, "xid": None, "pci": None, "message": line.text.strip()[:200], "pid": None,
                         **facts})


_XID = compile_later(r"\b(S?)Xid \(PCI:([0-9a-fA-F:.]+)(?: GPU-I:\d+)?(?: GPU-CI:\d+)?\): (\d+),\s*(.*)$")


@on("Xid (PCI:")
def xid(line: Line, st: StreamState):
    m = _XID.search(line.text)
    if not m:
        return None
    code = int(m.group(3))
    if m.group(1):          # NVSwitch SXid: the fabric, not one GPU
        err, meaning = "sxid", "NVSwitch error"
    else:
        err, meaning = XID.get(code, ("xid", f"Xid {code}"))
    rest = m.group(4)
    pid = re.search(r"pid=(\d+)", rest)
    msg = re.sub(r"^(?:pid=[^,]*, )?(?:name=[^,]*, )?", "", rest).strip()
    return line.event("hardware", step=st.step_of(line.rank), error=err, xid=code, pci=m.group(2),
                      message=msg[:200] or meaning, meaning=meaning, gpu_fault=bool(m.group(1)) or code in HARDWARE_XIDS,
                      pid=int(pid.group(1)) if pid else None)


# CUDA error strings (cudaGetErrorString) that point at the GPU rather than at the program
_CUDA_HW = [
    ("uncorrectable ECC error encountered", "ecc"),
    ("cudaErrorECCUncorrectable", "ecc"),
    ("GPU has fallen off the bus", "fell_off_bus"),
    ("unspecified launch failure", "launch_failure"),
    ("an illegal memory access was encountered", "illegal_access"),
    ("CUDA error: unknown error", "cuda_unknown"),
    ("unknown error at ", "cuda_unknown"),          # THC: "cuda runtime error (999) : unknown error at file:line"
]


@on(*(lit for lit, _ in _CUDA_HW))
def cuda_hardware(line: Line, st: StreamState):
    t = line.text
    if "Xid" in t:              # the Xid handler has it, with the code
        return None
    if "unknown error at " in t and "cuda runtime error" not in t:
        return None
    err = next(e for lit, e in _CUDA_HW if lit in t)
    # 'terminate called after throwing ...' then '  what():  CUDA error: ...': the process aborted
    aborted = "what():" in t
    # NCCL's own report of it ('{host}:{pid}:{tid} [{dev}] enqueue.cc:N NCCL WARN Cuda failure ...', NCCL
    # src/debug.cc) names the process: the pid an Xid line of the driver names too
    pid = _NCCL_PID.search(t)
    # the driver's own line beside Xid 79 ('NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.',
    # open-gpu-kernel-modules kernel-open/nvidia/nv.c) is the same report, not a process's CUDA error:
    # it carries the Xid so both lines are one finding
    drv = _NVRM_GPU.search(t) if err == "fell_off_bus" else None
    if drv:
        return _gpu_report(line, st, err, xid=79, pci=drv.group(1), meaning=XID[79][1], gpu_fault=True)
    return _gpu_report(line, st, err, aborted=aborted, pid=int(pid.group(1)) if pid else None)


# The host's memory failing under the run, from the kernel's log: the EDAC driver's uncorrected error
# (drivers/edac/edac_mc.c edac_ce_ue: 'EDAC MC{n}: {count} UE {msg} on {label} (...)'; a CE is corrected and
# harmless) and memory-failure.c's poisoned page ('Memory failure: {pfn:#x}: Sending SIGBUS to {comm}:{pid} due to
# hardware memory corruption'; older kernels 'MCE {pfn:#x}: Killing {comm}:{pid} due to hardware memory
# corruption'): the process that touched the page dies by SIGBUS (the launcher's -7), not by a full /dev/shm.
_EDAC_UE = compile_later(r"EDAC (MC\d+): \d+ UE ")
_POISON = compile_later(r"(?:Memory failure|MCE) (?:0x)?[0-9a-f]+: (?:Sending SIGBUS to|Killing) (\S+?):(\d+) due to hardware memory corruption")


@on(" UE ", "due to hardware memory corruption")
def host_memory_error(line: Line, st: StreamState):
    t = line.text
    ue = _EDAC_UE.search(t)
    poison = _POISON.search(t) if ue is None else None
    if ue is None and poison is None:
        return None
    if not st.once(("host_memory_error", ue.group(1) if ue else poison.group(2))):
        return None
    return _gpu_report(line, st, "host_memory", meaning="uncorrected host (CPU) memory error", gpu_fault=False,
                       pid=int(poison.group(2)) if poison else None)


# ROCm's runtime when a kernel touched memory it may not (ROCR-Runtime, strings of libhsa-runtime64.so in
# pytorch-triton-rocm 2.1.0: 'Memory access fault by GPU node-%u (Agent handle: %p) on address %p%s. Reason: %s.',
# reasons such as 'Page not present or supervisor privilege'): the AMD twin of CUDA's 'an illegal memory access was
# encountered'; the runtime then aborts the process (SIGABRT, the launcher's exit code -6)
_HSA_FAULT = compile_later(r"Memory access fault by GPU node-(\d+) \(Agent handle: [^)]*\) on address (\S+?)(?:\.| )"
                           r".*?(?:Reason: (.+?)\.?\s*$|$)")


@on("Memory access fault by GPU node-")
def rocm_memory_fault(line: Line, st: StreamState):
    m = _HSA_FAULT.search(line.text)
    if not m:
        return None
    return _gpu_report(line, st, "rocm_memory_fault", gpu_node=int(m.group(1)), reason=m.group(3), aborted=True)


_NVRM_GPU = regex_cache.compile(r"\bNVRM: GPU ([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.\d)?: GPU has fallen off the bus")


# `nvidia-smi -q` (-d PERFORMANCE) pasted next to a slow run: its "Clocks Event Reasons" section
# ("Clocks Throttle Reasons" before driver 535) lists each reason as '        HW Thermal Slowdown   : Active'.
# The reasons that slow a busy GPU down (NVML nvml.h nvmlClocksEventReason*: HwSlowdown, HwThermalSlowdown,
# HwPowerBrakeSlowdown, SwThermalSlowdown), named as the live telemetry names them (live/telemetry.py).
_SLOWDOWN = compile_later(r"^\s*(HW Slowdown|HW Thermal Slowdown|HW Power Brake Slowdown|SW Thermal Slowdown)\s*:\s*Active\s*$")
_SLOWDOWN_NAMES = {"HW Slowdown": "hw_slowdown", "HW Thermal Slowdown": "hw_thermal",
                   "HW Power Brake Slowdown": "hw_power_brake", "SW Thermal Slowdown": "sw_thermal"}


@on("Slowdown")
def clocks_event_reason(line: Line, st: StreamState):
    m = _SLOWDOWN.match(line.text)
    if not m:
        return None
    return line.event("telemetry", step=st.step_of(line.rank), throttle=[_SLOWDOWN_NAMES[m.group(1)]],
                      reading="nvidia-smi")


# The same reasons as `nvidia-smi --query-gpu=index,...,clocks_event_reasons.hw_slowdown,... --format=csv` prints
# them (clocks_throttle_reasons.* before driver 535): a header naming the fields, then one row per GPU whose
# reason columns read 'Active' / 'Not Active'; the bitmask field (clocks_event_reasons.active) is NVML's
# nvmlClocksEventReason* bits (nvidia-ml-py pynvml.py: SwThermalSlowdown 0x20, HwSlowdown 0x08,
# HwThermalSlowdown 0x40, HwPowerBrakeSlowdown 0x80). The header arms the rows (the stream's scratch).
_CSV_REASONS = {"hw_slowdown": "hw_slowdown", "hw_thermal_slowdown": "hw_thermal",
                "hw_power_brake_slowdown": "hw_power_brake", "sw_thermal_slowdown": "sw_thermal"}
_CSV_BITS = ((0x08, "hw_slowdown"), (0x40, "hw_thermal"), (0x80, "hw_power_brake"), (0x20, "sw_thermal"))


@on("clocks_event_reasons.", "clocks_throttle_reasons.")
def smi_csv_header(line: Line, st: StreamState):
    t = line.text
    if "--query" in t or "nvidia-smi" in t or len(t) > 2000:
        return None                      # the command, not its output
    cols = [c.strip() for c in t.split(",")]
    reasons: dict[int, str] = {}
    for i, c in enumerate(cols):
        field = c.split(" ")[0]
        group, _, name = field.partition(".")
        if group in ("clocks_event_reasons", "clocks_throttle_reasons"):
            if name in _CSV_REASONS or name == "active":
                reasons[i] = name
    if reasons:
        st.scratch["smi_csv"] = (len(cols), reasons)
    return None


@on("Active", "0x0000")
def smi_csv_row(line: Line, st: StreamState):
    armed = st.scratch.get("smi_csv")
    if not armed:
        return None
    ncols, reasons = armed
    vals = [v.strip() for v in line.text.split(",")]
    if len(vals) != ncols:
        return None
    throttle = []
    for i, name in reasons.items():
        v = vals[i]
        if name == "active":
            try:
                bits = int(v, 16)
            except ValueError:
                continue
            throttle += [n for b, n in _CSV_BITS if bits & b]
        elif v == "Active":
            throttle.append(_CSV_REASONS[name])
    if not throttle:
        return None
    return line.event("telemetry", step=st.step_of(line.rank), throttle=sorted(set(throttle)), reading="nvidia-smi")


# nvidia-smi's table when the driver can no longer read a GPU: its fields print 'ERR!' (nvidia-smi's default view;
# the Volatile Uncorr. ECC column, then the temperature / power / utilisation of the row below), and
# `nvidia-smi --query-gpu` prints '[GPU requires reset]' / '[Unknown Error]' for a field (a GPU nvidia-smi cannot
# open at all, 'Unable to determine the device handle for GPU...', is smi_device_lost below). A GPU row ('|   2  NVIDIA A100-SXM4-80GB   On  |   00000000:47:00.0 Off |')
# names the GPU of the 'ERR!' row under it. 'N/A' is a field the GPU does not have: no error.
# (its bus id, "0000:" in every nvidia-smi version, arms the row; the table's bars are too common a literal)
_SMI_GPU_ROW = compile_later(r"^\|\s+(\d+)\s+\S.*?\|\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s")


@on("0000:", "ERR!", "[GPU requires reset]", "[Unknown Error]")
def smi_gpu_error(line: Line, st: StreamState):
    t = line.text
    row = _SMI_GPU_ROW.match(t.strip())
    if row:
        st.scratch["smi_row"] = (line.lineno, int(row.group(1)), row.group(2))
    if "ERR!" in t and t.lstrip().startswith("|"):
        last = st.scratch.get("smi_row")
        gpu, pci = (last[1], last[2]) if last and 0 <= line.lineno - last[0] <= 1 else (None, None)
    elif "[GPU requires reset]" in t or ("[Unknown Error]" in t and "," in t):
        gpu, pci = None, None
    else:
        return None
    if not st.once(("smi_gpu_error", pci or gpu or t.strip()[:60])):
        return None
    return _gpu_report(line, st, "smi_err", pci=pci, gpu=gpu, meaning="nvidia-smi cannot read this GPU", gpu_fault=True)


# nvidia-smi when NVML cannot reach a GPU any more: 'Unable to determine the device handle for GPU
# 0000:41:00.0: Unknown Error' (nvmlDeviceGetHandleByIndex failed; newer drivers say 'GPU is lost. Reboot the
# system to recover this GPU'): the driver lost the device, what Xid 79 reports in the kernel log; pasted
# after a crash, it is the GPU's fault, not the program's
_NO_HANDLE = compile_later(r"Unable to determine the device handle for GPU ?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:"
                           r"[0-9a-fA-F]{2})(?:\.\d)?: (Unknown Error|GPU is lost)")


@on("Unable to determine the device handle for GPU")
def smi_device_lost(line: Line, st: StreamState):
    m = _NO_HANDLE.search(line.text)
    return _gpu_report(line, st, "fell_off_bus", pci=m.group(1), meaning="nvidia-smi cannot reach the GPU",
                       gpu_fault=True) if m else None


_NCCL_PID = regex_cache.compile(r"^\S+?:(\d+):\d+ \[\d+\] .*NCCL WARN ")
