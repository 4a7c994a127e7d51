"""Read a ds_config the way DeepSpeed does (hjson, duplicate keys refused), with errors that
say where: line and column, in one line."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError

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


class _QuoteParity:
    """Is a position outside a string (an even number of quotes before it on its line)?
    Asked for increasing positions, so it counts each character once: linear, where counting
    from the line start for every hit was quadratic on a long line full of hits."""

    def __init__(self, text: str):
        self.text, self.pos, self.line_start, self.quotes = text, 0, 0, 0

    def outside(self, index: int) -> bool:
        t = self.text
        nl = t.rfind("\n", self.pos, index)
        if nl >= 0:
            self.line_start, self.pos, self.quotes = nl + 1, nl + 1, 0
        self.quotes += t.count('"', self.pos, index)
        self.pos = index
        return self.quotes % 2 == 0


def parse_config_text(text: str, name: str = "ds_config.json") -> dict[str, Any]:
    """Parse; raise ConfigError with a one-line message (file:line:col: problem)."""
    if not text.strip():
        raise ConfigError(f"{name}: empty file")
    parity = _QuoteParity(text)
    for m in _UNDERSCORE_NUM.finditer(text):
        if parity.outside(m.start()):
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


MAX_CONFIG_BYTES = 8 << 20      # a ds_config is a few KiB; hjson is pure Python


def read_config(path: str | Path) -> tuple[dict[str, Any], str]:
    """(config, text). ConfigError for a missing file, a directory, a FIFO or device, a file
    too large to be a config, not UTF-8, bad syntax."""
    from ..safe_read import ReadError, read_regular_text
    p = Path(path)
    try:
        text = read_regular_text(p, MAX_CONFIG_BYTES, "ds_config JSON file")
    except ReadError as e:
        raise ConfigError(str(e)) from None
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
