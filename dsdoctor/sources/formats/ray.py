"""Ray: what its driver prints when a task or actor fails (RLHF trainers such as OpenRLHF, Ray
Train's TorchTrainer), read so that the worker's own error stays the cause and its node is named.

Texts (Ray 2.x): ray/exceptions.py RayTaskError.__str__ (the worker's traceback under a head
'{proctitle}() (pid={pid}, ip={ip}, actor_id=..., repr=...)', raised in the driver as
'ray.exceptions.RayTaskError({Cause}): ray::Actor.method() (pid=.., ip=..)'), ActorDiedError ('The
actor died because of an error raised in its creation task, ...', 'The actor died unexpectedly before
finishing this task.' then '\\tpid: N' / '\\tip: X' and the worker's exit: 'Worker exit type: {type}
Worker exit detail: {detail}'); the raylet's messages (src/ray/raylet/node_manager.cc, worker_killing_policy,
memory_monitor): 'A worker died or was killed while executing a task by an unexpected system error. ...
Worker IP address: X ... Worker PID: N Worker exit type: SYSTEM_ERROR Worker exit detail: ...', 'N
Workers (tasks / actors) killed due to memory pressure (OOM), M Workers crashed due to other reasons at
node (ID: .., IP: X)', 'Task was killed due to the node running low on memory.' / 'Memory on the node
(IP: X, ID: ..) where the task (..., name=.., pid=N, memory used=..GB) was running was U GB / T GB
(f), which exceeds the memory usage threshold of h.'; the autoscaler's 'Warning: The following
resource request cannot be scheduled right now: {...}' (ray/autoscaler/_private/resource_demand_scheduler.py).
The worker prefixes '(Actor pid=N, ip=X) ' are read by sources/lines.py (the ip is the line's host).
"""
from __future__ import annotations

import re

from ...lazy_regex import compile_later
from ..lines import FROM_RECOGNISER, Line, StreamState, armed_within
from ..recogniser import on
from .traceback import RAY_SNIPPET, RAY_WRAPPED, frameless_exception

_TASK_ERROR = compile_later(r"^ray\.exceptions\.RayTaskError\((\w+)\): (.*?)\s*\(pid=(\d+), ip=([^,)\s]+)")
_WRAPPER_AT = compile_later(r"(ray::\S+?)(?:\(\))? \(pid=(\d+), ip=([^,)\s]+)")
_EXIT = compile_later(r"Worker exit type: (\w+) Worker exit detail: (.*)$")
_WORKER_IP = compile_later(r"Worker IP address: ([^\s]+)")
_WORKER_PID = compile_later(r"Worker PID: (\d+)")
_OOM_SUMMARY = compile_later(r"(\d+) Workers \(tasks / actors\) killed due to memory pressure \(OOM\), \d+ Workers "
                             r"crashed due to other reasons at node \(ID: \w+, IP: ([^)\s]+)\)")
_OOM_NODE = compile_later(r"Memory on the node \(IP: ([^,\s]+), ID: \w+\) where the task \((?:.*?name=([^,]+), )?"
                          r"pid=(\d+), memory used=([\d.]+)GB\) was running was ([\d.]+)GB / ([\d.]+)GB \([\d.]+\), "
                          r"which exceeds the memory usage threshold of (\d+(?:\.\d+)?)")
_GB = 1024 ** 3


@on("ray.exceptions.")
def ray_wrapper(line: Line, st: StreamState):
    """The driver's head of a worker's traceback: remember the worker's node for its exception
    below (traceback.exception_line reads it), and report the wrapper itself (a consequence:
    detect/families.py gives it weight 0) for a paste that stops here."""
    t = line.text
    m = _WRAPPER_AT.search(t)
    if m:
        st.scratch[RAY_WRAPPED] = (line.lineno, m.group(3))
    m = _TASK_ERROR.match(t.strip())
    if not m:
        return None
    st.frames.pop(line.rank, None)          # the worker's frames follow: the driver's are not theirs
    return frameless_exception(line, st, "ray.exceptions.RayTaskError", "RayTaskError",
                               f"{m.group(1)} raised in {m.group(2)} (pid={m.group(3)}, ip={m.group(4)})",
                               host=m.group(4), cause=m.group(1))


