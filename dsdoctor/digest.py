"""SHA-256 for the on-disk cache keys (rule_cache.py, sources/scanner.py: _compiled) without
`hashlib`: importing it loads OpenSSL's libcrypto, ~3 ms of every start-up, for a few
kilobytes hashed. CPython's own SHA-256 module (the one hashlib falls back to) gives the same
digests; hashlib is used where that module is not there."""
from __future__ import annotations

try:                                  # CPython 3.12+
    from _sha2 import sha256 as _sha256
except ImportError:
    try:                              # CPython 3.10, 3.11
        from _sha256 import sha256 as _sha256
    except ImportError:               # another Python
        from hashlib import sha256 as _sha256


def sha256_hex(data: bytes) -> str:
    return _sha256(data).hexdigest()
