"""The environment probe for `dsdoctor doctor`: versions, DeepSpeed ops, GPUs (NVML), host
limits, NCCL/launcher variables. `probe()` returns plain facts; `env_problems()` turns them
into Problems that rules/environment.yaml (and hardware, host_oom, nccl_error) diagnose. Nothing here raises: a missing library, a
broken install or an NVML failure is a fact.

Tests pass a fake `nvml` module (same names as nvidia-ml-py's `pynvml`) to `probe_gpus`.
"""
from __future__ import annotations

import os
import platform
import resource
from typing import Any

from .config.problems import Problem

NCCL_VARS = ("NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_SOCKET_IFNAME", "NCCL_DEBUG",
             "CUDA_VISIBLE_DEVICES", "TORCH_NCCL_ASYNC_ERROR_HANDLING", "TORCH_NCCL_BLOCKING_WAIT",
             "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC", "NCCL_TIMEOUT", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
             "OMP_NUM_THREADS", "RANK", "LOCAL_RANK")
# NVML throttle-reason bits that mean the GPU is being slowed by something wrong
# (nvml.h: clocksThrottleReasons*): SW power cap 0x4, HW slowdown 0x8, SW thermal 0x20,
# HW thermal 0x40, HW power brake 0x80.
THROTTLE_BITS = {0x8: "hw_slowdown", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake"}


def _versions() -> dict[str, Any]:
    from .config.deepspeed_import import deepspeed_module, deepspeed_problem, torch_module
    f: dict[str, Any] = {"python": platform.python_version()}
    torch = torch_module()
    if torch is not None:
        f["torch_version"] = torch.__version__
        f["torch_cuda"] = getattr(torch.version, "cuda", None)
        try:
            nccl = torch.cuda.nccl.version() if torch.cuda.is_available() else None
            f["torch_nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl
        except Exception:
            f["torch_nccl"] = None
    ds = deepspeed_module()
    f["ds_version"] = getattr(ds, "__version__", None) if ds else None
    f["ds_problem"] = deepspeed_problem()
    return f


def probe_ops(names: tuple[str, ...]) -> dict[str, Any]:
    """op name -> True (usable) / False / message, through DeepSpeed's own op builders."""
    from .config.deepspeed_import import deepspeed_module
    out: dict[str, Any] = {}
    if deepspeed_module() is None:
        return out
    builders = {"cpu_adam": "CPUAdamBuilder", "async_io": "AsyncIOBuilder"}
    for n in names:
        try:
            from deepspeed.accelerator import get_accelerator
            b = get_accelerator().create_op_builder(builders[n])
            if b is None:
                out[n] = "no builder for this accelerator"
                continue
            out[n] = bool(b.is_compatible(verbose=False))
        except BaseException as e:  # noqa: BLE001  a broken op is a finding, never a crash
            if isinstance(e, KeyboardInterrupt):
                raise
            out[n] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return out


def probe_gpus(nvml: Any = None) -> dict[str, Any]:
    """GPU facts through NVML. nvml: a pynvml-compatible module (tests pass a fake)."""
    if nvml is None:
        try:
            import pynvml as nvml  # nvidia-ml-py
        except Exception as e:
            return {"nvml": "missing", "nvml_error": f"nvidia-ml-py not importable ({type(e).__name__})",
                    "gpu_count": 0, "gpus": []}
    try:
        nvml.nvmlInit()
    except Exception as e:
        return {"nvml": "failed", "nvml_error": _err(e), "gpu_count": 0, "gpus": []}
    gpus: list[dict[str, Any]] = []
    try:
        n = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
        for i, h in enumerate(handles):
            g: dict[str, Any] = {"index": i}
            g["name"] = _try(lambda: _s(nvml.nvmlDeviceGetName(h)))
            g["memory_total"] = _try(lambda: int(nvml.nvmlDeviceGetMemoryInfo(h).total))
            cc = _try(lambda: nvml.nvmlDeviceGetCudaComputeCapability(h))
            g["compute_capability"] = f"{cc[0]}.{cc[1]}" if cc else None
            g["bf16"] = bool(cc and cc[0] >= 8) if cc else None
            reasons = _try(lambda: int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)))
            g["throttle"] = [v for b, v in THROTTLE_BITS.items() if reasons and reasons & b]
            g["sm_clock"] = _try(lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))
            g["sm_clock_max"] = _try(lambda: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM))
            g["ecc_uncorrected"] = _try(lambda: int(nvml.nvmlDeviceGetTotalEccErrors(
                h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC)))
            g["nvlinks"] = _count_nvlinks(nvml, h)
            gpus.append(g)
    except Exception as e:
        return {"nvml": "failed", "nvml_error": _err(e), "gpu_count": len(gpus), "gpus": gpus}
    finally:
        _try(nvml.nvmlShutdown)
    return {"nvml": "ok", "nvml_error": None, "gpu_count": len(gpus), "gpus": gpus,
            "nvlink": any(g["nvlinks"] for g in gpus) if len(gpus) > 1 else None}


