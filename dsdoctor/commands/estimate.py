"""`dsdoctor estimate`: which ZeRO stage / offload fits, from DeepSpeed's own memory estimators."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..expr import human_bytes
from .common import fail


def estimate(
    params: str = typer.Option(..., "--params", help="Parameter count (7e9, 7B, 350M) or a Hugging Face config.json."),
    largest_layer_params: Optional[str] = typer.Option(None, "--largest-layer-params", help="Largest layer's params (ZeRO-3). Default: 10% of --params."),
    gpus_per_node: int = typer.Option(1, "--gpus-per-node", min=1, max=1024),
    nodes: int = typer.Option(1, "--nodes", min=1, max=1 << 20),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="Per-GPU memory, e.g. 80GiB (default: NVML)."),
    cpu_memory: Optional[str] = typer.Option(None, "--cpu-memory", help="Host memory per node, e.g. 1TiB (default: this host)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="ds_config: micro-batch for activations; the fix is shown as a diff."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1, max=1 << 24),
    hidden: Optional[int] = typer.Option(None, "--hidden", min=1, max=1 << 24),
    layers: Optional[int] = typer.Option(None, "--layers", min=1, max=1 << 20),
    heads: Optional[int] = typer.Option(None, "--heads", min=1, max=1 << 20),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", min=1, max=1 << 24),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Model-state memory per GPU and per node for ZeRO 0-3 and each offload choice."""
    from ..estimate import EstimateError, estimate_memory
    try:
        doc = estimate_memory(params, largest_layer_params, gpus_per_node, nodes, gpu_memory, cpu_memory, config,
                              seq_len, hidden, layers, heads, micro_batch)
    except EstimateError as e:
        fail(str(e))
    if as_json:
        print(json.dumps({k: v for k, v in doc.items() if not k.startswith("_")}, indent=2))
    else:
        print_estimate(doc, Console())
    raise typer.Exit(0 if doc["cheapest"] is not None or doc["gpu_memory"] is None else 1)


def print_estimate(doc: dict[str, Any], con: Console) -> None:
    t = Table(title=f"{doc['params'] / 1e9:.2f}B params · {doc['nodes']} node(s) x {doc['gpus_per_node']} GPU(s)")
    for col in ("stage", "offload_optimizer", "offload_param", "per GPU", "per node (CPU)", "fits"):
        t.add_column(col)
    for r in doc["estimates"]:
        fits = {True: "[green]yes[/]", False: "[red]no[/]", None: "?"}[r["fits"]]
        t.add_row(str(r["stage"]), r["offload_optimizer"], r["offload_param"], human_bytes(r["gpu_bytes"]),
                  human_bytes(r["cpu_bytes"]) if r["cpu_bytes"] is not None else "n/a", fits)
    con.print(t)
    if doc["gpu_memory"]:
        con.print(f"GPU memory {human_bytes(doc['gpu_memory'])} ({doc['gpu_memory_source']}); "
                  f"host memory {human_bytes(doc['cpu_memory'])} ({doc['cpu_memory_source']}).")
    else:
        con.print("No GPU memory known (no NVML GPU): pass --gpu-memory 80GiB to check the fit.")
    if doc["cheapest"]:
        c = doc["cheapest"]
        con.print(f"[bold green]Cheapest that fits:[/] ZeRO stage {c['stage']}, offload_optimizer={c['offload_optimizer']}, "
                  f"offload_param={c['offload_param']}")
        cfg = doc.get("_config")
        if cfg is not None:
            from ..fixes import apply_patch, config_diff
            con.print(config_diff(cfg, apply_patch(cfg, doc["config_patch"])) or "(your config already has this)")
        else:
            con.print(json.dumps(doc["config_patch"], indent=2))
    elif doc["gpu_memory"]:
        con.print("[bold red]Nothing fits[/]: add GPUs or nodes (the states are sharded), or use NVMe offload.")
    for n in doc["notes"]:
        con.print(n, style="dim")


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate)
