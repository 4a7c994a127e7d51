"""Recogniser: DeepSpeed's comms logger summary with its straggler breakdown.

`deepspeed.comm.log_summary(show_straggler=True)` with `"comms_logger": {"enabled": true}` has rank 0
print (deepspeed/utils/comms_logging.py CommsLogger.log_all):

    Breakdown with straggler effect
    -------------------------------
    Comm. Op            Message Size        Count               Total comm lat(ms)  Total straggler(ms) ...
    all_reduce
                        5.01 MB             50                  32650.19            664473.62           649.62 ...

per op and message size: the count, the latency summed over the calls with each call's minimum across
the ranks (the collective's own time), rank 0's latency above that minimum (its wait for the last rank:
'straggler'), and their trimmed means. A row is one `comm_straggler` event. The op names stand alone on
their lines; they are read only inside the armed table (the ops deepspeed/comm/comm.py times).
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on

_KEY = "comms_straggler_table"
# (the two averages may be wrapped onto the next line by a terminal or an issue's width: the sums are enough)
_ROW = compile_later(r"^\s*(\d+(?:\.\d+)?\s?[KMGTPEZY]?B)\s+(\d+)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)"
                     r"(?:\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?))?\s*$")
_OP = compile_later(r"^\s*([a-z_]*(?:all_reduce|all_gather|reduce_scatter|broadcast|all_to_all|barrier)[a-z_]*)\s*$")
_TABLE_LINES = 200          # an op count well above what DeepSpeed times


@on("Total straggler(ms)")
def straggler_header(line: Line, st: StreamState):
    st.scratch[_KEY] = {"last": line.lineno, "first": line.lineno, "op": None}
    return None


# rows: the message size padded to 20 columns ('5.01 MB' and spaces); op names: the op alone on its line
@on("B    ", "all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "barrier")
def straggler_row(line: Line, st: StreamState):
    tab = st.scratch.get(_KEY)
    if tab is None:
        return None
    if not armed_within(tab["last"], line, 2) or line.lineno - tab["first"] > _TABLE_LINES:
        st.scratch.pop(_KEY, None)
        return None
    text = line.text
    m = _ROW.match(text)
    if m is None:
        m = _OP.match(text)
        if m is None:
            st.scratch.pop(_KEY, None)
            return None
        tab["op"], tab["last"] = m.group(1), line.lineno
        return None
    tab["last"] = line.lineno
    if tab["op"] is None:
        return None
    # log_summary prints on rank 0 only
    ev = line.event("comm_straggler", step=st.step_of(line.rank), rank=0 if line.rank is None else line.rank, op=tab["op"], size=m.group(1),
                      count=int(m.group(2)), comm_ms=float(m.group(3)), straggler_ms=float(m.group(4)),
                      avg_comm_ms=float(m.group(5) or "nan"), avg_straggler_ms=float(m.group(6) or "nan"))
    ev.text = f"{tab['op']}: {text.strip()}"      # the op's name is on its own line above
    return ev
