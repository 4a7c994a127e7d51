"""Which node of a pdsh launch ended first, and with which ranks; which rank mpirun saw end first.

deepspeed/launcher/launch.py main logs, on every node, `global_rank_mapping=defaultdict(<class
'list'>, {'node1': [0], 'node2': [1]})` (host -> global ranks); pdsh prints
`pdsh@<here>: <host>: ssh exited with exit code <N>` for each node whose remote command
failed, in the order they ended (pdsh src/pdsh/dsh.c, _wait_for_child). A rank that dies
without a traceback (os._exit, a native abort, a killed ssh) leaves only these two lines; the
other nodes' ranks then fail in their next collective ('Connection reset by peer'), which is the echo.
"""
from __future__ import annotations

import ast

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on

_MAPPING = compile_later(r"global_rank_mapping=(?:defaultdict\(<class 'list'>, )?(\{[^}]*\})")
_PDSH_EXIT = compile_later(r"pdsh@\S+: (\S+): ssh exited with exit code (\d+)")
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
    # the autotuner's clean-up pdsh after each experiment (formats/launcher.py autotuning_experiment), not a node
    if code == 0 or code == STALL_EXIT_CODE or st.scratch.get("autotuning"):
        return None
    order = int(st.scratch.get("multinode.exits", 0))
    st.scratch["multinode.exits"] = order + 1
    ranks = (st.scratch.get("multinode.ranks") or {}).get(node)
    return line.event("node_exit", node=node, exitcode=code, who="pdsh", ranks=ranks, first=order == 0)


# Open MPI 4 mpirun names the first rank that failed (help-orterun.txt, printed by
# orte/tools/orterun through orte_show_help):
#   [orterun:non-zero-exit]  '%s detected that one or more processes exited with non-zero status,
#       thus causing / the job to be terminated. The first process to do so was: / (blank) /
#       "  Process name: %s" / "  Exit code:    %d"'  -- the name is [[jobid,job],rank], the
#       rank in MPI_COMM_WORLD, which deepspeed/comm/comm.py mpi_discovery makes the torch rank.
#   [orterun:proc-aborted-strsignal]  '%s noticed that process rank %lu with PID %lu on node %s
#       exited on signal %d (%s).'
_MPI_FIRST = "detected that one or more processes exited with non-zero status"
_MPI_NAME = compile_later(r"Process name:\s+\[\[\d+,\d+\],(\d+)\]")
_MPI_CODE = compile_later(r"Exit code:\s+(-?\d+)")
_MPI_SIGNAL = compile_later(r"noticed that process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+)")


@on(_MPI_FIRST)
def mpirun_first_exit(line: Line, st: StreamState):
    st.scratch["multinode.mpirun"] = {"rank": None}      # the next two lines name the process
    return None


@on("Process name: [[")
def mpirun_process_name(line: Line, st: StreamState):
    pending = st.scratch.get("multinode.mpirun")
    m = _MPI_NAME.search(line.text)
    if pending is not None and m and pending["rank"] is None:
        pending["rank"], pending["name"] = int(m.group(1)), m.group(0)
    return None


@on("Exit code:")
def mpirun_exit_code(line: Line, st: StreamState):
    pending = st.scratch.pop("multinode.mpirun", None)
    m = _MPI_CODE.search(line.text)
    if pending is None or pending["rank"] is None or not m:
        return None
    code = int(m.group(1))
    if code == 0 or code == STALL_EXIT_CODE:
        return None
    ev = line.event("node_exit", node=None, exitcode=code, who="mpirun", ranks=[pending["rank"]], first=True)
    ev.text = f"mpirun: the first process to exit with a non-zero status: {pending['name']}, {m.group(0)}"
    return ev


@on("exited on signal ")
def mpirun_signal(line: Line, st: StreamState):
    m = _MPI_SIGNAL.search(line.text)
    if not m:
        return None
    rank = int(m.group(1))
    return line.event("process_exit", step=st.step_of(rank), rank=rank, exitcode=None, signal=int(m.group(3)),
                      pid=None, who="mpirun", node=m.group(2))


# A rank that called MPI_Abort (mpi4py's `python -m mpi4py` does on an uncaught exception):
# Open MPI's help-mpi-api.txt [mpi-abort] 'MPI_ABORT was invoked on rank %d in communicator %s' /
# 'with errorcode %d.', then it kills every other rank.
_MPI_ABORT = compile_later(r"MPI_ABORT was invoked on rank (\d+) in communicator (\S+)")
_MPI_ABORT_CODE = compile_later(r"with errorcode (-?\d+)")


@on("MPI_ABORT was invoked on rank ")
def mpi_abort(line: Line, st: StreamState):
    m = _MPI_ABORT.search(line.text)
    if m:
        st.scratch["multinode.mpi_abort"] = (line.lineno, int(m.group(1)), m.group(0))
    return None


@on("with errorcode ")
def mpi_abort_code(line: Line, st: StreamState):
    pending = st.scratch.pop("multinode.mpi_abort", None)
    m = _MPI_ABORT_CODE.search(line.text)
    if not m or not armed_within(pending, line, 2, same_line=True) or not st.once(("mpi_abort", pending[1])):
        return None
    ev = line.event("node_exit", node=None, exitcode=int(m.group(1)), who="mpirun", ranks=[pending[1]], first=True)
    ev.text = f"{pending[2]} {m.group(0)}"
    return ev


# Slurm srun prints one line per node whose tasks failed, in the order they ended
# (src/srun/srun_job.c / launch plugin _handle_task_exit: 'srun: error: %s: task%s %s: Exited with
# exit code %d', or the signal's name instead of 'Exited ...'); the task id is SLURM_PROCID, the
# rank. The first line names the node and task that failed first; the others are its echo.
# (formats/launcher.py turns every such line into a process_exit as well.)
_SRUN_EXIT = compile_later(r"srun: error: (\S+): tasks? ([\d,-]+): (?:Exited with exit code (\d+))?")


def _task_ids(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        if a.isdigit() and (not b or b.isdigit()):
            out.extend(range(int(a), int(b or a) + 1)[:1024 - len(out)])
    return out


@on("srun: error: ")
def srun_first_exit(line: Line, st: StreamState):
    m = _SRUN_EXIT.search(line.text)
    if not m:
        return None
    order = int(st.scratch.get("multinode.srun_exits", 0))
    st.scratch["multinode.srun_exits"] = order + 1
    if order or m.group(3) is None:           # not the first, or a signal: the failure rules take it
        return None
    code = int(m.group(3))
    if code == 0 or code == STALL_EXIT_CODE:
        return None
    return line.event("node_exit", node=m.group(1), exitcode=code, who="slurm", ranks=_task_ids(m.group(2)),
                      first=True)