@on("\tip: ", "\tpid: ")
def ray_actor_fields(line: Line, st: StreamState) -> None:
    # ActorDiedError's fields ('\tpid: 2213', '\tip: 10.0.0.3') above its exit detail
    t = line.text.strip()
    if t.startswith("ip: "):
        st.scratch["ray.actor_ip"] = (line.lineno, t[4:].strip())
    elif t.startswith("pid: ") and t[5:].strip().isdecimal():
        st.scratch["ray.actor_pid"] = (line.lineno, int(t[5:].strip()))


def _near(st: StreamState, key: str, line: Line, within: int = 8):
    v = st.scratch.get(key)
    return v[1] if armed_within(v, line, within, same_line=True) else None


@on("Worker exit type: ")
def ray_worker_exit(line: Line, st: StreamState):
    """How a Ray worker process ended, as the raylet or ActorDiedError says: killed by Ray's
    memory monitor (NODE_OUT_OF_MEMORY), or dead without a Python error (SYSTEM_ERROR: SIGKILL,
    a segfault, `ray stop --force`)."""
    m = _EXIT.search(line.text)
    if not m:
        return None
    kind, detail = m.group(1), m.group(2).strip()
    ip = _WORKER_IP.search(line.text)
    host = ip.group(1) if ip else (line.host or _near(st, "ray.actor_ip", line))
    pid = _WORKER_PID.search(line.text)
    pid = int(pid.group(1)) if pid else _near(st, "ray.actor_pid", line)
    line = _as_worker(line, st, pid)
    if kind == "NODE_OUT_OF_MEMORY" or kind == "SYSTEM_ERROR" and _MEMORY_DETAIL.search(detail):
        return _memory_kill(line, st, host, pid)
    if kind == "SYSTEM_ERROR" and _NODE_DIED.search(line.text):
        return ray_node_died(line, st)
    if "because its owner has died" in line.text:
        return None       # an echo: the owner (the driver, a parent actor) failed first, in its own log
    if kind != "SYSTEM_ERROR" or not st.once(("ray.died", pid, host)):
        return None       # USER_ERROR and the intended exits: the worker's own traceback says why
    return frameless_exception(line, st, "Ray worker died (SYSTEM_ERROR)", "WorkerDied", detail,
                               host=host, pid=pid)


# What a death record says beyond SYSTEM_ERROR (ray/exceptions.py ActorDiedError appends the GCS's
# cause.error_message; raylet node_manager.cc / worker_killing_policy): the raylet killing the worker
# for memory ('Task was killed due to the node running low on memory.', '... killed due to memory
# pressure (OOM)', '... exceeds the memory usage threshold'), or the worker's node gone (the GCS
# 'The actor is dead because its node has died. Node Id: ...', the raylet 'GCS consider this node to
# be dead', 'marked dead because the detector has missed too many heartbeats'). The raylet's own
# 'Worker unexpectedly exits with a connection error code N ... There are some potential root causes.
# (1) ... OOM killer ... (2) ray stop --force ... (3) ... SIGSEGV' names no cause: it stays unexplained.
_MEMORY_DETAIL = compile_later(r"running low on memory|killed due to memory pressure|exceeds the memory usage threshold")
_NODE_DIED = compile_later(r"because its node has died|GCS consider this node to be dead|"
                           r"missed too many heartbeats|node was terminated unexpectedly")


@on("because its node has died", "GCS consider this node to be dead", "missed too many heartbeats",
    "node was terminated unexpectedly")
def ray_node_died(line: Line, st: StreamState):
    ip = _WORKER_IP.search(line.text) or _NODE_IP.search(line.text)
    host = ip.group(1) if ip else (line.host or _near(st, "ray.actor_ip", line))
    if not st.once(("ray.node_died", host)):
        return None
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=15, who="ray",
                      external=True, reason="node failure", node=host)


_NODE_IP = compile_later(r"\baddress: (\d{1,3}(?:\.\d{1,3}){3})\b")


