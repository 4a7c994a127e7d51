"""How ranks ended: the DeepSpeed launcher, torchrun/torchelastic, pdsh, Slurm, the shell and
the kernel's OOM killer (-> `killed`), and shared-memory failures: DataLoader bus errors,
/dev/shm full (-> `shm_error`).

Templates: torch/distributed/elastic/multiprocessing/errors/__init__.py: ChildFailedError and
agent/server/api.py (torchelastic), deepspeed/launcher/launch.py: main (`{cmd} exits with return
code = {code}`), pdsh's 'exited with exit code', Linux mm/oom_kill.c: oom_kill_process;
DataLoader texts from libtorch_python (torch/csrc/DataLoader.cpp, compiled in).
A signal is reported once per pid: torchelastic prints the same death three times.
"""
from __future__ import annotations

from ...events import Event
from ...lazy_regex import compile_later
from ..lines import FROM_FILE, FROM_RECOGNISER, WORN, Line, StreamState, utc_seconds
from ..recogniser import on


def _killed(line: Line, st: StreamState, code: int, who: str, pid: int | None = None, rank: int | None = None,
            **extra):
    """A rank that exited with `code` (negative: killed by signal -code)."""
    if code == 0:
        return None
    if code > 0:
        # most often a Python exception, whose traceback says more than the exit code; the exit
        # line is still the evidence of a failed run when that traceback is elsewhere
        if pid is not None and not st.once(("exit", pid, rank)):
            return None
        extra.pop("memcg", None)
        return line.event("process_exit", step=st.step_of(rank if rank is not None else line.rank), rank=rank,
                          exitcode=code, signal=None, pid=pid, who=who, **extra)
    sig = -code
    # once per pid; again only when a later line names the rank (torchrun's summary after its agent line)
    if pid is not None and not st.once(("pid", pid, rank)):
        return None
    if pid is not None and rank is not None:
        st.once(("pid", pid, None))
    order = st.scratch.get("launcher.kills", 0)
    st.scratch["launcher.kills"] = order + 1
    extra.setdefault("memcg", None)
    return line.event("killed", step=st.step_of(rank if rank is not None else line.rank), rank=rank,
                      signal=sig, exitcode=code, pid=pid, who=who, first=order == 0, **extra)


# The same event for the other readers of how a process ended (exit_reports.py: shells, containers,
# IDEs, torch.multiprocessing.spawn)
process_ended = _killed


# Windows ends a process that crashed in native code with the exception's code as its exit code: 0xC0000005,
# EXCEPTION_ACCESS_VIOLATION, its segmentation fault (CPython Lib/test/test_faulthandler.py
# test_disable_windows_exc_handler: exitcode == 0xC0000005), printed signed by most programs (an IDE's
# 'Process finished with exit code -1073741819 (0xC0000005)') and unsigned by Python's subprocess there
# (DeepSpeed's launcher: 'exits with return code = 3221225477')
_WINDOWS_CRASH = {0xC0000005: (11, "an access violation (Windows 0xC0000005, its segmentation fault)")}


def windows_crash(code: int) -> tuple[int, str] | None:
    """(signal, name) of a Windows crash exit code, signed or unsigned; None for any other code."""
    return _WINDOWS_CRASH.get(code & 0xFFFFFFFF) if code < 0 or code > 0xFFFF else None


def windows_crash_event(line: Line, st: StreamState, code: int, who: str, **extra):
    sig, name = _WINDOWS_CRASH[code & 0xFFFFFFFF]
    return line.event("process_exit", step=st.step_of(extra.get("rank", line.rank)), exitcode=code, signal=sig,
                      signal_name=name, who=who, **extra)


# ---------------------------------------------------------------- DeepSpeed launcher (launch.py)
_DS_RC = compile_later(r"exits with return code = (-?\d+)")
_LOCAL_RANK = compile_later(r"--local_rank=(\d+)")


@on("exits with return code = ")
def deepspeed_launcher(line: Line, st: StreamState):
    m = _DS_RC.search(line.text)
    if not m:
        return None
    code = int(m.group(1))
    if code == 0:
        return None
    st.scratch["launcher.ended"] = (line.host,)   # its launch is over: its node's next launcher start is a relaunch
    lr = _LOCAL_RANK.search(line.text)
    local = int(lr.group(1)) if lr else None
    node = st.scratch.get("launcher.node", {}).get(line.host)
    if node and node[1] > 1 and local == node[1] - 1:
        # '{cmd}' is launch.py's variable of its spawn loop: the LAST rank it started, whichever rank
        # failed (deepspeed/launcher/launch.py main, 0.19): the last local rank names none of them
        local = None
    rank = _global_rank(st, line.host, local)
    if windows_crash(code):
        return windows_crash_event(line, st, code, "launcher", rank=rank if rank is not None else st.rank_hint,
                                   local_rank=local)
    ev = _killed(line, st, code, "launcher", rank=rank, local_rank=local)
    if ev is not None and rank is None:
        _as_launchers(ev, line, st)
    return ev


def _as_launchers(ev: Event, line: Line, st: StreamState) -> Event:
    """`ev` of a launcher's own line that names no rank: the launcher is no rank, so a line prefix's
    rank (srun's task label is the node's launcher, a pasted '[rank3]: ') names none of its ranks; the
    input's own (a file named rank1.log) is kept (Line.launcher_rank)."""
    if line.rank_from in WORN:
        ev.rank = st.rank_hint
        ev.rank_from = FROM_FILE if st.rank_hint is not None else None
    return ev


