"""Output formats for CI and editors, besides report.py's rich text and JSON:

- sarif.py  — SARIF 2.1.0 (GitHub code scanning, editors' SARIF viewers)
- github.py — GitHub Actions workflow commands (`::error file=...,line=...::msg`)

Both point at a file and line: a config finding at its key in the ds_config (located in the
text by config/positions.py), a log finding at its first line of evidence.
"""
from __future__ import annotations

from pathlib import Path

from ..config.positions import key_position
from ..findings import Finding

FORMATS = ("text", "json", "sarif", "github")


def file_uri(source: str, base: Path | None = None) -> str | None:
    """A URI reference for an evidence source that is a file: relative to `base` (the current
    folder) with forward slashes when inside it, else an absolute file:// URI. None for what
    is not a file (stdin, a live run)."""
    p = Path(source)
    try:
        if not p.is_file():
            return None
        p = p.resolve()
    except OSError:
        return None
    base = (base or Path.cwd()).resolve()
    try:
        from urllib.parse import quote
        return quote(p.relative_to(base).as_posix())
    except ValueError:
        return p.as_uri()


def relative_path(source: str, base: Path | None = None) -> str | None:
    """A plain path for GitHub annotations: relative to `base` when inside it."""
    p = Path(source)
    if not p.is_file():
        return None
    base = (base or Path.cwd()).resolve()
    try:
        return p.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(p.resolve())


def locations(f: Finding, texts: dict[str, str] | None = None) -> list[tuple[str, int | None, int | None, str]]:
    """(source, line, column, text) for each place a finding points at, the primary one first.
    A config finding whose file text is known points at its key, with the column."""
    out: list[tuple[str, int | None, int | None, str]] = []
    texts = texts or {}
    for e in f.evidence:
        line, col = e.line, None
        if f.key and e.source in texts:
            hit = key_position(texts[e.source], f.key)
            if hit:
                line, col = hit[0], hit[1]
        out.append((e.source, line, col, e.text))
    if not out and f.key and f.category == "config_error":   # a key the config lacks: its parent
        for src, text in texts.items():
            hit = key_position(text, f.key)
            out.append((src, hit[0] if hit else 1, hit[1] if hit else 1, f'"{f.key}" is not set'))
            break
    return out


def message(f: Finding) -> str:
    """Plain text: what, why, and the first fix with its config patch."""
    import json
    parts = [f"{f.title}. {f.summary}"]
    if f.consequence_of:
        parts.append(f"(Likely a consequence of {f.consequence_of}.)")
    for fx in f.fixes[:1]:
        fix = f"Fix: {fx.title}"
        if fx.config_patch:
            fix += f" ds_config patch: {json.dumps(fx.config_patch, separators=(', ', ': '))}"
        if fx.env:
            fix += " env: " + " ".join(f"{k}={v}" for k, v in fx.env.items())
        parts.append(fix)
    return "\n".join(parts)
