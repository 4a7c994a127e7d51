"""Read and write ds_config files the way DeepSpeed does (a path is parsed with hjson)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The config cannot be read. str() is one line."""


def load_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such file")
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, expected a ds_config JSON file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    if not text.strip():
        raise ConfigError(f"{p}: empty file")
    try:
        import hjson
        cfg = hjson.loads(text)
    except Exception as e:  # hjson raises HjsonDecodeError with line and column
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{p}: not valid JSON: {msg}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: a ds_config must be a JSON object, got {type(cfg).__name__}")
    return _plain(cfg)


def _plain(obj: Any) -> Any:
    """hjson returns OrderedDicts; plain dicts keep the key order and compare simply."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def write_config(cfg: dict[str, Any], out: str | Path, source: str | Path | None = None) -> Path:
    p = Path(out)
    if source is not None and p.resolve() == Path(source).resolve():
        raise ConfigError(f"{p}: refusing to overwrite the input config; choose another file")
    p.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return p
