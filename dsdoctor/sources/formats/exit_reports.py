"""How the programs around a run report its end: the shell's job table, a container runner,
an IDE's run console. The training log says nothing (the process was killed, or exited before
it could print), and these lines are the only trace of how it ended.

Texts:
  bash jobs.c: pretty_print_job / printable_job_status   '[1]+  Killed                  nohup deepspeed train.py ...'
                                        (status: strsignal() of the signal with ' (core dumped)', 'Exit N'
                                        for a non-zero exit, 'Done(N)' in POSIX mode, 'Done' for 0)
  Docker Compose v2 (cmd/formatter, cited) '<service>-1 exited with code 137'
  JetBrains run console (cited)          'Process finished with exit code 137 (interrupted by signal 9:SIGKILL)'
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on
from .launcher import _killed

# strsignal() texts (glibc) of the signals a training run dies of
_SIGNALS = {"Killed": 9, "Segmentation fault": 11, "Aborted": 6, "Terminated": 15, "Bus error": 7,
            "Hangup": 1, "Interrupt": 2, "Floating point exception": 8, "Illegal instruction": 4}
_JOB = compile_later(r"^\[\d+\][+-]?\s+(Killed|Segmentation fault|Aborted|Terminated|Bus error|Hangup|Interrupt|"
                     r"Floating point exception|Illegal instruction|Exit (\d+)|Done\((\d+)\))(?: \(core dumped\))?\s{2,}\S")


# (the same literals as launcher.py's shell lines where they overlap: a literal inside a longer one
# is not seen where the longer one matches)
@on("Killed", "Segmentation fault", "Aborted", "Terminated", "Bus error", "Bus error (core dumped)", "Hangup",
    "Interrupt", "Floating point exception", "Illegal instruction", "Exit ", "Done(")
def bash_job_status(line: Line, st: StreamState):
    t = line.text.strip()
    if not t.startswith("[") or not (m := _JOB.match(t)):
        return None
    code = m.group(2) or m.group(3)
    if code is not None:
        return _killed(line, st, int(code), "shell")
    return _end_by_signal(line, st, _SIGNALS[m.group(1)], "shell")


_COMPOSE = compile_later(r"^\S+ exited with code (\d+)\s*$")
_IDE = compile_later(r"^Process finished with exit code (\d+)")


@on(" exited with code ", "Process finished with exit code ")
def runner_exit_code(line: Line, st: StreamState):
    t = line.text.strip()
    m = _COMPOSE.match(t)
    who = "container"
    if m is None:
        m, who = _IDE.match(t), "ide"
    if m is None:
        return None
    code = int(m.group(1))
    if code > 128 and code - 128 in _SIGNALS.values():     # 128 + N: ended by signal N
        return _end_by_signal(line, st, code - 128, who)
    return _killed(line, st, code, who)


def _end_by_signal(line: Line, st: StreamState, sig: int, who: str):
    if sig == 9:
        return _killed(line, st, -9, who)
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig, who=who)