def _global_rank(st: StreamState, host: str | None, local: int | None) -> int | None:
    """The global rank of a local rank of the DeepSpeed launcher on `host`, from its 'nnodes=N,
    num_local_procs=K, node_rank=M' line (launch.py numbers ranks node by node, K per node)."""
    node = st.scratch.get("launcher.node", {}).get(host)
    return node[0] * node[1] + local if node and local is not None and local < node[1] else None


# launch.py main: 'process {pid} spawned with command: [..., '--local_rank=N', ...]' (which rank a pid is) and,
# when a rank returns 0, 'Process {pid} exits successfully.' while the others may still run: a rank that
# left before the others (fewer batches, an early return) leaves them waiting in their next collective
_DS_SPAWNED = compile_later(r"process (\d+) spawned with command: .*--local_rank=(\d+)")
_DS_DONE = compile_later(r"Process (\d+) exits successfully\.")


@on("spawned with command: ")
def deepspeed_launcher_spawned(line: Line, st: StreamState):
    m = _DS_SPAWNED.search(line.text)
    if m:
        pids = st.scratch.setdefault("launcher.pids", {})
        if len(pids) < 4096:
            pids[(line.host, int(m.group(1)))] = int(m.group(2))
    return None


@on("exits successfully.")
def deepspeed_launcher_rank_done(line: Line, st: StreamState):
    m = _DS_DONE.search(line.text)
    if not m:
        return None
    pid = int(m.group(1))
    pids = st.scratch.get("launcher.pids", {})
    local = pids.get((line.host, pid))
    return line.event("rank_done", step=st.step_of(line.rank), rank=_global_rank(st, line.host, local), pid=pid,
                      local_rank=local,
                      spawned=sum(1 for h, _ in pids if h == line.host) or None, who="launcher")


# launch.py main: 'nnodes={n}, num_local_procs={k}, node_rank={r}' (v0.9.0+) and, in every version,
# 'WORLD INFO DICT: {world_info}' (one key per host): the node's place, so that the local rank of
# 'exits with return code' is a global rank (launch.py numbers ranks node by node, k per node)
_NODE = compile_later(r"nnodes=(\d+), num_local_procs=(\d+), node_rank=(\d+)")
_ONE_HOST = compile_later(r"WORLD INFO DICT: \{'[^']+': \[([\d, ]+)\]\}\s*$")


@on("num_local_procs=", "WORLD INFO DICT: ")
def deepspeed_launcher_node(line: Line, st: StreamState):
    nodes = st.scratch.setdefault("launcher.node", {})
    m = _NODE.search(line.text)
    if m and int(m.group(3)) < int(m.group(1)):
        nodes[line.host] = (int(m.group(3)), int(m.group(2)))
        return None
    m = _ONE_HOST.search(line.text)
    if m and line.host not in nodes:           # one host: local ranks are the global ranks
        nodes[line.host] = (0, len(m.group(1).split(",")))
    return None


# launch.py main: 'dist_world_size={n}' (every node's launcher, once): the job's world size
_DIST_WS = compile_later(r"\bdist_world_size=(\d+)\s*$")


@on("dist_world_size=")
def deepspeed_launcher_world_size(line: Line, st: StreamState):
    m = _DIST_WS.search(line.text)
    if not m or int(m.group(1)) < 1 or not st.once(("dist_world_size", m.group(1))):
        return None
    return line.event("context", world_size=int(m.group(1)))


# ---------------------------------------------------------------- torchelastic (elastic/)
_TE_RANK = compile_later(r"^\s*rank\s*: (\d+) \(local_rank: (\d+)\)")
_TE_HOST = compile_later(r"^\s*host\s*: (\S+)")
_TE_EXIT = compile_later(r"^\s*exitcode\s*: (-?\d+) \(pid: (\d+)\)(?:\s+\((SIG\w+)\))?")
_TE_SIGNAL = compile_later(r"Signal (\d+) \((SIG\w+)\) received by PID (\d+)")
_TE_FAILED = compile_later(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+) \(pid: (\d+)\)")


@on("Root Cause (first observed failure)", "Root Cause:", "Failures:")
def elastic_section(line: Line, st: StreamState):
    # 1.10+: "Failures:" (the ranks stopped after the root cause) then "Root Cause (first observed
    # failure):"; 1.9: "Root Cause:" then "Other Failures:"
    t = line.text.strip()
    if t.startswith("Root Cause"):
        st.scratch["elastic.root"] = True
        st.scratch["launcher.ended"] = (line.host,)   # torchrun's summary is its last word on a launch
    elif t in ("Failures:", "Other Failures:"):
        st.scratch["elastic.root"] = False
    return None


@on("<NO_OTHER_FAILURES>")
def elastic_no_other_failures(line: Line, st: StreamState):
    # errors/__init__.py ChildFailedError.format_msg: no worker of this agent failed but the root cause's
    st.scratch["elastic.alone"] = True
    return None


@on("(local_rank: ", "host      : ")
def elastic_rank(line: Line, st: StreamState):
    m = _TE_RANK.match(line.text)
    if m:
        st.scratch["elastic.rank"] = (int(m.group(1)), int(m.group(2)))
        return None
    m = _TE_HOST.match(line.text)
    if m:
        st.scratch["elastic.host"] = m.group(1)
    return None


