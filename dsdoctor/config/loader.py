"""Read a ds_config the way DeepSpeed does (hjson, duplicate keys refused), with errors that
say where: line and column, in one line."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ..config_io import ConfigError

# 500_000_000: a Python literal, not JSON (hjson then fails with a confusing "Bad key name")
_UNDERSCORE_NUM = re.compile(r'(?<![\w."\'])(\d{1,3}(?:_\d+)+)(?![\w"\'])')


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _pos(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def _outside_strings(text: str, index: int) -> bool:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count('"', line_start, index) % 2 == 0


def parse_config_text(text: str, name: str = "ds_config.json") -> dict[str, Any]:
    """Parse; raise ConfigError with a one-line message (file:line:col: problem)."""
    if not text.strip():
        raise ConfigError(f"{name}: empty file")
    for m in _UNDERSCORE_NUM.finditer(text):
        if _outside_strings(text, m.start()):
            line, col = _pos(text, m.start())
            raise ConfigError(f"{name}:{line}:{col}: {m.group(1)} is a Python literal, not JSON "
                              f"(DeepSpeed's hjson parser fails on it): write {m.group(1).replace('_', '')}")
    import hjson
    try:
        cfg = hjson.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as d:
        hits = [m.start() for m in re.finditer(re.escape(f'"{d.key}"'), text)]
        where = ":%d:%d" % _pos(text, hits[1]) if len(hits) > 1 else ""
        raise ConfigError(f"{name}{where}: duplicate key {d.key!r} (DeepSpeed refuses duplicate keys; "
                          f"JSON would silently keep the last one)") from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply") from None
    except OverflowError:    # hjson turns 1e999 into inf and then fails converting it
        m = re.search(r"\d(?:\.\d*)?[eE]\+?\d{3,}", text)
        where = ":%d:%d" % _pos(text, m.start()) if m else ""
        raise ConfigError(f"{name}{where}: number too large ({m.group(0) if m else 'overflow'}); "
                          f"DeepSpeed cannot use it") from None
    except Exception as e:   # HjsonDecodeError: "msg: line L column C (char N)"
        lineno, colno = getattr(e, "lineno", None), getattr(e, "colno", None)
        msg = getattr(e, "msg", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        where = f":{lineno}:{colno}" if lineno else ""
        raise ConfigError(f"{name}{where}: not valid JSON: {msg}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{name}: a ds_config must be a JSON object, got {type(cfg).__name__}")
    bad = _non_finite(cfg)
    if bad:
        hits = [m.start() for m in re.finditer(re.escape(f'"{bad.rsplit(".", 1)[-1]}"'), text)]
        where = ":%d:%d" % _pos(text, hits[0]) if hits else ""
        raise ConfigError(f"{name}{where}: the number for {bad!r} is too large or not a number "
                          f"(DeepSpeed cannot use inf/nan)")
    return _plain(cfg)


def _non_finite(obj: Any, path: str = "") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "<value>"
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = _non_finite(v, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            hit = _non_finite(v, f"{path}[{i}]")
            if hit:
                return hit
    return None


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def read_config(path: str | Path) -> tuple[dict[str, Any], str]:
    """(config, text). ConfigError for a missing file, a directory, not UTF-8, bad syntax."""
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
    return parse_config_text(text, str(p)), text


def key_line(text: str | None, dotted: str) -> int | None:
    """Line of a dotted key in the file text (each segment searched after its parent)."""
    if not text:
        return None
    pos, found = 0, None
    for seg in dotted.split("."):
        m = re.compile(r'"%s"\s*:' % re.escape(seg)).search(text, pos)
        if m is None:
            return found
        pos, found = m.end(), text.count("\n", 0, m.start()) + 1
    return found
