"""`dsdoctor doctor [ds.json]`: check a ds_config and the environment before a run.

The checking is checkup.check_config (config lint + environment probe -> symptoms -> the
pipeline -> findings); this command parses arguments, writes --fix's file and prints, like
`dsdoctor analyze` (same JSON schema).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console

from ..config_io import ConfigError, check_output, write_config
from ..findings import Finding
from ..fixes import config_diff, fixed_config, validate_with_deepspeed
from ..report import exit_code, print_json, print_report
from . import ci_options as ci
from .common import fail
from .params import for_typer


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
    from ..checkup import check_config
    from ..env import probe
    facts = probe(cfg)
    est = None
    if params is not None:
        from ..estimate import EstimateError, estimate_memory
        try:
            est = estimate_memory(params, None, gpus_per_node or max(1, facts.get("gpu_count") or 1), nodes,
                                  gpu_memory, cpu_memory, config)
        except EstimateError as e:
            fail(str(e))
    checkup = check_config(cfg, text, str(config), rule_set=rules, world_size=world_size, estimate=est,
                           uses_hf=hf, facts=facts)
    findings, notes, extra = checkup.findings, checkup.notes, checkup.extra
    written = None
    if fix and cfg is not None:
        written = _write_fixed(cfg, findings, config, fix_out, checkup.world_size, notes, fmt != "text", force)
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


def _write_fixed(cfg: dict[str, Any], findings: list[Finding], source: Path, out: Path | None,
                 ws: int | None, notes: list[str], quiet: bool, force: bool = False) -> Path | None:
    fixed = fixed_config(cfg, findings)
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
    app.command("doctor")(for_typer(doctor))     # its CI options are commands/params.py's