@on("exitcode  : ", "exitcode: ")
def elastic_exitcode(line: Line, st: StreamState):
    m = _TE_EXIT.match(line.text)
    if not m:
        return None
    code, pid = int(m.group(1)), int(m.group(2))
    rank, local = st.scratch.pop("elastic.rank", (None, None))
    st.scratch["elastic.record"] = rank         # whose traceback the record's 'traceback :' field holds
    if st.scratch.get("elastic.root") is False and code < 0:
        stopped = st.scratch.get("elastic.stopped_pids")
        if code == -9 and stopped and pid not in stopped:
            # torchrun stopped the workers still alive (its closing-signal lines, read above) and not this
            # one: it was dead already, SIGKILLed from outside (the OOM killer), and its peers' errors,
            # one of them the "root cause" by its time, followed from that
            return _killed(line, st, code, "torchelastic", pid=pid, rank=rank, local_rank=local,
                           host=st.scratch.get("elastic.host"), root_cause=False)
        # "Failures:" lists the ranks torchrun itself stopped after the root cause: not a cause
        st.once(("pid", pid, None))
        st.once(("pid", pid, rank))
        return None
    if code > 0 and st.scratch.get("elastic.root") is False:
        return None     # a rank torchrun stopped after the root cause
    root = bool(st.scratch.get("elastic.root"))
    alone = {"alone": True} if root and code > 0 and st.scratch.pop("elastic.alone", False) else {}
    return _killed(line, st, code, "torchelastic", pid=pid, rank=rank, local_rank=local,
                   host=st.scratch.get("elastic.host"), root_cause=root, **alone)


# The record's last field is the rank's own error (errors/__init__.py _FAILURE_FORMAT_TEMPLATE
# '  traceback : ${message}', the error_file's traceback when the rank used @record): its lines carry
# no rank prefix, so the record's 'rank : N' is lent to them until the traceback ends
# (traceback.py exception_line gives it back; a chained exception right after borrows it again).
@on("traceback : ")
def elastic_traceback(line: Line, st: StreamState):
    rank = st.scratch.pop("elastic.record", None)
    if rank is not None and line.rank is None and "Traceback (most recent call last)" in line.text:
        lend_rank(st, rank)
    return None


def lend_rank(st: StreamState, rank: int) -> None:
    if "elastic.saved_hint" not in st.scratch:
        st.scratch["elastic.saved_hint"] = st.rank_hint
    st.rank_hint = rank
    st.scratch["elastic.lent"] = rank


def give_back_rank(st: StreamState, lineno: int) -> None:
    if "elastic.saved_hint" in st.scratch:
        st.rank_hint = st.scratch.pop("elastic.saved_hint")
        st.scratch["elastic.given_back"] = (st.scratch.pop("elastic.lent", None), lineno)


@on(") received by PID ")
def elastic_signal(line: Line, st: StreamState):
    m = _TE_SIGNAL.search(line.text)
    if not m:
        return None
    return _killed(line, st, -int(m.group(1)), "torchelastic", pid=int(m.group(3)))


@on("failed (exitcode: ")
def elastic_failed(line: Line, st: StreamState):
    m = _TE_FAILED.search(line.text)
    if not m:
        return None
    code = int(m.group(1))
    if code:
        # the agent's word that its worker group failed (multiprocessing/api.py): that launch is over, so its
        # node's next torchrun start is a relaunch (formats/relaunch.py), as after the summary
        st.scratch["launcher.ended"] = (line.host,)
    ev = _killed(line, st, code, "torchelastic", pid=int(m.group(3)), local_rank=int(m.group(2)))
    if ev is not None and ev.rank is not None and ev.rank_from != FROM_RECOGNISER:
        # the agent's own line: a prefix on it ('0: ' of srun --label) names the node's task, not a
        # rank (the rank of local_rank N is unknown here); rank 0 read from it would be "the failed rank"
        ev.rank, ev.rank_from = None, None
    return ev


# Lightning's own launcher (lightning_fabric/strategies/launchers/subprocess_script.py _ChildProcessObserver._run:
# rank_prefixed_message(f"Child process with PID {proc.pid} terminated with code {proc.returncode}. Forcefully
# terminating all other processes to avoid zombies 🧟", rank=i + 1)): the main process is local rank 0 and
# starts the others, so its children are the local ranks from 1 on; on one node (where this launcher runs
# unless NODE_RANK is set by hand) the local rank is the rank
_LIGHTNING_CHILD = compile_later(r"(?:\[rank: (\d+)\] )?Child process with PID (\d+) terminated with code (-?\d+)\.")


@on("Child process with PID ")
def lightning_child(line: Line, st: StreamState):
    m = _LIGHTNING_CHILD.search(line.text)
    if not m:
        return None
    local = int(m.group(1)) if m.group(1) else None
    return _killed(line, st, int(m.group(3)), "lightning", pid=int(m.group(2)), rank=local, local_rank=local)


# ---------------------------------------------------------------- pdsh, Slurm, shell
_PDSH = compile_later(r"pdsh@\S+: (\S+): .* killed by signal (\d+)")


@on(" killed by signal ")
def pdsh_killed(line: Line, st: StreamState):
    m = _PDSH.search(line.text)
    if not m:
        return None
    return _killed(line, st, -int(m.group(2)), "pdsh", node=m.group(1))


# Slurm (wording not in the catalogue: match loosely): "slurmstepd: error: Detected 1 oom-kill
# event(s) in StepId=123.0. Some of your processes may have been killed by the cgroup out-of-memory
# handler." (19.05-21.x cgroup v1), "... Detected 1 oom_kill event in StepId=123.0. Some of the step tasks
# have been OOM Killed." (22.05+, src/plugins/cgroup) and "srun: error: node12: task 3: Out Of Memory"
_SRUN_OOM = compile_later(r"srun: error: (\S+): tasks? ([\d,-]+): Out Of Memory")


@on("oom-kill event", "oom_kill event", ": Out Of Memory")
def slurm_oom(line: Line, st: StreamState):
    m = _SRUN_OOM.search(line.text)
    if m:
        task = m.group(2).split(",")[0].split("-")[0]
        return _killed(line, st, -9, "slurm", rank=int(task) if task.isdigit() else None, node=m.group(1),
                       memcg=True)
    if ("oom-kill event" in line.text or "oom_kill event" in line.text) and st.once(("slurm-oom",)):
        return _killed(line, st, -9, "slurm", memcg=True)
    return None


