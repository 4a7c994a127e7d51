"""`dsdoctor doctor [ds.json]`: check a ds_config and the environment before a run.

Config lint + environment probe -> Problems -> symptoms -> rules (rules/config.yaml,
rules/env.yaml) -> findings, reported like `dsdoctor analyze` (same JSON schema).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console

from ..config_io import ConfigError, check_output, write_config
from ..context import Context
from ..findings import Finding, order_findings
from ..fixes import apply_patch, config_diff, validate_with_deepspeed
from ..report import exit_code, print_json, print_report
from . import ci_options as ci
from .common import fail


def doctor(
    config_arg: Optional[Path] = typer.Argument(None, metavar="CONFIG", show_default=False,
                                                help="The ds_config.json to check (or --config)."),
    fix_out: Optional[Path] = typer.Argument(None, metavar="OUT", show_default=False,
                                             help="Where --fix writes the corrected config."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="The ds_config.json to check."),
    fix: bool = typer.Option(False, "--fix", help="Write the corrected config to a new file (default <name>.fixed.json; give OUT after --fix) and show the diff."),
    world_size: Optional[int] = typer.Option(None, "--world-size", min=1, max=1 << 20, help="Number of ranks (default: $WORLD_SIZE or the GPUs seen)."),
    params: Optional[str] = typer.Option(None, "--params", help="Model parameters (7B, 7e9) or HF config.json: adds the memory fit check."),
    gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node", min=1, max=1024),
    nodes: int = typer.Option(1, "--nodes", min=1, max=1 << 20),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="Per-GPU memory for the fit check (default: NVML)."),
    cpu_memory: Optional[str] = typer.Option(None, "--cpu-memory", help="Host memory per node for the fit check (default: this host)."),
    hf: bool = typer.Option(False, "--hf", help="The config is used through the Hugging Face integration (\"auto\" values are filled)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document (schema dsdoctor.report/1); --format json."),
    rules_dir: Optional[Path] = ci.replace_option(),
    fmt: Optional[str] = ci.format_option(), fail_on: Optional[str] = ci.fail_on_option(),
    select: Optional[List[str]] = ci.select_option(), ignore: Optional[List[str]] = ci.ignore_option(),
    rules_dirs: Optional[List[Path]] = ci.rules_dir_option(),
    force: bool = typer.Option(False, "--force", help="Let --fix replace an existing OUT (never the input itself)."),
) -> None:
    """Check a ds_config against the installed DeepSpeed, and this machine's environment."""
    fmt = ci.output_format(fmt, as_json)
    as_json = fmt == "json"
    config, fix_out = _positionals([a for a in (config_arg, fix_out) if a is not None], config, fix)
    if fix and config is None:
        fail("--fix needs a config to correct: dsdoctor doctor ds_config.json --fix")
    cfg, text = None, None
    if config is not None:
        from ..config.loader import read_config
        try:
            cfg, text = read_config(config)
        except ConfigError as e:
            fail(str(e))
        if fix:
            try:             # before any work: an output we would refuse is said at once
                check_output(fix_out or _fixed_name(config), [config], force)
            except ConfigError as e:
                fail(str(e))
    rules, fail_on = ci.setup(rules_dir, rules_dirs, select, ignore, fail_on)
    from ..env import env_problems, probe, world_size_from
    facts = probe(cfg)
    ws, ws_src = (world_size, "--world-size") if world_size else world_size_from(facts)
    notes: list[str] = []
    extra: dict[str, Any] = {"environment": _public(facts)}
    est = None
    if params is not None:
        from .estimate import run_estimate
        est = run_estimate(params, None, gpus_per_node or max(1, facts.get("gpu_count") or 1), nodes,
                           gpu_memory, cpu_memory, config)
        fit_problems = _fit_problems(est, cfg)
        extra["estimate"] = {k: v for k, v in est.items() if not k.startswith("_")}
    ctx = Context.from_config(cfg, world_size=ws, gpu_count=facts.get("gpu_count") or None,
                              ds_version=facts.get("ds_version"), torch_version=facts.get("torch_version"))
    from ..config.diagnose import findings_for
    findings: list[Finding] = []
    if est is not None and fit_problems:
        row = fit_problems[0].facts.get("row") or {}
        if row.get("cpu_bytes") and row.get("offload_optimizer") != "none":
            facts["cpu_needed_bytes"] = row["cpu_bytes"]
        findings += findings_for([p for p in fit_problems if p.name == "model_states_exceed_gpu"], rules, ctx)
    notes.append(_env_line(facts))
    if cfg is not None:
        from ..config.lint import lint
        from ..config.problems import Problem
        problems = lint(cfg, world_size=ws, world_size_source=ws_src, env=facts, uses_hf=hf)
        findings += findings_for(problems, rules, ctx, cfg, text, str(config))
        ok, err = validate_with_deepspeed(_without_auto(cfg) if hf else cfg, ws)
        extra["deepspeed_validation"] = {"accepted": ok, "message": err}
        if ok is False:
            if not any(f.severity in ("critical", "error") for f in findings):
                findings += findings_for([Problem("deepspeed_rejects", _field_of(err), {"message": err})],
                                         rules, ctx, cfg, text, str(config))
            else:
                notes.append(f"DeepSpeed's config parser rejects the config as is: {err}")
        elif ok is None:
            notes.append(f"DeepSpeed's config parser was not run ({err}); keys were checked against "
                         "dsdoctor's snapshot of DeepSpeed 0.19.8.")
        _validate_fixes(findings, cfg, ws)
    findings = order_findings(findings + findings_for(env_problems(facts, cfg), rules, ctx))
    if est is not None and est.get("gpu_memory") and est.get("cheapest") is None:
        notes.append("Memory fit: no ZeRO stage/offload combination fits (see `dsdoctor estimate`).")
    elif est is not None and est.get("cheapest"):
        c = est["cheapest"]
        notes.append(f"Memory fit ({human(est['gpu_memory'])} per GPU): cheapest that fits is ZeRO stage "
                     f"{c['stage']}, offload_optimizer={c['offload_optimizer']}, offload_param={c['offload_param']}"
                     f" ({human(c['gpu_bytes'])} of model states per GPU; activations not included).")
    written = None
    if fix and cfg is not None:
        written = _write_fixed(cfg, findings, config, fix_out, ws, notes, fmt != "text", force)
    extra["written_config"] = str(written) if written else None
    extra["notes"] = notes
    if fmt in ("sarif", "github"):
        ci.emit(fmt, findings, rules, {str(config): text} if text is not None else None)
    elif as_json:
        print_json(findings, **extra)
    else:
        title = f"dsdoctor doctor · {config}" if config else "dsdoctor doctor · environment"
        print_report(findings, title=title, notes=notes)
    raise typer.Exit(exit_code(findings, fail_on))


