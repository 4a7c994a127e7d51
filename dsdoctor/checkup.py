"""The doctor's application layer: `check_config()` checks a ds_config and this machine before a
run, and returns a Checkup that `dsdoctor doctor` only prints (and writes with --fix).

Config lint (config/lint.py), DeepSpeed's own config parser (fixes.validate_with_deepspeed), the
memory fit (config/fit.py) and the environment probe (env.py) give Problems; they become
symptoms (config/diagnose.py) that go through the same pipeline as analyze's events
(pipeline.Diagnoser.absorb: rules.match, make_finding, order_findings), then the fixes are
resolved against the config (fixes.resolve_fixes), as analyze does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .findings import Finding


@dataclass
class Checkup:
    findings: list[Finding]                              # most likely root cause first
    notes: list[str] = field(default_factory=list)       # lines printed under the findings
    extra: dict[str, Any] = field(default_factory=dict)  # JSON fields: environment, estimate, deepspeed_validation
    world_size: int | None = None


def check_config(cfg: dict[str, Any] | None, text: str | None = None, source: str = "ds_config.json", *,
                 rule_set: Any = None, world_size: int | None = None, estimate: dict[str, Any] | None = None,
                 uses_hf: bool = False, facts: dict[str, Any] | None = None) -> Checkup:
    """Check `cfg` (None: the environment only). `estimate` is `dsdoctor estimate`'s result for
    the model (the memory fit check); `facts` a probe done already (env.probe)."""
    from .config.diagnose import to_symptoms
    from .config.fit import fit_problems
    from .config.problems import deepspeed_rejects
    from .context import Context
    from .env import env_problems, probe, world_size_from
    from .fixes import resolve_fixes, validate_with_deepspeed
    from .pipeline import Diagnoser
    from .rules import RuleSet

    facts = probe(cfg) if facts is None else facts
    ws, ws_src = (world_size, "--world-size") if world_size else world_size_from(facts)
    notes: list[str] = []
    extra: dict[str, Any] = {"environment": {k: v for k, v in facts.items() if k != "cpu_needed_bytes"}}
    ctx = Context.from_config(cfg, world_size=ws, gpu_count=facts.get("gpu_count") or None,
                              ds_version=facts.get("ds_version"), torch_version=facts.get("torch_version"))
    diag = Diagnoser(ctx, rule_set if rule_set is not None else RuleSet.load(), detectors=[])
    if estimate is not None:
        fit = fit_problems(estimate, cfg)
        extra["estimate"] = {k: v for k, v in estimate.items() if not k.startswith("_")}
        if fit:
            row = fit[0].facts.get("row") or {}
            if row.get("cpu_bytes") and row.get("offload_optimizer") != "none":
                facts["cpu_needed_bytes"] = row["cpu_bytes"]     # env-host-ram-short reads it
            diag.absorb(to_symptoms([p for p in fit if p.name == "model_states_exceed_gpu"]))
    notes.append(env_line(facts))
    if cfg is not None:
        from .config.lint import lint
        diag.absorb(to_symptoms(lint(cfg, world_size=ws, world_size_source=ws_src, env=facts, uses_hf=uses_hf),
                                cfg, text, source))
        ok, err = validate_with_deepspeed(without_auto(cfg) if uses_hf else cfg, ws)
        extra["deepspeed_validation"] = {"accepted": ok, "message": err}
        if ok is False:
            if not any(f.severity in ("critical", "error") for f in diag.findings()):
                diag.absorb(to_symptoms([deepspeed_rejects(err)], cfg, text, source))
            else:
                notes.append(f"DeepSpeed's config parser rejects the config as is: {err}")
        elif ok is None:
            notes.append(f"DeepSpeed's config parser was not run ({err}); keys were checked against "
                         "dsdoctor's snapshot of DeepSpeed 0.19.8.")
    diag.absorb(to_symptoms(env_problems(facts, cfg)))
    findings = diag.finish()
    resolve_fixes(findings, cfg, ws)
    if estimate is not None and estimate.get("gpu_memory") and estimate.get("cheapest") is None:
        notes.append("Memory fit: no ZeRO stage/offload combination fits (see `dsdoctor estimate`).")
    elif estimate is not None and estimate.get("cheapest"):
        from .expr import human_bytes
        c = estimate["cheapest"]
        notes.append(f"Memory fit ({human_bytes(estimate['gpu_memory'])} per GPU): cheapest that fits is ZeRO stage "
                     f"{c['stage']}, offload_optimizer={c['offload_optimizer']}, offload_param={c['offload_param']}"
                     f" ({human_bytes(c['gpu_bytes'])} of model states per GPU; activations not included).")
    return Checkup(findings, notes, extra, ws)


def without_auto(cfg: Any) -> Any:
    """What DeepSpeed sees after the HF integration filled "auto": batch sizes 1, the rest defaults."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if v == "auto":
                if k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
                    out[k] = 1
                continue
            out[k] = without_auto(v)
        return out
    return cfg


def env_line(facts: dict[str, Any]) -> str:
    gpus = facts.get("gpus") or []
    gpu = (f"{len(gpus)} x {gpus[0].get('name')}" if gpus else
           f"no GPU ({facts.get('nvml_error') or 'NVML found none'})")
    ds = facts.get("ds_version") or f"not importable ({facts.get('ds_problem')})"
    return (f"Environment: Python {facts.get('python')} · torch {facts.get('torch_version') or 'missing'}"
            f" (CUDA {facts.get('torch_cuda') or 'none'}, NCCL {facts.get('torch_nccl') or 'none'})"
            f" · deepspeed {ds} · {gpu} · {facts.get('cpu_count')} CPUs")