# A container killed at its memory limit: the kubelet's container status reason (k8s.io/api core/v1
# ContainerStateTerminated.Reason, set from the runtime's OOMKilled flag), as `kubectl describe pod`
# ('Reason:       OOMKilled'), `kubectl get pods` (STATUS 'OOMKilled') and events print it; Docker's
# `docker inspect` State '"OOMKilled": true' (false when it was not).
_OOMKILLED = compile_later(r'\bOOMKilled\b(?!"?\s*:\s*false)')


@on("OOMKilled")
def container_oom(line: Line, st: StreamState):
    if _OOMKILLED.search(line.text) and st.once(("container-oom",)):
        return _killed(line, st, -9, "kubernetes", memcg=True)
    return None


# slurmstepd, when Slurm ends a job or step itself (format strings in slurmstepd 22.05, from
# src/slurmd/slurmstepd/req.c and slurmstepd.c): '*** %s ON %s CANCELLED AT %s ***' (scancel),
# '... DUE TO TIME LIMIT ***', '... DUE TO PREEMPTION ***', '... DUE TO JOB REQUEUE ***',
# '... DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***'; %s = 'JOB 4242' or 'STEP 4242.0'.
# The ranks get SIGTERM, then SIGKILL after KillWait: the SIGKILLs that follow are its echo.
_SLURM_CANCEL = compile_later(r"\*\*\* (?:JOB|STEP) (\S+) ON (\S+) CANCELLED AT (\S+)(?: DUE TO ([A-Za-z ]+?))?(?:,| \*\*\*|$)")


@on(" CANCELLED AT ")
def slurm_cancelled(line: Line, st: StreamState):
    m = _SLURM_CANCEL.search(line.text)
    # once per job and stop time (its step and the job say it together, with one time; a requeued
    # job keeps its id, and its log, with --open-mode=append, holds each run's stop)
    if not m or not st.once(("slurm-cancel", m.group(1).split(".")[0], m.group(3))):
        return None
    reason = (m.group(4) or "scancel").strip().lower()
    if not m.group(4) and "***" not in line.text[m.end(3):] and st.scratch.get("slurm.failed_node"):
        # the line cut after its time (a paste's wrap), srun having named a failed node: its reason
        # is that node failure, the words cut off ('DUE TO NODE FAILURE'), not a plain scancel
        reason = "node failure"
    node = m.group(2)
    if reason == "node failure":
        # ' ON %s' is the node whose slurmstepd reports the stop (the batch host), not the one that
        # failed: srun names that one ('srun: error: Node failure on node2', seen in a real run)
        node = st.scratch.get("slurm.failed_node")
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=15, who="slurm",
                      external=True, reason=reason, node=node, job=m.group(1), at_time=utc_seconds(m.group(3)),
                      reporter=m.group(2))


# srun, when slurmctld tells it a node of the step stopped responding (src/api/step_launch.c:
# _node_fail_handler, error("Node failure on %s", ...)): the failed node, named before slurmstepd's
# '*** JOB N ON <batch host> CANCELLED AT ... DUE TO NODE FAILURE ***'
_SRUN_NODE_FAIL = compile_later(r"srun: error: Node failure on (\S+)")


@on("Node failure on ")
def srun_node_failure(line: Line, st: StreamState):
    m = _SRUN_NODE_FAIL.search(line.text)
    if m:
        st.scratch.setdefault("slurm.failed_node", m.group(1).rstrip(".,"))
    return None


# bash: "Killed" alone, or "/path/script.sh: line 12: 4567 Killed    python train.py"; on a terminal the
# message lands where the cursor is: after a tqdm bar that never got its newline ('...| 1/3 [00:10<00:20,
# 10.12s/it]Killed', a model or checkpoint load killed by the OOM killer)
_SHELL_KILLED = compile_later(r"^(?:.*: line \d+:\s+(\d+) |.*(?:it/s|s/it)(?:, [^\]]*)?\])?Killed(?:\s{2,}.*)?$")


@on("Killed")
def shell_killed(line: Line, st: StreamState):
    m = _SHELL_KILLED.match(line.text.strip())
    if not m:
        return None
    return _killed(line, st, -9, "shell", pid=int(m.group(1)) if m.group(1) else None)


# bash's job report for SIGTERM: "Terminated" alone, or "./run.sh: line 7: 4567 Terminated  python ..."
# (bash jobs.c: the strsignal() text of the signal that ended the job)
_SHELL_TERMINATED = compile_later(r"^(?:.*: line \d+:\s+(\d+) )?Terminated(?:\s{2,}.*)?$")


@on("Terminated")
def shell_terminated(line: Line, st: StreamState):
    m = _SHELL_TERMINATED.match(line.text.strip())
    if not m:
        return None
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=15, who="shell",
                      pid=int(m.group(1)) if m.group(1) else None)


# ---------------------------------------------------------------- kernel OOM killer (oom_kill.c)
_KERNEL = compile_later(r"(Memory cgroup out of memory|Out of memory(?: \(oom_kill_allocating_task\))?): "
                     r"Kill(?:ed)? process (\d+) \(([^)]*)\)(?:.*?anon-rss:(\d+)kB)?")


@on("Out of memory: Kill", "out of memory: Kill", "Out of memory (oom_kill_allocating_task)")
def kernel_oom(line: Line, st: StreamState):
    m = _KERNEL.search(line.text)
    if not m:
        return None
    rss = int(m.group(4)) * 1024 if m.group(4) else None
    st.once(("kernel-oom-pid", int(m.group(2))))      # its summary / reaper lines say the same kill
    return _killed(line, st, -9, "kernel", pid=int(m.group(2)), memcg=m.group(1).startswith("Memory cgroup"),
                   comm=m.group(3), anon_rss=rss)


