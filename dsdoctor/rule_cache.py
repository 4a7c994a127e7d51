"""Parsed rule files, cached on disk (`~/.cache/dsdoctor/rules`).

Every command reads the ~12 built-in rule files; their YAML (a token scan for aliases, then
libyaml) costs ~60 ms of each start-up, a fifth of an `analyze` of a small log. A parsed
file is stored as JSON under the hash of its text (and of the YAML library's version), so an
edited file is parsed again and its errors reported as before. Only documents JSON gives back
unchanged are stored (no dates, sets or non-string keys); any cache trouble just parses.

The same store keeps the checked rules (rules.py: checking ~190 rules parses ~1000
expressions with `ast`, another ~50 ms) under the hash of the text and of the checking code,
so only new or edited files are checked again, and their errors reported as on a first load.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from .digest import sha256_hex

FORMAT = "1"        # bump when what `parse` returns changes for the same text


def folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsdoctor" / "rules"


def _key(text: str, flavour: str) -> str:
    return sha256_hex(f"{FORMAT}\0{flavour}\0{text}".encode("utf-8", "surrogatepass"))[:32]


def parsed(text: str, parse: Callable[[str], Any], flavour: str = "") -> Any:
    """`parse(text)`, or the document cached for this exact text. `parse` raising (a bad
    file) is not cached and propagates."""
    key = _key(text, flavour)
    path = folder() / f"{key}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except Exception:            # not cached yet, unreadable, or damaged
        pass
    doc = parse(text)
    try:
        blob = json.dumps(doc)
        if json.loads(blob) == doc:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{key}.{os.getpid()}.tmp")
            tmp.write_text(blob, encoding="utf-8")
            os.replace(tmp, path)    # atomic: a concurrent reader sees a whole file or none
    except Exception:            # not JSON-shaped, read-only home, full disk: parse next time too
        pass
    return doc

