"""torch.compile giving up on a function: TorchDynamo's recompile limit.

Every new input shape (or other guard failure) makes Dynamo compile the function again; after
`recompile_limit` (8; `cache_size_limit` before torch 2.6) compilations of one code object it
warns once and runs that function uncompiled from then on, the compile time already spent. Run
here (torch 2.13, a width that changes every step): torch/_dynamo/convert_frame.py

    torch._dynamo hit config.recompile_limit (8)
       function: '<lambda>' (/home/u/train.py:6)
       last reason: 0/7: tensor 'x' size mismatch at index 1. expected 23, actual 24
    To log all recompilation reasons, use TORCH_LOGS="recompiles".

(one log.warning: every line carries the logger's head). Reported as env_error 'recompile_limit'
on its 'last reason' line, with the limit and the function from the lines before it.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on

_HIT = compile_later(r"torch\._dynamo hit config\.(\w+) \((\d+)\)")
_FUNCTION = compile_later(r"\bfunction: (.+?)\s*$")
_REASON = compile_later(r"\blast reason: (.+?)\s*$")


@on("torch._dynamo hit config.")
def recompile_limit_hit(line: Line, st: StreamState):
    m = _HIT.search(line.text)
    if m:
        st.scratch["dynamo.limit"] = (line.lineno, m.group(1), int(m.group(2)), None)
    return None


@on("   function: ")
def recompile_limit_function(line: Line, st: StreamState):
    hit = st.scratch.get("dynamo.limit")
    if armed_within(hit, line, 2, same_line=True) and (m := _FUNCTION.search(line.text)):
        st.scratch["dynamo.limit"] = hit[:3] + (m.group(1),)
    return None


@on("   last reason: ")
def recompile_limit_reason(line: Line, st: StreamState):
    hit = st.scratch.pop("dynamo.limit", None)
    if not armed_within(hit, line, 3, same_line=True) or not (m := _REASON.search(line.text)):
        return None
    _, limit_type, limit, function = hit
    if not st.once(("recompile_limit", function, line.rank)):
        return None
    return line.event("env_error", error="recompile_limit", op=None, limit_type=limit_type, limit=limit,
                      function=function, reason=m.group(1)[:300])