# The rest of the OOM killer's report, for a paste that lacks the 'Killed process' line (mm/oom_kill.c):
# dump_header's '{comm} invoked oom-killer: gfp_mask=..., order=N, oom_score_adj=N' (the task whose
# allocation failed, not always the victim) opens it; dump_oom_summary's
# 'oom-kill:constraint=CONSTRAINT_{NONE|CPUSET|MEMORY_POLICY|MEMCG},...,task={comm},pid={pid},uid={uid}'
# names the victim; oom_reap_task_mm's 'oom_reaper: reaped process {pid} ({comm}), now anon-rss:...'
# follows the kill. Each is the kernel's word that the host ran out of memory (oom_report: the
# 'Killed process' line, when the paste has it, is among the lines quoted; the report lines do not
# claim the pid, which dmesg's summary line names before that line).
_OOM_INVOKED = compile_later(r"(\S+) invoked oom-killer: gfp_mask=")
_OOM_SUMMARY = compile_later(r"oom-kill:constraint=(\w+),.*?task=([^,]*),pid=(\d+)")
_OOM_REAPED = compile_later(r"oom_reaper: reaped process (\d+) \(([^)]*)\)")


@on("invoked oom-killer", "oom-kill:constraint=", "oom_reaper: reaped process")
def kernel_oom_report(line: Line, st: StreamState):
    t = line.text
    m = _OOM_INVOKED.search(t)
    if m:
        return _killed(line, st, -9, "kernel", pid=None, memcg=False, invoker=m.group(1), oom_report=True)
    m = _OOM_SUMMARY.search(t)
    if m and st.once(("kernel-oom-pid", int(m.group(3)))):
        return _killed(line, st, -9, "kernel", pid=None, victim_pid=int(m.group(3)),
                       memcg=m.group(1) == "CONSTRAINT_MEMCG", comm=m.group(2), oom_report=True)
    m = _OOM_REAPED.search(t)
    if m and st.once(("kernel-oom-pid", int(m.group(1)))):
        return _killed(line, st, -9, "kernel", pid=None, victim_pid=int(m.group(1)), memcg=False, comm=m.group(2),
                       oom_report=True)
    return None


# ---------------------------------------------------------------- shared memory (/dev/shm)
_DL_SIGNAL = compile_later(r"DataLoader worker \(pid (\d+)\) is killed by signal: (.+?)\.")


@on("is killed by signal: ")
def dataloader_killed(line: Line, st: StreamState):
    m = _DL_SIGNAL.search(line.text)
    if not m:
        return None
    pid, what = int(m.group(1)), m.group(2)
    if not st.once(("dl", pid)):
        return None
    if "Bus error" in what:
        return line.event("shm_error", step=st.step_of(line.rank), detail="bus error", where="dataloader", pid=pid)
    if what == "Killed":
        return _killed(line, st, -9, "dataloader", pid=None, worker_pid=pid)
    sig = {"Segmentation fault": 11, "Floating point exception": 8, "Aborted": 6}.get(what)
    if sig is not None and st.once(("dl-crash", line.rank)):
        return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig,
                          who="DataLoader worker", worker_pid=pid)
    return None


@on("Unexpected bus error encountered in worker")
def dataloader_bus_error(line: Line, st: StreamState):
    return line.event("shm_error", step=st.step_of(line.rank), detail="bus error", where="dataloader")


# torch/csrc/DataLoader.cpp (compiled into libtorch_python): a worker's own signal handler prints
# 'ERROR: Unexpected segmentation fault encountered in worker.' / '... floating-point exception ...'
# (the bus error one is /dev/shm, above), then the main process raises 'DataLoader worker (pid N)
# is killed by signal: Segmentation fault.'
_DL_CRASH = {"segmentation fault": 11, "floating-point exception": 8}


@on("encountered in worker")
def dataloader_worker_crash(line: Line, st: StreamState):
    t = line.text
    for what, sig in _DL_CRASH.items():
        if f"Unexpected {what} encountered in worker" in t and st.once(("dl-crash", line.rank)):
            return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig,
                              who="DataLoader worker")
    return None


@on("No space left on device")
def shm_full(line: Line, st: StreamState):
    t = line.text
    # torch's shared-memory tensors ("unable to write to file </torch_123_456>") live in /dev/shm;
    # NCCL's own segments are handled as an NCCL WARN (nccl.py), other files are disk, not memory.
    # NCCL's wording (src/misc/shmutils.cc 'Error while creating shared memory segment', 2.22+ 'failed
    # to create shared memory file') also comes back without its WARN head in torch's 'Last error:' line.
    if "NCCL WARN" in t or "shared memory segment" in t or "create shared memory file" in t \
            or not ("/dev/shm" in t or "</torch_" in t or "shared memory" in t):
        return None
    return line.event("shm_error", step=st.step_of(line.rank), detail="No space left on device",
                      where="dataloader" if "</torch_" in t else "/dev/shm")


# a process's SIGBUS in bash's job report (padded to its column like native_crash's texts below; real bash 5 here:
# 'run.sh: line 1: 32027 Bus error               python3 ...', '... Bus error               (core dumped) python3 ...')
# and in CPython's faulthandler ('Fatal Python error: Bus error')
_SHELL_BUS = compile_later(r"^(?:Fatal Python error: |.*: line \d+:\s+\d+ )?Bus error(?:\s*\(core dumped\)(?:\s*\S.*)?|\s{2,}.*)?$")