def _count_nvlinks(nvml: Any, h: Any) -> int:
    n = 0
    for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
        try:
            if nvml.nvmlDeviceGetNvLinkState(h, link) == getattr(nvml, "NVML_FEATURE_ENABLED", 1):
                n += 1
        except Exception:
            break       # NVLink not supported or no more links
    return n


def _try(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _err(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


def probe_host() -> dict[str, Any]:
    f: dict[str, Any] = {}
    try:
        import psutil
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        f.update(ram_total=vm.total, ram_available=vm.available, swap_total=sw.total, swap_used=sw.used)
    except Exception:
        pass
    try:
        st = os.statvfs("/dev/shm")
        f["shm_bytes"] = st.f_blocks * st.f_frsize
    except OSError:
        f["shm_bytes"] = None
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    f["memlock_bytes"] = -1 if soft == resource.RLIM_INFINITY else soft
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    f["nofile"] = -1 if soft == resource.RLIM_INFINITY else soft
    f["cpu_count"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f


def probe_env_vars(environ: dict[str, str] | None = None) -> dict[str, Any]:
    e = os.environ if environ is None else environ
    out = {k: e.get(k) for k in NCCL_VARS}
    ifname = out.get("NCCL_SOCKET_IFNAME")
    if ifname:
        names = [n.lstrip("^=") for n in ifname.split(",") if n]
        have = set(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else None
        # NCCL matches prefixes: "eth" matches eth0; "^" excludes; "=" exact
        out["ifname_missing"] = ([n for n in names if not any(h.startswith(n) for h in have)]
                                 if have is not None and not ifname.startswith("^") else [])
    return out


def probe(config: dict[str, Any] | None = None, nvml: Any = None) -> dict[str, Any]:
    facts = _versions()
    facts.update(probe_host())
    facts.update(probe_gpus(nvml))
    facts["env"] = probe_env_vars()
    need = []
    z = (config or {}).get("zero_optimization")
    if isinstance(z, dict):
        if isinstance(z.get("offload_optimizer"), dict) and z["offload_optimizer"].get("device") in ("cpu", "nvme"):
            need.append("cpu_adam")
        if any(isinstance(z.get(b), dict) and z[b].get("device") == "nvme" for b in ("offload_optimizer", "offload_param")):
            need.append("async_io")
    facts["ops"] = probe_ops(tuple(need))
    return facts


def world_size_from(facts: dict[str, Any]) -> tuple[int | None, str | None]:
    env = facts.get("env") or {}
    for k in ("WORLD_SIZE",):
        v = env.get(k)
        if v and str(v).isdigit():
            return int(v), f"${k}"
    if facts.get("gpu_count"):
        return int(facts["gpu_count"]), "GPUs seen on this node"
    return None, None


def env_problems(facts: dict[str, Any], config: dict[str, Any] | None = None) -> list[Problem]:
    """Problems in probed facts (works on a dict written by hand too: rule examples, tests)."""
    out: list[Problem] = []
    cfg = config or {}
    env = facts.get("env") or {}
    if facts.get("ds_problem"):
        out.append(Problem("deepspeed_unavailable", "deepspeed", {"problem": facts["ds_problem"]}))
    for op, ok in (facts.get("ops") or {}).items():
        if ok is not True:
            out.append(Problem("op_unusable", f"ops.{op}", {"op": op, "detail": ok,
                                                           "why": "offload_optimizer" if op == "cpu_adam" else "nvme offload"}))
    nvml = facts.get("nvml")
    gpus = facts.get("gpus") or []
    if nvml != "ok" or not gpus:
        out.append(Problem("no_gpu", "gpus", {"nvml": nvml, "nvml_error": facts.get("nvml_error")}))
    fp16 = isinstance(cfg.get("fp16"), dict) and cfg["fp16"].get("enabled") is True
    bf16 = any(isinstance(cfg.get(k), dict) and cfg[k].get("enabled") is True for k in ("bf16", "bfloat16"))
    if gpus:
        if fp16 and all(g.get("bf16") for g in gpus):
            out.append(Problem("bf16_available_fp16_used", "fp16.enabled",
                               {"gpu_name": gpus[0].get("name"), "cc": gpus[0].get("compute_capability")}))
        if bf16 and any(g.get("bf16") is False for g in gpus):
            g = next(g for g in gpus if g.get("bf16") is False)
            out.append(Problem("bf16_unsupported", "bf16.enabled",
                               {"gpu_name": g.get("name"), "cc": g.get("compute_capability")}))
        for g in gpus:
            if g.get("throttle"):
                out.append(Problem("gpu_throttled", f"gpu{g['index']}",
                                   {"gpu": g["index"], "gpu_name": g.get("name"), "reasons": g["throttle"],
                                    "sm_clock": g.get("sm_clock"), "sm_clock_max": g.get("sm_clock_max")}))
            if g.get("ecc_uncorrected"):
                out.append(Problem("gpu_ecc_errors", f"gpu{g['index']}",
                                   {"gpu": g["index"], "gpu_name": g.get("name"), "errors": g["ecc_uncorrected"]}))
        if len(gpus) > 1 and facts.get("nvlink") is False:
            out.append(Problem("gpu_no_nvlink", "gpus", {"gpu_count": len(gpus), "gpu_name": gpus[0].get("name")}))
    shm = facts.get("shm_bytes")
    if shm is not None and shm < (1 << 30):
        out.append(Problem("small_shm", "/dev/shm", {"shm_bytes": shm}))
    memlock = facts.get("memlock_bytes")
    if gpus and memlock is not None and 0 <= memlock < (64 << 30):
        out.append(Problem("low_memlock", "ulimit -l", {"memlock_bytes": memlock}))
    nofile = facts.get("nofile")
    if nofile is not None and 0 <= nofile < 4096:
        out.append(Problem("low_nofile", "ulimit -n", {"nofile": nofile}))
    local = _int(env.get("LOCAL_WORLD_SIZE")) or (len(gpus) or None)
    omp, cpus = _int(env.get("OMP_NUM_THREADS")), facts.get("cpu_count")
    if omp and local and cpus and omp * local > cpus:
        out.append(Problem("omp_oversubscribed", "OMP_NUM_THREADS",
                           {"omp": omp, "local_ranks": local, "cpu_count": cpus,
                            "suggested": max(1, cpus // local)}))
    if env.get("NCCL_P2P_DISABLE") == "1" and len(gpus) > 1:
        out.append(Problem("nccl_p2p_disabled", "NCCL_P2P_DISABLE", {"gpu_count": len(gpus)}))
    if env.get("NCCL_IB_DISABLE") == "1":
        out.append(Problem("nccl_ib_disabled", "NCCL_IB_DISABLE", {}))
    if env.get("ifname_missing"):
        out.append(Problem("nccl_ifname_missing", "NCCL_SOCKET_IFNAME",
                           {"value": env.get("NCCL_SOCKET_IFNAME"), "missing": env["ifname_missing"]}))
    if gpus and not env.get("NCCL_DEBUG"):
        out.append(Problem("nccl_debug_unset", "NCCL_DEBUG", {}))
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and local:
        n = len([d for d in cvd.split(",") if d.strip() not in ("", "-1")])
        if n < local:
            out.append(Problem("cuda_visible_devices_short", "CUDA_VISIBLE_DEVICES",
                               {"value": cvd, "visible": n, "local_ranks": local}))
    if env.get("TORCH_NCCL_ASYNC_ERROR_HANDLING") == "0":
        out.append(Problem("nccl_async_error_handling_off", "TORCH_NCCL_ASYNC_ERROR_HANDLING", {}))
    hb = _int(env.get("TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC"))
    if hb is not None and hb < 60:
        out.append(Problem("nccl_heartbeat_short", "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC", {"value": hb}))
    if (facts.get("swap_used") or 0) > (1 << 30):
        out.append(Problem("host_swapping", "swap", {"swap_used": facts["swap_used"],
                                                     "ram_available": facts.get("ram_available")}))
    need = facts.get("cpu_needed_bytes")
    if need and facts.get("ram_total") and need > facts["ram_total"]:
        out.append(Problem("host_ram_short_for_offload", "host RAM",
                           {"needed": need, "ram_total": facts["ram_total"]}))
    return out


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
