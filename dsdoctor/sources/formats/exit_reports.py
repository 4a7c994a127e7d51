"""How the programs around a run report its end: the shell's job table, a container runner,
an IDE's run console. The training log says nothing (the process was killed, or exited before
it could print), and these lines are the only trace of how it ended.

Texts:
  bash jobs.c: pretty_print_job / printable_job_status   '[1]+  Killed                  nohup deepspeed train.py ...'
                                        (status: strsignal() of the signal with ' (core dumped)', 'Exit N'
                                        for a non-zero exit, 'Done(N)' in POSIX mode, 'Done' for 0)
  zsh (real, zsh 5.9 here)              'zsh: killed     python train.py', 'zsh: segmentation fault  python ...',
                                        'zsh: IOT instruction  ...' (SIGABRT), 'zsh: bus error  ...' (its signal
                                        messages, with ' (core dumped)' when a core was written)
  fish (real, fish 3.6 here)            "fish: Job 1, 'python train.py' terminated by signal SIGKILL (Forced quit)"
                                        (or "fish: Process 123, 'python' from job 1, '...' terminated by signal ...")
  torch/multiprocessing/spawn.py        ProcessContext.join: 'process {i} terminated with signal {SIGNAME}' /
                                        'process {i} terminated with exit code {n}' (the spawned process's index,
                                        its local rank)
  Docker Compose v2 (cmd/formatter, cited) '<service>-1 exited with code 137'
  JetBrains run console (cited)          'Process finished with exit code 137 (interrupted by signal 9:SIGKILL)'
"""
from __future__ import annotations

import signal as _signal

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on
from .launcher import process_ended as _killed

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
    """A process ended by signal `sig`: SIGKILL is weighed as a kill (the host's OOM killer, most
    often); any other is a process_exit with its signal."""
    if sig == 9:
        return _killed(line, st, -9, who)
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig, who=who)


_ZSH = {"killed": 9, "segmentation fault": 11, "abort": 6, "IOT instruction": 6, "bus error": 7, "terminated": 15,
        "floating point exception": 8, "illegal hardware instruction": 4, "hangup": 1, "interrupt": 2}
_ZSH_LINE = compile_later(r"^zsh: (" + "|".join(_ZSH) + r")(?: \(core dumped\))?\s+\S")


@on("zsh: ")
def zsh_job_end(line: Line, st: StreamState):
    m = _ZSH_LINE.match(line.text.strip())
    if not m:
        return None
    return _end_by_signal(line, st, _ZSH[m.group(1)], "shell")


_FISH = compile_later(r"^fish: (?:Job \d+|Process \d+), '.*' terminated by signal (SIG[A-Z0-9]+)")
_SPAWN = compile_later(r"\bprocess (\d+) terminated with (?:signal (SIG[A-Z0-9]+)|exit code (-?\d+))")


def _signum(name: str) -> int | None:
    try:
        return int(_signal.Signals[name])
    except (KeyError, ValueError):
        return None


@on("terminated by signal SIG")
def fish_job_end(line: Line, st: StreamState):
    m = _FISH.match(line.text.strip())
    sig = _signum(m.group(1)) if m else None
    return _end_by_signal(line, st, sig, "shell") if sig else None


@on("terminated with signal SIG", "terminated with exit code ")
def spawn_process_end(line: Line, st: StreamState):
    m = _SPAWN.search(line.text)
    if not m:
        return None
    rank = int(m.group(1))
    if m.group(3) is not None:
        return _killed(line, st, int(m.group(3)), "torch.multiprocessing", rank=rank)
    sig = _signum(m.group(2))
    if sig is None:
        return None
    if sig == 9:
        return _killed(line, st, -9, "torch.multiprocessing", rank=rank)
    return line.event("process_exit", step=st.step_of(rank), rank=rank, exitcode=None, signal=sig,
                      who="torch.multiprocessing")


# A launcher that runs the training script with `subprocess` and re-raises its end (accelerate
# commands/launch.py: simple_launcher / multi_gpu_launcher raise subprocess.CalledProcessError): CPython
# Lib/subprocess.py CalledProcessError.__str__ words a death by signal as "Command '{cmd}' died with
# <Signals.SIGKILL: 9>." (repr of signal.Signals) and an exit as "... returned non-zero exit status {n}."
# (left to the traceback reader: the script's own traceback says more than its exit code).
_CPE_SIGNAL = compile_later(r"\bCommand .* died with <Signals\.(SIG[A-Z0-9]+): (\d+)>")


@on(" died with <Signals.")
def subprocess_died(line: Line, st: StreamState):
    m = _CPE_SIGNAL.search(line.text)
    if not m:
        return None
    return _end_by_signal(line, st, int(m.group(2)), "subprocess")