@on("Bus error (core dumped)", "Bus error")
def shell_bus_error(line: Line, st: StreamState):
    if "Bus error (core dumped)" not in line.text and not _SHELL_BUS.match(line.text.strip()):
        return None
    return line.event("shm_error", step=st.step_of(line.rank), detail="bus error", where="process")


# ---------------------------------------------------------------- how a failed run ended
# deepspeed/launcher/launch.py: main.sigkill_handler logs 'Killing subprocess {pid}' for every
# rank when one rank exits non-zero (then '{cmd} exits with return code = {code}') or when the
# launcher itself gets SIGINT/SIGTERM (then 'Main process received SIGTERM, exiting').
_DS_KILLING = compile_later(r"Killing subprocess (\d+)")
_DS_RECEIVED = compile_later(r"Main process received (SIG\w+), exiting")
_SIGNUM = {"SIGINT": 2, "SIGTERM": 15, "SIGKILL": 9, "SIGSEGV": 11, "SIGABRT": 6, "SIGBUS": 7, "SIGHUP": 1,
           "SIGQUIT": 3}


@on("Killing subprocess ")
def deepspeed_killing(line: Line, st: StreamState):
    m = _DS_KILLING.search(line.text)
    if not m or not st.once(("killing", int(m.group(1)))):
        return None
    return _as_launchers(line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=None,
                                    pid=int(m.group(1)), who="launcher", killing=True), line, st)


@on("Main process received ")
def deepspeed_received(line: Line, st: StreamState):
    m = _DS_RECEIVED.search(line.text)
    if not m:
        return None
    return _as_launchers(line.event("process_exit", step=st.step_of(line.rank), exitcode=None,
                                    signal=_SIGNUM.get(m.group(1)), who="launcher", external=True), line, st)


# A process's own word that it got a stop signal: its handler's log line. transformers'
# trainer_jit_checkpoint.py 'SIGTERM received, will request JIT checkpoint after {kill_wait}s', and the
# handlers scripts and trainers install ('Received SIGTERM, shutting down'). Only the stop signals: a
# SIGUSR1/SIGUSR2 handler ('got SIGUSR1: saving a checkpoint') is a planned stop (Slurm's --signal before a
# time limit, `scancel --signal=USR1`), not a failure. The launchers' own lines are read above/below.
_SCRIPT_SIGNAL = compile_later(
    r"(?i:\b(?:received|receiving|got|caught|catching|handling|trapped)\b)(?: (?:a |the )?(?i:signal) ?)?:? ?"
    r"(?:Signals\.)?(SIG(?:TERM|INT|HUP|QUIT))\b"
    r"|\b(SIG(?:TERM|INT|HUP|QUIT))\b:? (?:(?i:signal) )?(?i:received|caught|detected)")


@on("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
def script_stop_signal(line: Line, st: StreamState):
    t = line.text
    if "Main process received" in t or "death signal" in t or "received at time=" in t:
        return None                     # the DeepSpeed launcher's, torchelastic's and abseil's, read as theirs
    m = _SCRIPT_SIGNAL.search(t)
    if not m or not st.once(("script_signal", line.rank)):
        return None
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None,
                      signal=_SIGNUM[m.group(1) or m.group(2)], who="script", external=True)


# torch/distributed/elastic/agent/server/api.py: 'Received %s death signal, shutting down
# workers' (%s of a signal.Signals: 'Signals.SIGTERM' before Python 3.11, '15' since)
_TE_DEATH = compile_later(r"Received (?:Signals\.)?(SIG\w+|\d+) death signal")


@on(" death signal")
def elastic_death_signal(line: Line, st: StreamState):
    m = _TE_DEATH.search(line.text)
    if not m:
        return None
    v = m.group(1)
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None,
                      signal=int(v) if v.isdigit() else _SIGNUM.get(v), who="torchelastic", external=True)


# torch/distributed/elastic/multiprocessing/api.py (SubprocessContext._close: 'Sending process %s closing signal
# %s'; MultiprocessContext._close: 'Closing process %s via signal %s'): torchrun stopping, after a worker failed,
# the workers still alive (`if handler.proc.poll() is None`). Their pids tell the summary's "Failures:" records
# of workers torchrun stopped from those of workers that had died on their own (elastic_exitcode).
_TE_CLOSING = compile_later(r"(?:Sending process (\d+) closing signal|Closing process (\d+) via signal) (?:Signals\.)?SIG")


@on("Sending process ", "Closing process ")
def elastic_closing(line: Line, st: StreamState):
    m = _TE_CLOSING.search(line.text)
    if m:
        st.scratch.setdefault("elastic.stopped_pids", set()).add(int(m.group(1) or m.group(2)))
    return None


# torch/distributed/elastic/multiprocessing/api.py (_close): 'Unable to shutdown process %s via %s,
# forcefully exiting via %s' -- a worker still alive 30 s after torchrun sent it the stop signal
# (SIGINT/SIGTERM): Python runs its handler only between bytecodes, so the worker sat in one native
# call all that time (a collective that waits for a peer, a blocking read): a rank that was hung.
_TE_STOP_IGNORED = compile_later(
    r"Unable to shutdown process (\d+) via (?:Signals\.)?(SIG\w+|\d+), forcefully exiting via (?:Signals\.)?(SIG\w+|\d+)")


@on("Unable to shutdown process ")
def elastic_stop_ignored(line: Line, st: StreamState):
    m = _TE_STOP_IGNORED.search(line.text)
    if not m:
        return None
    st.scratch.setdefault("elastic.stopped_pids", set()).add(int(m.group(1)))
    v = m.group(2)
    return line.event("stop_ignored", step=st.step_of(line.rank), pid=int(m.group(1)),
                      signal=int(v) if v.isdigit() else _SIGNUM.get(v), who="torchelastic")


