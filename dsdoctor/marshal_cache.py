"""A dict kept on disk with marshal, for the caches of compiled code (regex_cache.py's patterns,
dataclass_code.py's generated methods): `~/.cache/dsdoctor/<kind>/<key>.marshal`, the key a
digest of what makes the code valid (the Python build, a format number). Read once; a process's
new entries are merged into the file when it ends. Any trouble reads as an empty cache or skips
the write: the caller compiles again."""
from __future__ import annotations

import os
from pathlib import Path


def path_for(kind: str, key_text: str) -> Path:
    from .digest import sha256_hex
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "dsdoctor" / kind / f"{sha256_hex(key_text.encode())[:24]}.marshal"


def read(p: Path, max_entries: int | None = None) -> dict:
    """The cached dict; {} when missing, unreadable, damaged, or grown past max_entries (stale
    entries of code since changed pile up otherwise: start afresh)."""
    import marshal
    try:
        got = marshal.loads(p.read_bytes())
    except Exception:
        return {}
    if not isinstance(got, dict) or (max_entries is not None and len(got) >= max_entries):
        return {}
    return got


def save(p: Path, new: dict, max_entries: int | None = None) -> None:
    """Add `new` to the file (merged with what other processes wrote meanwhile; atomic: a
    concurrent reader sees a whole file or none)."""
    import marshal
    try:
        entries = read(p, max_entries)
        entries.update(new)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(entries))
        os.replace(tmp, p)
    except Exception:            # read-only home, full disk: compile next time too
        pass
