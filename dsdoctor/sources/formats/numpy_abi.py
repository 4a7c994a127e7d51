"""NumPy 2 refusing an extension module compiled against NumPy 1.x: an install problem, reported as env_error
'numpy_abi' (rules/environment.yaml log-env-numpy-abi).

Wording: numpy 2.x numpy/core/_multiarray_umath.py __getattr__ (the installed 2.4 keeps it): it writes 'A module
that was compiled using NumPy 1.x cannot be run in' / 'NumPy {version} as it may crash. ...' to stderr, then the
module's import fails ('AttributeError: _ARRAY_API not found', 'ImportError: numpy.core.multiarray failed to import').
"""
from __future__ import annotations

from ..lines import Line, StreamState
from ..recogniser import on


@on("A module that was compiled using NumPy 1.x cannot be run in")
def numpy_abi(line: Line, st: StreamState):
    if not st.once(("numpy_abi",)):
        return None                       # printed once per module that failed: one finding
    return line.event("env_error", error="numpy_abi", op=None, message=line.text.strip()[-300:])