# Slurm srun: 'srun: error: {node}: task {n}: Exited with exit code {code}' and
# 'srun: error: {node}: tasks {list}: Killed' (a signal; other tasks are killed this way too
# once one failed with --kill-on-bad-exit, so this is weighed in detect/failure.py, not taken
# for an OOM kill on its own).
_SRUN = compile_later(r"srun: error: (\S+): tasks? ([\d,-]+): (Exited with exit code (\d+)|Killed|Segmentation fault|Aborted|Terminated)")


@on("srun: error: ")
def srun_task(line: Line, st: StreamState):
    m = _SRUN.search(line.text)
    if not m:
        return None
    task = m.group(2).split(",")[0].split("-")[0]
    what = m.group(3)
    code = int(m.group(4)) if m.group(4) else None
    sig = None if code is not None else {"Killed": 9, "Segmentation fault": 11, "Aborted": 6, "Terminated": 15}[what]
    if code == 0:
        return None
    return line.event("process_exit", step=st.step_of(line.rank), rank=int(task) if task.isdigit() else None,
                      exitcode=code, signal=sig, who="slurm", node=m.group(1), tasks=m.group(2))


# A process that crashed in native code: bash's job report ('Segmentation fault (core dumped)',
# '/path/run.sh: line 3: 4567 Aborted (core dumped) python train.py') and CPython's faulthandler
# ('Fatal Python error: Segmentation fault', Python/faulthandler.c).
_NATIVE = {"Segmentation fault": 11, "Aborted": 6, "Floating point exception": 8, "Illegal instruction": 4}
# (bash pads the signal's text to a column, then '(core dumped) ' and the command; a translated text
# longer in bytes than the column gets one space: sources/formats/translated.py reads it in English. The
# English 'Floating point exception' fills the column: nothing between it and what follows, real bash 5:
# 'run.sh: line 1: 32071 Floating point exceptionpython3 ...', '... Floating point exception(core dumped) python3 ...')
_SHELL_CRASH = compile_later(r"^(?:.*: line \d+:\s+(\d+) )?(Segmentation fault|Aborted|Floating point exception|"
                          r"Illegal instruction)(?:\s*\(core dumped\)(?:\s*\S.*)?|\s{2,}.*|(?<=exception)\S.*)?$")
_FAULTHANDLER = compile_later(r"^Fatal Python error: (Segmentation fault|Aborted|Floating point exception|"
                           r"Illegal instruction|Bus error)")
# its Windows form (Modules/faulthandler.c faulthandler_exc_handler; Lib/test/test_faulthandler.py
# check_windows_exception: 'Windows fatal exception: access violation' / 'stack overflow' / 'int divide by zero')
_WINDOWS_FATAL = {"access violation": (11, "an access violation (Windows' segmentation fault)"),
                  "stack overflow": (11, "a stack overflow (Windows)"),
                  "int divide by zero": (8, "an integer division by zero (Windows)")}
_FAULTHANDLER_WINDOWS = compile_later(r"^Windows fatal exception: (access violation|stack overflow|int divide by zero)")


@on("Segmentation fault", "Aborted", "Floating point exception", "Illegal instruction", "Fatal Python error: ",
    "Windows fatal exception: ")
def native_crash(line: Line, st: StreamState):
    t = line.text.strip()
    m = _FAULTHANDLER_WINDOWS.match(t)
    if m:
        sig, name = _WINDOWS_FATAL[m.group(1)]
        return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig, signal_name=name,
                          who="faulthandler", maybe_handled=True)
    m = _SHELL_CRASH.match(t)
    if m:
        return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=_NATIVE[m.group(2)],
                          pid=int(m.group(1)) if m.group(1) else None, who="shell")
    m = _FAULTHANDLER.match(t)
    if m and m.group(1) != "Bus error":       # a bus error is /dev/shm (shm_error, below)
        return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=_NATIVE[m.group(1)],
                          who="faulthandler")
    return None


# glibc's own last words before it calls abort(): heap corruption found by malloc's checks
# (malloc/malloc.c malloc_printerr: 'free(): invalid pointer', 'double free or corruption (!prev)',
# 'corrupted size vs. prev_size', 'malloc(): unaligned tcache chunk detected', ...; glibc < 2.26 wrapped
# them as "*** Error in `python': free(): invalid pointer: 0x... ***") and the stack protector
# (debug/stack_chk_fail.c '*** stack smashing detected ***: terminated'). The process dies of SIGABRT
# right after; often only this line is left (the shell's 'Aborted' goes to the terminal, not the log).
_GLIBC_ABORT = compile_later(r"^(?:\*\*\* Error in `[^']*': )?((?:free|malloc|realloc|munmap_chunk|malloc_consolidate|"
                             r"tcache_thread_shutdown)\(\): .+|double free or corruption \(\S+\)|corrupted size vs\. prev_size.*|"
                             r"corrupted double-linked list.*)$|^\*\*\* stack smashing detected \*\*\*")


@on("(): ", "double free or corruption", "corrupted size vs. prev_size", "corrupted double-linked list",
    "*** stack smashing detected ***")
def glibc_abort(line: Line, st: StreamState):
    t = line.text.strip()
    m = _GLIBC_ABORT.match(t)
    if not m:
        return None
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=6, who="glibc",
                      message=t[:300])


# deepspeed/launcher/runner.py main(): the runner checks passwordless ssh to the first host of
# the hostfile before it launches anything.
_SSH = compile_later(r"Using hostfile at (\S+) but host=(\S+) was not reachable via ssh")