def _memory_kill(line: Line, st: StreamState, host: str | None, pid: int | None, **facts):
    # one event per line kind (the raylet's count, the exit detail, the memory reading): the
    # evidence quotes each once
    if not st.once(("ray.oom", line.text[:24], host, pid)):
        return None
    return line.event("killed", step=st.step_of(line.rank), signal=9, exitcode=None, pid=pid,
                      who="ray_memory_monitor", memcg=None, host=host, first=True, **facts)


@on("killed due to memory pressure (OOM)")
def ray_oom_summary(line: Line, st: StreamState):
    m = _OOM_SUMMARY.search(line.text)
    if not m or int(m.group(1)) == 0:
        return None
    return _memory_kill(line, st, m.group(2), None)


@on("which exceeds the memory usage threshold of")
def ray_oom_node(line: Line, st: StreamState):
    m = _OOM_NODE.search(line.text)
    if not m:
        return None
    return _memory_kill(line, st, m.group(1), int(m.group(3)), what=m.group(2),
                        used=float(m.group(5)) * _GB, total=float(m.group(6)) * _GB, threshold=float(m.group(7)))


@on("cannot be scheduled right now")
def ray_unschedulable(line: Line, st: StreamState):
    # the autoscaler waiting for resources no node offers. Once is the normal wait for a node to
    # start; printed again with no training step in between, it is a run that cannot start: the
    # last words of such a run (detect/failure.py reads an error_line only when no progress followed)
    if "The following resource request cannot be scheduled right now" not in line.text:
        return None
    seen = st.scratch.get("ray.unschedulable")
    steps = dict(st.last_step)
    if seen is None or seen[1] != steps:
        st.scratch["ray.unschedulable"] = (1, steps)
        return None
    st.scratch["ray.unschedulable"] = (seen[0] + 1, steps)
    if seen[0] != 1:
        return None
    return line.event("error_line", step=st.step_of(line.rank), level="warning", message=line.text.strip()[:300])


# Ray 2.60's raylet (its binary's string '%d worker(s) were killed due to the node running low on
# memory. %s', the memory monitor's kill; older releases: 'Task was killed due to ...' above): the driver's
# 'ray.exceptions.OutOfMemoryError: 7 worker(s) were killed due to the node running low on memory.
# Memory on the node (IP: X, ID: ..) was 22.41GB used / 23.54GB limit (0.95)' (the same text in a
# worker's death record), then 'OOM kill reason: Memory usage NB exceeded threshold of NB (95.0% of NB
# limit)' and 'Ray killed N worker(s) based on the killing policy'
_OOM_KILLED_N = compile_later(r"(\d+) worker\(s\) were killed due to the node running low on memory\."
                              r"(?: Memory on the node \(IP: ([^,\s]+), ID: \w+\) was ([\d.]+)GB used / ([\d.]+)GB limit)?")


@on("were killed due to the node running low on memory")
def ray_oom_killed(line: Line, st: StreamState):
    m = _OOM_KILLED_N.search(line.text)
    if not m or int(m.group(1)) == 0:
        return None
    facts = {} if m.group(3) is None else {"used": float(m.group(3)) * _GB, "total": float(m.group(4)) * _GB}
    return _memory_kill(line, st, m.group(2) or line.host, None, **facts)


# the raylet's own count under its kill report, 'Ray killed 7 worker(s) based on the killing policy'
# (the wording of fixtures/excerpts/gen_m_ray_train_memory_monitor_kills_*.log, real Ray runs): the
# line a paste of the report's last lines still holds when the 'OutOfMemoryError' above it is cut
_KILLED_BY_POLICY = compile_later(r"\bRay killed (\d+) worker\(s\) based on the killing policy")


@on("worker(s) based on the killing policy")
def ray_killing_policy(line: Line, st: StreamState):
    m = _KILLED_BY_POLICY.search(line.text)
    if not m or int(m.group(1)) == 0:
        return None
    return _memory_kill(line, st, line.host, None)


