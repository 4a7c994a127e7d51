"""Read and write ds_config files the way DeepSpeed does (a path is parsed with hjson)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The config cannot be read. str() is one line."""


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a ds_config as DeepSpeed would (hjson), with one-line errors (file:line:col) and
    duplicate keys refused: the same reader as `dsdoctor doctor`."""
    from .config.loader import read_config
    return read_config(path)[0]


def write_config(cfg: dict[str, Any], out: str | Path, source: str | Path | None = None) -> Path:
    p = Path(out)
    if source is not None and p.resolve() == Path(source).resolve():
        raise ConfigError(f"{p}: refusing to overwrite the input config; choose another file")
    p.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return p