@on("was not reachable via ssh")
def runner_ssh(line: Line, st: StreamState):
    m = _SSH.search(line.text)
    if not m:
        return None
    return line.event("env_error", error="ssh_unreachable", op=None, host=m.group(2), hostfile=m.group(1),
                      message=line.text.strip()[-300:])


# `deepspeed --autotuning run|tune`: deepspeed/autotuning/scheduler.py logs 'Launching exp_id = N, exp_name = ...'
# per experiment, and its clean_up then runs `pdsh -w <hosts> pkill -f <exp name>` over ssh even on localhost; without
# an ssh server that prints 'localhost: ssh: connect to host localhost port 22: Connection refused' after every
# experiment, which still ran (its metrics.json written; run here). The experiments' own output (and a launch that
# failed) is in <results_dir>/<exp>/stderr.log, not in this log, so the autotuner's ssh lines are not the cause.
# (the autotuner's own log lines say so too, '[autotuner.py:71:__init__] Created autotuning ...' first: a paste
# wrapped at 80 columns cuts 'Launching exp_id' behind DeepSpeed's head)
@on("Launching exp_id = ", "[autotuner.py:")
def autotuning_experiment(line: Line, st: StreamState):
    st.scratch["autotuning"] = True
    return None


# OpenSSH's own client errors, relayed by pdsh ('{host}: ssh: ...' then 'pdsh@x: {host}: ssh exited with
# exit code 255'; ssh exits 255 on its own errors): sshconnect.c ssh_connect_direct 'ssh: connect to host
# %s port %s: %s', ssh.c 'ssh: Could not resolve hostname %s: %s', sshconnect.c 'Host key verification
# failed.', and the server refusing the keys 'Permission denied (publickey,...)'. The remote command never ran.
_SSH_CLIENT = compile_later(r"ssh: connect to host (\S+) port \d+: (.+)$|ssh: Could not resolve hostname ([^:\s]+): (.+)$|"
                            r"(Host key verification failed)\.|(Permission denied \(publickey[^)]*\))")


@on("ssh: connect to host ", "ssh: Could not resolve hostname ", "Host key verification failed",
    "Permission denied (publickey")
def ssh_client_error(line: Line, st: StreamState):
    m = _SSH_CLIENT.search(line.text)
    if not m or st.scratch.get("autotuning"):
        return None
    host = m.group(1) or m.group(3) or line.host
    reason = m.group(2) or m.group(4) or m.group(5) or m.group(6)
    return line.event("env_error", error="ssh_failed", op=None, host=host, reason=reason.strip(),
                      message=line.text.strip()[-300:])


# Slurm's own memory enforcement without cgroups (JobAcctGatherParams=OverMemoryKill, the
# jobacct_gather plugin polling the tasks' RSS; format strings in Slurm 22.05's
# src/common/slurm_jobacct_gather.c: _poll_data): '%ps exceeded memory limit (%lu > %lu), being
# killed' ('StepId=12.0 ...'; before 20.x 'Step 12.0' / 'Job 12'), '... exceeded virtual memory
# limit ...', then slurmstepd's 'Exceeded job memory limit' (before 20.x also 'Exceeded step memory
# limit at some point.'). The tasks get SIGKILL; srun then says 'task 1: Killed' and tears the step
# down ('*** STEP 12.0 ON node1 CANCELLED AT ... ***'): those are its echo.
_SLURM_MEM_LIMIT = compile_later(r"(?:StepId=|Step |Job )?(\d+(?:\.\w+)?) exceeded (?:virtual )?memory limit "
                                 r"\((\d+) > (\d+)\), being killed")


@on("exceeded memory limit (", "exceeded virtual memory limit (", "Exceeded job memory limit",
    "Exceeded step memory limit")
def slurm_memory_limit(line: Line, st: StreamState):
    m = _SLURM_MEM_LIMIT.search(line.text)
    if m is None and "xceeded job memory limit" not in line.text and "xceeded step memory limit" not in line.text:
        return None
    if not st.once(("slurm-memory-limit",)):
        return None
    node = line.host[len("slurmstepd-"):] if line.host and line.host.startswith("slurmstepd-") else None
    extra = dict(used_bytes=int(m.group(2)), limit_bytes=int(m.group(3))) if m else {}
    return _killed(line, st, -9, "slurm", memcg="slurm-jobacct", node=node, **extra)


# MPICH's launcher (hydra: mpiexec.hydra / mpirun.mpich, src/pm/hydra/mpiexec/mpiexec.c) when a
# process ended on a signal: a '=' box with '=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES',
# '=   PID %d RUNNING AT %s', '=   EXIT CODE: %d', then 'YOUR APPLICATION TERMINATED WITH THE EXIT
# STRING: %s (signal %d)' (MPICH 4.0, seen in a real run; a plain non-zero exit prints nothing). It
# names the process's PID and host, not its rank.
_HYDRA_AT = compile_later(r"^=\s+PID (\d+) RUNNING AT (\S+)")
_HYDRA_SIGNAL = compile_later(r"YOUR APPLICATION TERMINATED WITH THE EXIT STRING: (.*?) \(signal (\d+)\)")


@on("RUNNING AT ", "TERMINATED WITH THE EXIT STRING: ")
def mpich_hydra_exit(line: Line, st: StreamState):
    m = _HYDRA_AT.match(line.text.strip())
    if m:
        st.scratch["mpich.at"] = (int(m.group(1)), m.group(2))
        return None
    m = _HYDRA_SIGNAL.search(line.text)
    if not m:
        return None
    pid, host = st.scratch.get("mpich.at", (None, None))
    return _killed(line, st, -int(m.group(2)), "mpich", pid=pid, node=host)