def _positionals(args: list[Path], config: Path | None, fix: bool) -> tuple[Path | None, Path | None]:
    """`doctor ds.json`, `doctor ds.json --fix [OUT]`, and the older `doctor --config ds.json --fix [OUT]`."""
    if config is None and args:
        config = args.pop(0)
    if len(args) > 1:                   # --config and two more
        fail(f"unexpected arguments {' '.join(map(str, args))} (the config was given with --config)")
    out = args[0] if args else None
    if out is not None and not fix:
        fail(f"unexpected argument {out} (did you mean --fix {out}?)")
    return config, out


def _without_auto(cfg: Any) -> Any:
    """What DeepSpeed sees after the HF integration filled "auto": batch sizes 1, the rest defaults."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if v == "auto":
                if k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
                    out[k] = 1
                continue
            out[k] = _without_auto(v)
        return out
    return cfg


def _fit_problems(est: dict[str, Any], cfg: dict[str, Any] | None) -> list:
    """The config's own stage/offload row against the GPU: a Problem when it does not fit."""
    from ..config.problems import Problem
    from ..context import facts_from_config
    if cfg is None:
        return []
    f = facts_from_config(cfg)
    stage = f.get("zero_stage") or 0
    opt = f.get("offload_optimizer") or "none"
    par = f.get("offload_param") if stage == 3 else "none"
    if stage < 3 and opt == "nvme":
        opt = "cpu"                    # stage 1/2 treat nvme as CPU offload (stage_1_and_2.py:220-221)
    row = next((r for r in est["estimates"] if (r["stage"], r["offload_optimizer"], r["offload_param"])
                == (stage, opt, par or "none")), None)
    if row is None:
        return []
    out = [Problem("config_row", "zero_optimization", {"row": row})]
    if est.get("gpu_memory") and row["gpu_bytes"] > est["gpu_memory"]:
        best = est.get("cheapest")
        out.insert(0, Problem("model_states_exceed_gpu", "zero_optimization.stage", {
            "row": row, "needed": row["gpu_bytes"], "gpu_memory": est["gpu_memory"], "params": est["params"],
            "zero_stage": stage, "offload_optimizer": opt, "offload_param": par or "none",
            "best_stage": best and best["stage"], "best_offload_optimizer": best and best["offload_optimizer"],
            "best_offload_param": best and best["offload_param"],
            "patch": est.get("config_patch")}))
    return out


