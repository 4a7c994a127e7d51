"""Telemetry with a fake pynvml module: readings, throttle reasons, NVML missing or failing."""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from dsdoctor.live.session import LiveOptions, LiveSession
from dsdoctor.live.telemetry import Telemetry, nvml_index, throttle_names


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def fake_pynvml(fail_init: bool = False, fail_read: bool = False) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVMLError_NotSupported = NVMLError_NotSupported
    m.NVML_TEMPERATURE_GPU, m.NVML_CLOCK_SM = 0, 1
    m.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, m.NVML_VOLATILE_ECC = 1, 0
    m.calls = []

    def init():
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")
    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    m.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=30 << 30, total=80 << 30, free=50 << 30)

    def util(h):
        if fail_read:
            raise NVMLError("GPU is lost")
        return SimpleNamespace(gpu=97, memory=40)
    m.nvmlDeviceGetUtilizationRates = util
    m.nvmlDeviceGetTemperature = lambda h, t: 88
    m.nvmlDeviceGetClockInfo = lambda h, c: 1100
    m.nvmlDeviceGetMaxClockInfo = lambda h, c: 1980
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x1 | 0x40     # idle (ignored) + hw thermal

    def ecc(h, a, b):
        raise NVMLError_NotSupported("ECC off")
    m.nvmlDeviceGetTotalEccErrors = ecc
    m.nvmlDeviceGetPowerUsage = lambda h: 412_345
    return m


def session(tmp_path, **opts) -> LiveSession:
    return LiveSession(LiveOptions(out=tmp_path, telemetry_interval=3600, **opts), rank=0, world_size=1,
                       local_rank=0, store=None, quiet=True)


def test_readings_with_nvml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    s = session(tmp_path)
    t = Telemetry(s)
    t.start()
    t.stop()
    d = t.sample()
    assert d["gpu_util"] == 97 and d["gpu_temp"] == 88 and d["sm_clock"] == 1100
    assert d["throttle"] == ["hw_thermal"] and d["power_w"] == 412.3
    assert "ecc_uncorrected" not in d            # not supported: left out, not an error
    assert d["rss"] > 0 and d["ram_total"] > 0
    assert s.telemetry_latest["sm_clock"] == 1100
    assert not s.errors
    s.close()
    assert '"kind": "telemetry"' in (tmp_path / "events-rank0.jsonl").read_text()


def test_no_nvml_is_normal(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    s = session(tmp_path)
    t = Telemetry(s)
    t.start()
    t.stop()
    assert t.gpu is None and not s.errors
    d = t.sample()
    assert "gpu_util" not in d and d["rss"] > 0
    s.close()


def test_nvml_error_disables_only_gpu_telemetry(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_read=True))
    s = session(tmp_path)
    t = Telemetry(s)
    t.start()
    t.stop()
    assert [p for p, _ in s.errors] == ["telemetry.gpu"]
    assert not s.enabled("telemetry.gpu") and s.enabled("telemetry.host") and s.enabled("telemetry")
    d = t.sample()                               # host readings go on
    assert "gpu_util" not in d and d["rss"] > 0
    s.close()
    text = (tmp_path / "events-rank0.jsonl").read_text()
    assert '"doctor_error"' in text and "GPU is lost" in text


def test_throttle_and_index_helpers(monkeypatch):
    assert throttle_names(0x1 | 0x2 | 0x100) == []
    assert throttle_names(0x4 | 0x20) == ["sw_power_cap", "sw_thermal"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert nvml_index(1) == 5
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc")
    assert nvml_index(1) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="psutil host readings checked on Linux")
def test_real_pynvml_on_this_machine(tmp_path):
    """The installed nvidia-ml-py on a machine without a driver: no GPU fields, no error."""
    s = session(tmp_path)
    t = Telemetry(s)
    t.start()
    t.stop()
    assert not s.errors
    s.close()
