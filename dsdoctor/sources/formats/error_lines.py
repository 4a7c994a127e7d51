"""Recogniser: error-level lines of any logger, the last resort of a failed run's evidence.

A run can end with nothing a specific recogniser knows: no traceback, no exit code, no
signal, only a logger's last words. These are the level markers the common loggers print:
Python logging's default formats ('ERROR:name:msg' from logging.BASIC_FORMAT, 'LEVEL msg'
layouts, DeepSpeed's '[ERROR] [file:line:func] msg', deepspeed/utils/logging.py),
libstdc++'s 'terminate called without an active exception', and FATAL/CRITICAL markers.
glog's heads (c10's '[E1205 10:00:00.123456 1234 File.cpp:12] msg', glog's FATAL 'F1205 ... ] Check
failed: ...') carry the level as their first letter; the messages torch prints that way are read by the
recognisers of their messages too, and those events come first. detect/failure.py uses one only when nothing else says the run failed and the
training made no progress after it; wandb's own errors (its upload, its login) are not the
run's (except its 'Run X errored: ...', which quotes the run's exception).
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

# the level marker near the start of the (decoration-free) line
_LEVEL = compile_later(r"^.{0,40}?(?:\[(ERROR|FATAL|CRITICAL)\]|\b(ERROR|FATAL|CRITICAL)(?::[\w.]*:|:|\s{1,8}(?=\S)|$))")
_NOT_THE_RUN = ("wandb: ", "wandb:ERROR", "tensorboard", "comet_ml", "mlflow")


@on("ERROR", "FATAL", "CRITICAL", "terminate called without an active exception")
def error_line(line: Line, st: StreamState):
    t = line.text.strip()
    if any(x in t for x in _NOT_THE_RUN) and "errored" not in t:   # wandb's 'Run X errored: <the exception>' is the run's
        return None
    if t.startswith("terminate called without an active exception"):
        return line.event("error_line", step=st.step_of(line.rank), level="fatal", message=t[:300])
    m = _LEVEL.match(t)
    if not m:
        return None
    level = (m.group(1) or m.group(2)).lower()
    return line.event("error_line", step=st.step_of(line.rank), level=level, message=t[m.end():].strip()[:300] or t[:300])


# Slurm's own programs log '{prog}: error: {msg}' and '{prog}: fatal: {msg}' (src/common/log.c), e.g. srun
# refusing to launch ('srun: error: Invalid MPI type 'pmix', --mpi=list for acceptable types', seen here
# with the pmix plugin unable to load). The per-task exit lines ('srun: error: node2: task 1: Exited with
# exit code 3') are read as exits (formats/multinode.py, launcher.py).
_SLURM_LEVEL = compile_later(r"^(srun|salloc|sbatch|slurmstepd\S*): (error|fatal): (.*)$")
_TASK_REPORT = compile_later(r"^\S+: tasks? [\d,-]+: ")


@on("srun: error: ", "srun: fatal: ", "salloc: error: ", "salloc: fatal: ", "sbatch: error: ", "sbatch: fatal: ")
def slurm_error_line(line: Line, st: StreamState):
    m = _SLURM_LEVEL.match(line.text.strip())
    if not m or _TASK_REPORT.match(m.group(3)):
        return None
    return line.event("error_line", step=st.step_of(line.rank), level=m.group(2), message=m.group(3)[:300])


# glog's head: level letter, MMDD, time, thread id, file:line (glog/logging.cc LogMessage::Init; c10's
# c10/util/Logging.cpp wraps it in brackets). Only E and F: I and W are not the end of a run.
_GLOG_LEVEL = compile_later(r"^\[?([EF])\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^\]\s]+\]\s*(.*)$")


@on(".cpp:", ".cc:", ".cu:")
def glog_error_line(line: Line, st: StreamState):
    t = line.text.strip()
    if t[:1] not in "[EF":
        return None
    m = _GLOG_LEVEL.match(t)
    if not m:
        return None
    level = "fatal" if m.group(1) == "F" else "error"
    return line.event("error_line", step=st.step_of(line.rank), level=level, message=(m.group(2) or t)[:300])


# libgomp's fatal errors (libgomp/error.c gomp_fatal: '\nlibgomp: ' + message, then exit(1)), e.g. 'libgomp:
# Thread creation failed: Resource temporarily unavailable' (run here: torch's OpenMP pool under a pids limit):
# the process ends on this line with no traceback
@on("libgomp: ")
def libgomp_fatal(line: Line, st: StreamState):
    t = line.text.strip()
    if not t.startswith("libgomp: "):
        return None
    return line.event("error_line", step=st.step_of(line.rank), level="fatal", message=t[:300])
