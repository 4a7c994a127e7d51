"""Memory: GPU OOMs (by phase), raw CUDA 'out of memory' errors, host OOM (allocator
failures and ranks killed by SIGKILL), /dev/shm exhaustion."""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from


# what a finding calls the device that ran out (sources/formats/memory.py: the allocator's own word for it)
ACCEL_NAMES = {"cuda": "CUDA", "hip": "HIP (ROCm)", "xpu": "XPU", "npu": "NPU (Ascend)", "mps": "MPS (Apple)",
               "hpu": "HPU (Gaudi)"}


class MemoryDetector(Detector):
    kinds = ("oom", "cuda_error", "killed", "shm_error", "memory", "alloc_flushes", "process_exit")
    FLUSH_STEPS = 3         # DeepSpeed: "if this is happening frequently ..."; one flush at warm-up is normal
    FLUSH_EVERY = 10        # ... and frequently: on one step in 10 or more

    def __init__(self) -> None:
        self.last_memory: dict[int | None, dict] = {}
        self.flush_lines = 0
        self.flushes = 0
        self.first_flush_step: int | None = None
        self.flush_reported = False
        # OOMs a script caught and logged (formats/memory.py 'logged'): (symptom, input, its step advances
        # then), reported at the end unless the input went on training (detect/progress.py, as an exception)
        self.caught: list[tuple[Symptom, str | None, int]] = []
        # the run was told to stop from outside (Slurm's CANCELLED line, torchrun's death signal): the
        # SIGKILLs that follow are that stop's last resort (SIGTERM, then SIGKILL), not the OOM killer
        self.stopped_from_outside = False

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        if ev.kind == "memory":          # live readings: remembered to describe a later OOM
            self.last_memory[ev.rank] = d
            return ()
        if ev.kind == "alloc_flushes":
            self.flush_lines += 1
            self.flushes += int(d.get("flushes") or 0)
            if self.first_flush_step is None:
                self.first_flush_step = ev.step
            # "frequently": on at least 1 step in FLUSH_EVERY since the first one (a flush every
            # few hundred steps is the allocator settling, not pressure); steps unknown: the count
            span = ev.step - self.first_flush_step + 1 if ev.step is not None and self.first_flush_step is not None \
                else None
            if self.flush_lines >= self.FLUSH_STEPS and not self.flush_reported \
                    and (span is None or self.flush_lines * self.FLUSH_EVERY >= span):
                self.flush_reported = True
                return (symptom_from(ev, seq, "alloc_flushes", key=(), flushes=self.flushes,
                                     flush_steps=self.flush_lines),)
            return ()
        if ev.kind == "oom":
            facts = {k: v for k, v in d.items()}
            facts.setdefault("phase", None)
            facts["accel"] = ACCEL_NAMES.get(str(d.get("device") or "cuda"), "CUDA")
            if type(d.get("gpu")) is int:
                # the device as the allocator named it ('GPU 3', torch_npu's 'NPU 3'): its index, not
                # necessarily the rank (CUDA_VISIBLE_DEVICES, one device per process)
                facts["device_label"] = f"{d.get('gpu_word') or 'GPU'} {d['gpu']}"
            mem = self.last_memory.get(ev.rank) or {}
            for k in ("rss", "available", "gpu_allocated", "gpu_reserved", "gpu_peak"):
                if k in mem and k not in facts:
                    facts[k] = mem[k]
            if d.get("device") == "cpu":
                sym = symptom_from(ev, seq, "host_oom", key=("allocator", d.get("phase")), how="allocator", **facts)
            else:
                sym = symptom_from(ev, seq, "cuda_oom", key=(d.get("phase"),), **facts)
            if d.get("logged") and len(self.caught) < 64:
                self.caught.append((sym, ev.source, self.progress.advances(ev.source)))
                return ()
            return (sym,)
        if ev.kind == "cuda_error":
            err = str(d.get("error", "")).lower()
            if "out of memory" in err:
                return (symptom_from(ev, seq, "cuda_error_oom", key=(), error=d.get("error"),
                                     phase=d.get("phase"), via=d.get("via")),)
            return ()   # other CUDA errors are hardware/programming: see passthrough + hardware
        if ev.kind == "process_exit":
            self.stopped_from_outside = self.stopped_from_outside or bool(d.get("external"))
            return ()
        if ev.kind == "killed":
            sig = d.get("signal")
            # (the kernel's or the job's memory cgroup's own word of an OOM kill stays one)
            if sig == 9 and self.stopped_from_outside and not d.get("memcg") \
                    and d.get("who") not in ("kernel", "slurm", "ray_memory_monitor"):
                return ()       # detect/failure.py reports the stop
            if sig == 9:
                return (symptom_from(ev, seq, "host_oom", key=("killed",), how="killed",
                                     exitcode=d.get("exitcode"), who=d.get("who"), phase=d.get("phase"),
                                     memcg=d.get("memcg"), local_rank=d.get("local_rank")),)
            if sig == 7:
                return (symptom_from(ev, seq, "shm_exhausted", key=("sigbus",), detail="SIGBUS"),)
            return ()
        if ev.kind == "shm_error":
            return (symptom_from(ev, seq, "shm_exhausted", key=(d.get("where"),), detail=d.get("detail"),
                                 where=d.get("where")),)
        return ()

    def finish(self) -> Iterable[Symptom]:
        return [sym for sym, src, at in self.caught if not self.progress.went_on(src, at)]