# the report's last line, its advice: 'Refer to the documentation on how to address the out of memory
# issue: https://docs.ray.io/...' (the same runs): only Ray's memory monitor kill ends with it
@on("how to address the out of memory issue: https://docs.ray.io")
def ray_oom_advice(line: Line, st: StreamState):
    return _memory_kill(line, st, line.host, None)


# Ray Train's table of its workers (ray/train/v2/_internal/execution/worker_group/worker_group.py:
# WorkerGroup._start 'Started training worker group of size N: \n- (ip=X, pid=N) world_rank=R,
# local_rank=L, node_rank=K'; Ray Train v1 ray/train/_internal/backend_executor.py:
# BackendExecutor._create_rank_world_size_mappings '- (node_id=.., ip=X, pid=N) world_rank=R, ...').
# The driver prefixes each worker's line with its pid ('(RayTrainWorker pid=N) '): with this table a
# worker's line gets the worker's rank (sources/parse.py reads RAY_PID_RANK).
RAY_PID_RANK = "ray.pid_rank"
_WORKER_ROW = compile_later(r"^- \((?:node_id=\w+, )?ip=[^,)\s]+, pid=(\d+)\) world_rank=(\d+),")
# the prefix, also behind another one ('[pod/..] ', '> ', a colour code)
_PREFIX_PID = re.compile(r"\([\w.<>:-]+(?:\([^()]*\))? pid=(\d+)(?:, ip=[^)\s]+)?\)")


@on(") world_rank=")
def ray_worker_table(line: Line, st: StreamState) -> None:
    m = _WORKER_ROW.match(line.text.strip())
    if m:
        pids = st.scratch.setdefault(RAY_PID_RANK, {})
        if len(pids) < 100_000:
            pids[int(m.group(1))] = int(m.group(2))


def rank_of_worker(raw: str, pids: dict[int, int]) -> int | None:
    """The rank of the Ray Train worker whose pid prefixes `raw`, or None."""
    m = _PREFIX_PID.search(raw, 0, 160)
    return pids.get(int(m.group(1))) if m else None


def _as_worker(line: Line, st: StreamState, pid: int | None) -> Line:
    """`line` as said of the Ray Train worker with this pid (the raylet's 'Worker PID: N', an
    ActorDiedError's 'pid: N'): with that worker's rank when Ray Train's table named it."""
    rank = st.scratch.get(RAY_PID_RANK, {}).get(pid) if pid is not None and line.rank is None else None
    return line if rank is None else line.with_rank(rank, FROM_RECOGNISER)


# Ray Train v2's summary of a failed worker group (WorkerGroupError 'Training failed due to worker
# errors:', its body from ray/train/v2/_internal/execution/worker_group/poll.py: '[Rank {ranks} Error
# Snippet]:' above the error those ranks raised): the driver's copy of the traceback below it is that
# rank's (traceback.exception_line reads it). Several ranks with one error ('[Rank 0,1 ...'): none taken.
_SNIPPET = compile_later(r"\[Rank (\d+) Error Snippet\]:")


@on("Error Snippet]:")
def ray_error_snippet(line: Line, st: StreamState) -> None:
    m = _SNIPPET.search(line.text)
    if m:
        st.scratch[RAY_SNIPPET] = (line.lineno, int(m.group(1)))


# Ray Train v2's log of each report ('Reporting training result {N}: TrainingReport(...) from rank
# {world_rank}', ray/train/v2/_internal/execution/context.py: TrainContext._wait_then_report; its
# metrics are read by formats/hf.py): the rank of the worker that printed it. In a worker's own log
# file (/tmp/ray/session_*/logs/worker-*.err, no prefix) it is the only clue to that worker's rank: a
# rank head (formats/rank_head.py), lent to a rank-less finding of an input that names one rank.
@on("Reporting training result ")
def ray_report_rank(line: Line, st: StreamState):
    head, sep, rank = line.text.rstrip().rpartition(" from rank ")
    if not sep or not rank.isdecimal() or not head.startswith("Reporting training result "):
        return None
    if not st.once(("ray.report_rank", int(rank))):
        return None
    return line.event("rank_head", head_rank=int(rank), world_size=None, local=False, gpu=None)
