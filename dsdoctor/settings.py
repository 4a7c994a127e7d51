"""Project settings for CI: `[tool.dsdoctor]` in pyproject.toml, or a dsdoctor.toml.

Found like ruff finds its configuration: from the current directory upward, the first folder
with a `dsdoctor.toml` (its top level, or its own `[tool.dsdoctor]` table) or a
`pyproject.toml` that has a `[tool.dsdoctor]` table wins; a pyproject.toml without the table
is passed over. Keys (all optional):

    select = ["oom", "nan-loss-*"]     # rule ids: prefix or glob, or a category name
    ignore = ["env-"]
    rules-dir = ["ci/dsdoctor-rules"]  # extra rule folders, added to the built-in rules;
                                       # relative to the settings file
    fail-on = "error"                  # info | warning | error | never

Command-line options win: `--select` replaces the file's `select`, `--ignore` and
`--rules-dir` add to the file's lists, `--fail-on` replaces `fail-on`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


FAIL_ON = ("info", "warning", "error", "never")
_KEYS = {"select", "ignore", "rules-dir", "fail-on"}


class SettingsError(ValueError):
    """A settings file is unusable. str() is one line: file: problem."""


@dataclass
class Settings:
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    rules_dirs: list[Path] = field(default_factory=list)
    fail_on: str | None = None
    file: Path | None = None            # where they came from (None: defaults)


def _toml() -> Any:
    """The TOML parser, imported when a settings file is found (~2 ms of every start-up)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:                              # Python 3.10: the same parser, from PyPI
        import tomli as tomllib
    return tomllib


def _table(path: Path) -> dict[str, Any] | None:
    tomllib = _toml()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{path}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML: {e}") from None
    tool = doc.get("tool", {}).get("dsdoctor") if isinstance(doc.get("tool"), dict) else None
    if path.name == "pyproject.toml":
        return tool
    return tool if tool is not None else {k: v for k, v in doc.items() if k != "tool"}


def find_settings_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("dsdoctor.toml", "pyproject.toml"):
            p = folder / name
            if p.is_file():
                table = _table(p)
                if table is not None:
                    return p, table
    return None


def _names(value: Any, key: str, path: Path) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"{path}: '{key}' must be a list of strings")
    return list(value)


def load_settings(start: Path | None = None) -> Settings:
    found = find_settings_file(start)
    if found is None:
        return Settings()
    path, t = found
    unknown = set(t) - _KEYS
    if unknown:
        raise SettingsError(f"{path}: unknown dsdoctor setting(s): {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(_KEYS))})")
    s = Settings(file=path)
    if "select" in t:
        s.select = _names(t["select"], "select", path)
    if "ignore" in t:
        s.ignore = _names(t["ignore"], "ignore", path)
    if "rules-dir" in t:
        s.rules_dirs = [path.parent / d for d in _names(t["rules-dir"], "rules-dir", path)]
    if "fail-on" in t:
        if t["fail-on"] not in FAIL_ON:
            raise SettingsError(f"{path}: 'fail-on' must be one of {', '.join(FAIL_ON)}, got {t['fail-on']!r}")
        s.fail_on = t["fail-on"]
    return s
