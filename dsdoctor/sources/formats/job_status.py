"""Recogniser: what a scheduler (or service manager) says about a job that ended, pasted by the user.

A paste of a dead run is often the scheduler's record of it, not (or not only) the job's output:

  Slurm `scontrol show job N` (real, Slurm 22.05 here: a job that exited 1, one whose script's child was
      SIGKILLed or segfaulted, one past its time limit)
          '   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)'
          '   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=137:0'     (exit code : signal)
      JobState TIMEOUT (Reason=TimeLimit), OUT_OF_MEMORY (Reason=OutOfMemory: the job's cgroup), PREEMPTED,
      NODE_FAIL, CANCELLED: src/common/slurm_protocol_defs.c job_state_string (cited for the states not run here)
  Slurm `sacct -j N` (accounting is off here: the default columns of sacct(1) cited, 'JobID JobName Partition
      Account AllocCPUS State ExitCode', a State over 10 characters cut to 'OUT_OF_ME+' / 'CANCELLED+')
          '4242           train.sh        gpu    acct         16     FAILED      1:0'
  Kubernetes `kubectl describe pod` (k8s.io/kubectl/pkg/describe/describe.go describeContainerState, cited):
          '    State:          Terminated' / '    Last State:     Terminated', then '      Reason:       Error',
          '      Exit Code:    139' ('Reason: OOMKilled' is read by launcher.container_oom)
  systemd, a training run as a service unit, its journal (the format strings of this machine's systemd 252,
      libsystemd-core: '%s: %s exited, code=%s, status=%i/%s%s', '%s: A process of this unit has been killed by
      the OOM killer.', '%s: Failed with result '%s'.')
          'train.service: Main process exited, code=killed, status=9/KILL' (code exited / killed / dumped)

An exit status the shell's way: above 128 a death by signal (code - 128). The events are those of the
job's own end lines (a killed / process_exit of who='scontrol' / 'sacct' / 'kubernetes' / 'systemd'), so
the failure rules weigh them as they weigh srun's and slurmstepd's.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on
from .exit_reports import end_by_signal, end_by_status
from .launcher import process_ended as _killed

# the stops Slurm makes itself: the reason the slurmstepd CANCELLED line gives (launcher.slurm_cancelled)
_STOPS = {"TIMEOUT": "time limit", "PREEMPTED": "preemption", "NODE_FAIL": "node failure", "CANCELLED": "scancel",
          "DEADLINE": "deadline"}
_JOB_STATE = compile_later(r"\bJobState=([A-Z_]+) Reason=(\S+)")
_EXIT_CODE = compile_later(r"\bExitCode=(\d+):(\d+)\b")
_SACCT_ROW = compile_later(r"^\s*\d+(?:_\d+)?(?:\.\w+)?\s+.*?\s(FAILED|TIMEOUT|OUT_OF_ME(?:\+|MORY)|NODE_FAIL|"
                           r"CANCELLED\+?|PREEMPTED)\s+(\d+):(\d+)\s*$")
_K8S_TERMINATED = compile_later(r"^\s*(?:Last )?State:\s+Terminated\s*$")
_K8S_EXIT = compile_later(r"^\s*Exit Code:\s+(\d+)\s*$")


def _ended(line: Line, st: StreamState, state: str, code: int, sig: int, who: str):
    """The job's end as its record says it; `who` the tool that printed it (scontrol, sacct): not
    'slurm', which failure.py takes for Slurm's own word that the kernel killed a task for memory."""
    if state.startswith("OUT_OF_ME"):
        # the job's cgroup reached its memory limit (Slurm's task/cgroup OOM): the kernel killed a task
        return _killed(line, st, -9, who, memcg=True)
    reason = _STOPS.get(state.rstrip("+"))
    if reason is not None:
        return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=15, who=who,
                          external=True, reason=reason)
    if sig:
        return end_by_signal(line, st, sig, who)
    return end_by_status(line, st, code, who) if code else None


@on("JobState=")
def scontrol_job_state(line: Line, st: StreamState):
    m = _JOB_STATE.search(line.text)
    if not m or m.group(1) in ("RUNNING", "PENDING", "COMPLETED", "COMPLETING", "CONFIGURING", "SUSPENDED"):
        return None
    if m.group(1) == "FAILED":
        # its exit code follows on the next line of the record ('ExitCode=1:0')
        st.scratch["slurm.job_failed"] = (line.lineno, line.text.strip())
        return None
    if not st.once(("job-state", m.group(1))):
        return None
    return _ended(line, st, m.group(1), 0, 0, "scontrol")


@on("ExitCode=")
def scontrol_exit_code(line: Line, st: StreamState):
    if not armed_within(st.scratch.get("slurm.job_failed"), line, 2) or not (m := _EXIT_CODE.search(line.text)):
        return None
    state = st.scratch.pop("slurm.job_failed")[1]
    code, sig = int(m.group(1)), int(m.group(2))
    if not (code or sig) or not st.once(("job-exit", code, sig)):
        return None
    ev = _ended(line, st, "FAILED", code, sig, "scontrol")
    if ev is not None:
        ev.text = f"{state} ... {m.group(0)}"        # the exit code alone does not say it is the job's
    return ev


@on("FAILED", "TIMEOUT", "OUT_OF_ME", "NODE_FAIL", "CANCELLED", "PREEMPTED")
def sacct_row(line: Line, st: StreamState):
    m = _SACCT_ROW.match(line.text)
    # a job's rows (the job, its .batch, .extern and steps) repeat one end: the first says it
    if not m or not st.once(("sacct",)):
        return None
    return _ended(line, st, m.group(1), int(m.group(2)), int(m.group(3)), "sacct")


@on("Terminated")
def k8s_container_terminated(line: Line, st: StreamState):
    if _K8S_TERMINATED.match(line.text):
        st.scratch["k8s.terminated"] = line.lineno
    return None


@on("Exit Code:")
def k8s_exit_code(line: Line, st: StreamState):
    # under 'State: Terminated' after its Reason (and Message) lines
    if not armed_within(st.scratch.get("k8s.terminated"), line, 4) or not (m := _K8S_EXIT.match(line.text)):
        return None
    code = int(m.group(1))
    if not code or not st.once(("k8s-exit", code)):
        return None
    return end_by_status(line, st, code, "kubernetes")


_SYSTEMD_EXIT = compile_later(r"\bMain process exited, code=(exited|killed|dumped), status=(\d+)/")


@on("Main process exited, code=", "of this unit has been killed by the OOM killer", "Failed with result 'oom-kill'")
def systemd_unit_end(line: Line, st: StreamState):
    t = line.text
    if "of this unit has been killed by the OOM killer" in t or "Failed with result 'oom-kill'" in t:
        return _killed(line, st, -9, "systemd", memcg=True) if st.once(("systemd-oom",)) else None
    m = _SYSTEMD_EXIT.search(t)
    if not m or not int(m.group(2)) or not st.once(("systemd-exit",)):
        return None
    if m.group(1) == "exited":
        return _killed(line, st, int(m.group(2)), "systemd")
    return end_by_signal(line, st, int(m.group(2)), "systemd")