def _env_line(facts: dict[str, Any]) -> str:
    gpus = facts.get("gpus") or []
    gpu = (f"{len(gpus)} x {gpus[0].get('name')}" if gpus else
           f"no GPU ({facts.get('nvml_error') or 'NVML found none'})")
    ds = facts.get("ds_version") or f"not importable ({facts.get('ds_problem')})"
    return (f"Environment: Python {facts.get('python')} · torch {facts.get('torch_version') or 'missing'}"
            f" (CUDA {facts.get('torch_cuda') or 'none'}, NCCL {facts.get('torch_nccl') or 'none'})"
            f" · deepspeed {ds} · {gpu} · {facts.get('cpu_count')} CPUs")


def human(n: Any) -> str:
    from ..expr import human_bytes
    return human_bytes(n)


def _public(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if k != "cpu_needed_bytes"}


def _field_of(err: str | None) -> str:
    """DeepSpeed's pydantic message names the model, then the field: make a dotted key of it."""
    if not err:
        return "?"
    models = {"DeepSpeedZeroConfig": "zero_optimization", "DeepSpeedFP16Config": "fp16",
              "DeepSpeedBF16Config": "bf16", "CommsLoggerConfig": "comms_logger"}
    for model, section in models.items():
        if model in err:
            rest = err.split(model, 1)[1].split()
            return f"{section}.{rest[0]}" if rest else section
    return "ds_config"


def _first_patches(findings: list[Finding], skip: Finding | None = None) -> list[dict[str, Any]]:
    return [fx.config_patch for f in findings if f is not skip
            for fx in f.fixes[:1] if fx.config_patch]


def _validate_fixes(findings: list[Finding], cfg: dict[str, Any], ws: int | None) -> None:
    """Each fix: the config with this fix (and the first fix of every other finding) must be
    accepted by DeepSpeed's own parser. Other findings' problems would mask this one's effect."""
    cache: dict[str, tuple[bool | None, str | None]] = {}
    for f in findings:
        base = cfg
        for p in _first_patches(findings, skip=f):
            base = apply_patch(base, p)
        for fx in f.fixes:
            if not fx.config_patch:
                continue
            fx.diff = config_diff(cfg, apply_patch(cfg, fx.config_patch))
            cand = apply_patch(base, fx.config_patch)
            key = json.dumps(cand, sort_keys=True, default=str)
            if key not in cache:
                cache[key] = validate_with_deepspeed(cand, ws)
            fx.validated, fx.validation_error = cache[key]


def _write_fixed(cfg: dict[str, Any], findings: list[Finding], source: Path, out: Path | None,
                 ws: int | None, notes: list[str], quiet: bool, force: bool = False) -> Path | None:
    fixed = cfg
    for p in _first_patches(findings):
        fixed = apply_patch(fixed, p)
    if fixed == cfg:
        notes.append("--fix: nothing to change; no file written.")
        return None
    out = out or _fixed_name(source)
    try:
        written = write_config(fixed, out, source, force)
    except (ConfigError, OSError) as e:
        fail(str(e))
    ok, err = validate_with_deepspeed(fixed, ws)
    verdict = {True: "DeepSpeed's config parser accepts it.", False: f"DeepSpeed still rejects it: {err}",
               None: "not validated (deepspeed not importable)."}[ok]
    notes.append(f"--fix: corrected config written to {written} (the input was not modified); {verdict}")
    if not quiet:
        from rich.syntax import Syntax
        Console().print(Syntax(config_diff(cfg, fixed, source.name), "diff", theme="ansi_dark",
                               background_color="default"))
    return written


def _fixed_name(source: Path) -> Path:
    return source.with_name(f"{source.stem}.fixed.json")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
