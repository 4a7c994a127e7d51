"""GPU and host telemetry in a background thread, at a low rate (options.telemetry_interval).

GPU readings come from NVML (nvidia-ml-py, `import pynvml`) when it is there; a machine
without NVML (no driver, a CPU box) is normal and only leaves the GPU fields out. An NVML
error while reading disables the GPU readings, not the host readings, and never training.
Host readings come from psutil. The latest readings are also left on
`session.telemetry_latest`, so the cross-rank exchange can attach this rank's SM clock and
throttle reasons to its summary (a straggler with a throttled GPU says so).
"""
from __future__ import annotations

import os
import threading
from typing import Any

# nvmlClocksEventReasons bits that mean "this GPU runs slower than it could"
# (nvml.h: GpuIdle 0x1, ApplicationsClocksSetting 0x2 and DisplayClockSetting 0x100 are normal).
THROTTLE_BITS = {0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost",
                 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake"}


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def nvml_index(local_rank: int) -> int:
    """NVML numbers GPUs physically; CUDA_VISIBLE_DEVICES renumbers them for CUDA."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [x.strip() for x in vis.split(",") if x.strip()]
    if ids and all(x.isdigit() for x in ids) and local_rank < len(ids):
        return int(ids[local_rank])
    return local_rank


class Gpu:
    """One GPU through NVML. `open()` returns None when NVML is absent (normal)."""

    def __init__(self, nvml: Any, handle: Any):
        self.nvml, self.handle = nvml, handle

    @classmethod
    def open(cls, local_rank: int) -> "Gpu | None":
        try:
            import pynvml  # nvidia-ml-py
        except Exception:
            return None
        try:
            pynvml.nvmlInit()
        except Exception:
            return None         # no driver / no library: a CPU machine
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index(local_rank))
        except Exception:
            return None
        return cls(pynvml, handle)

    def read(self) -> dict[str, Any]:
        """One reading. A field the GPU does not support is left out; any other NVML error
        propagates, and the caller disables GPU telemetry."""
        n, h, out = self.nvml, self.handle, {}
        not_supported = getattr(n, "NVMLError_NotSupported", ())

        def field(name: str, fn: Any) -> None:
            try:
                out[name] = fn()
            except not_supported:
                pass

        def mem() -> None:
            m = n.nvmlDeviceGetMemoryInfo(h)
            out["gpu_mem_used"], out["gpu_mem_total"] = int(m.used), int(m.total)

        try:
            mem()
        except not_supported:
            pass
        field("gpu_util", lambda: int(n.nvmlDeviceGetUtilizationRates(h).gpu))
        field("gpu_temp", lambda: int(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)))
        field("sm_clock", lambda: int(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)))
        field("sm_clock_max", lambda: int(n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)))
        reasons = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            n.nvmlDeviceGetCurrentClocksThrottleReasons
        field("throttle", lambda: throttle_names(int(reasons(h))))
        field("ecc_uncorrected", lambda: int(n.nvmlDeviceGetTotalEccErrors(
            h, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC)))
        field("power_w", lambda: round(n.nvmlDeviceGetPowerUsage(h) / 1000.0, 1))
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass


def read_host() -> dict[str, Any]:
    import psutil
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return {"ram_available": int(vm.available), "ram_total": int(vm.total), "ram_percent": vm.percent,
            "swap_used": int(sw.used), "cpu_percent": psutil.cpu_percent(interval=None),
            "rss": int(psutil.Process().memory_info().rss)}


class Telemetry:
    """A live part (start/stop): one `telemetry` event per interval from a daemon thread."""

    PART = "telemetry"
    GPU_PART = "telemetry.gpu"
    HOST_PART = "telemetry.host"

    def __init__(self, session: Any):
        self.session = session
        self.interval = float(getattr(session.options, "telemetry_interval", 10.0) or 10.0)
        self.gpu: Gpu | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.readings = 0

    def start(self) -> None:
        if self.interval <= 0:
            return
        with self.session.guard(self.GPU_PART):
            self.gpu = Gpu.open(self.session.local_rank)
        self._thread = threading.Thread(target=self._run, name="dsdoctor-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.gpu is not None:
            self.gpu.close()

    def _run(self) -> None:
        self.sample()
        while not self._stop.wait(self.interval):
            if not self.session.enabled(self.PART):
                return
            self.sample()

    def sample(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.gpu is not None and self.session.enabled(self.GPU_PART):
            with self.session.guard(self.GPU_PART):
                data.update(self.gpu.read())
        if self.session.enabled(self.HOST_PART):
            with self.session.guard(self.HOST_PART):
                data.update(read_host())
        if data:
            with self.session.guard(self.PART):
                self.session.telemetry_latest = data
                self.session.emit("telemetry", step=int(self.session.progress.step), **data)
                self.readings += 1
        return data
