"""Which node of a pdsh launch ended first, and with which ranks.

deepspeed/launcher/launch.py main logs, on every node, `global_rank_mapping=defaultdict(<class
'list'>, {'node1': [0], 'node2': [1]})` (host -> global ranks); pdsh prints
`pdsh@<here>: <host>: ssh exited with exit code <N>` for each node whose remote command
failed, in the order they ended (pdsh src/pdsh/dsh.c, _wait_for_child). A rank that dies
without a traceback (os._exit, a native abort, a killed ssh) leaves only these two lines; the
other nodes' ranks then fail in their next collective ('Connection reset by peer'), which is the echo.
"""
from __future__ import annotations

import ast
import re

from ..lines import Line, StreamState
from ..recogniser import on

_MAPPING = re.compile(r"global_rank_mapping=(?:defaultdict\(<class 'list'>, )?(\{[^}]*\})")
_PDSH_EXIT = re.compile(r"pdsh@\S+: (\S+): ssh exited with exit code (\d+)")
STALL_EXIT_CODE = 86          # dsdoctor's watchdog ended the run (live/watchdog.py): not a cause


@on("global_rank_mapping=")
def rank_mapping(line: Line, st: StreamState):
    m = _MAPPING.search(line.text)
    if not m:
        return None
    try:
        mapping = ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return None
    if isinstance(mapping, dict):
        st.scratch["multinode.ranks"] = {str(h): [int(r) for r in rs] for h, rs in mapping.items()}
    return None


@on(": ssh exited with exit code ")
def pdsh_exit(line: Line, st: StreamState):
    m = _PDSH_EXIT.search(line.text)
    if not m:
        return None
    node, code = m.group(1), int(m.group(2))
    if code == 0 or code == STALL_EXIT_CODE:
        return None
    order = int(st.scratch.get("multinode.exits", 0))
    st.scratch["multinode.exits"] = order + 1
    ranks = (st.scratch.get("multinode.ranks") or {}).get(node)
    return line.event("node_exit", node=node, exitcode=code, who="pdsh", ranks=ranks, first=order == 0)
