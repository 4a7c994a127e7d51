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
  GitHub Actions runner (cited)          '##[error]Process completed with exit code 139.' (the step's script's status;
                                        'Error: Process completed with exit code 1.' in the web view)
  GNU make job.c child_error (cited)     'make: *** [Makefile:12: train] Error 139' (the recipe's status; make 3.x:
                                        'make: *** [train] Error 139')
  the shell's own status, echoed          '$ echo $?' then '137' alone on the next line (bash/zsh: 128 + N for a
                                        child ended by signal N)
  CPython subprocess.CalledProcessError   "Command '[...]' returned non-zero exit status 137." /
                                        "Command '[...]' died with <Signals.SIGKILL: 9>." (__str__)
  kubectl exec (client-go remotecommand, cited) 'command terminated with exit code 137'
  bash's xtrace (set -x; PS4 '+ ', one '+' more per level of indirection)  '+ exit 139' (a wrapper script, a
                                        Slurm batch file, returning the training's status as its own)
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on
from .launcher import process_ended as _killed
from .launcher import windows_crash, windows_crash_event

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
    return end_by_signal(line, st, _SIGNALS[m.group(1)], "shell")


_COMPOSE = compile_later(r"^\S+ exited with code (\d+)\s*$")
_IDE = compile_later(r"^Process finished with exit code (-?\d+)")
_CI_STEP = compile_later(r"^(?:##\[error\]|Error: )?Process completed with exit code (\d+)\.")
_MAKE = compile_later(r"^(?:g?make)(?:\[\d+\])?: \*\*\* \[[^\]]*\] Error (\d+)")

@on(" exited with code ", "Process finished with exit code ", "Process completed with exit code ", "] Error ")
def runner_exit_code(line: Line, st: StreamState):
    t = line.text.strip()
    m, who = None, None
    for pattern, runner in ((_COMPOSE, "container"), (_IDE, "ide"), (_CI_STEP, "ci"), (_MAKE, "make")):
        m, who = pattern.match(t), runner
        if m is not None:
            break
    if m is None:
        return None
    code = int(m.group(1))
    if windows_crash(code):
        return windows_crash_event(line, st, code, who)
    if code < 0:        # Windows' own exit(-1): not a signal (an IDE on Linux prints 128+N)
        return None
    if code > 128 and code - 128 in _SIGNALS.values():     # 128 + N: ended by signal N
        return end_by_signal(line, st, code - 128, who)
    return _killed(line, st, code, who)


def end_by_signal(line: Line, st: StreamState, sig: int, who: str):
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
    return end_by_signal(line, st, _ZSH[m.group(1)], "shell")


_FISH = compile_later(r"^fish: (?:Job \d+|Process \d+), '.*' terminated by signal (SIG[A-Z0-9]+)")
_SPAWN = compile_later(r"\bprocess (\d+) terminated with (?:signal (SIG[A-Z0-9]+)|exit code (-?\d+))")


def _signum(name: str) -> int | None:
    import signal as _signal     # here: its enums cost ~2 ms of every start-up, a signal name is rare
    try:
        return int(_signal.Signals[name])
    except (KeyError, ValueError):
        return None


@on("terminated by signal SIG")
def fish_job_end(line: Line, st: StreamState):
    m = _FISH.match(line.text.strip())
    sig = _signum(m.group(1)) if m else None
    return end_by_signal(line, st, sig, "shell") if sig else None


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


# ProcessContext.join's ProcessRaisedException (torch/multiprocessing/spawn.py): '-- Process {i} terminated with
# the following error:' then the process's own traceback, whose lines carry no rank: the spawn index is lent to
# them until its exception line (traceback.py gives it back), as torchelastic's record lends its rank.
_SPAWN_RAISED = compile_later(r"^-- Process (\d+) terminated with the following error:")


@on("terminated with the following error:")
def spawn_process_raised(line: Line, st: StreamState):
    m = _SPAWN_RAISED.match(line.text.strip())
    if m and line.rank is None:
        from .launcher import lend_rank
        lend_rank(st, int(m.group(1)))
    return None


def end_by_status(line: Line, st: StreamState, code: int, who: str):
    """An exit status as a shell reports it: above 128 a death by signal code - 128."""
    if code > 128 and code - 128 in _SIGNALS.values():
        return end_by_signal(line, st, code - 128, who)
    return _killed(line, st, code, who)


# A wrapper script traced with `set -x` ends on its own last command: '+ exit 139' (bash execute_cmd.c
# xtrace_print_word_list: PS4, then the words; `exit $rc` after `rc=$?` prints the status itself).
_XTRACE_EXIT = compile_later(r"^\++ exit (\d{1,3})\s*$")


@on("+ exit ")
def xtrace_exit(line: Line, st: StreamState):
    m = _XTRACE_EXIT.match(line.text.strip())
    if not m or not 0 < (code := int(m.group(1))) < 256:
        return None
    return end_by_status(line, st, code, "shell")


# The status a person printed after the run ('echo $?', 'echo "exit: $?"'): the next line holds it
# alone (a word and ':' / '=' before it at most). 0 is a clean end and says nothing.
_ECHO_STATUS = compile_later(r"\b(?:echo|printf|print)\b.*\$\?")
_STATUS_LINE = compile_later(r"^(?:[A-Za-z_ -]{0,20}[:=]\s*)?(\d{1,3})$")


@on("$?", continuation=tuple("0123456789"), chain=False)
def echoed_status(line: Line, st: StreamState):
    t = line.text.strip()
    if "$?" in t:
        if _ECHO_STATUS.search(t):
            st.scratch["shell.status_asked"] = (line.lineno, t[:200])
        return None
    asked = st.scratch.get("shell.status_asked")
    if not armed_within(asked, line, 1) or not (m := _STATUS_LINE.match(t)):
        return None
    code = int(m.group(1))
    ev = end_by_status(line, st, code, "shell") if 0 < code < 256 else None
    if ev is not None:
        ev.text = f"{asked[1]} -> {t}"        # a number alone says nothing: quote what printed it
    return ev


# A child's status inside an exception (its traceback is the wrapper's: families.py) or kubectl's report:
# a death by signal is the child's end and says how it ended (137: SIGKILL, 139: SIGSEGV, 134: SIGABRT).
_CPE_STATUS = compile_later(r"returned non-zero exit status (\d+)\.")
_CPE_SIGNAL = compile_later(r"died with <Signals\.(SIG[A-Z0-9]+): \d+>")
_KUBECTL_EXIT = compile_later(r"^command terminated with exit code (\d+)\s*$")


@on("returned non-zero exit status ", "died with <Signals.", "command terminated with exit code ")
def child_status(line: Line, st: StreamState):
    t = line.text.strip()
    if (m := _CPE_SIGNAL.search(t)) and (sig := _signum(m.group(1))):
        return end_by_signal(line, st, sig, "subprocess")
    if (m := _CPE_STATUS.search(t)) and (code := int(m.group(1))) > 128 and code - 128 in _SIGNALS.values():
        return end_by_signal(line, st, code - 128, "subprocess")
    if m := _KUBECTL_EXIT.match(t):
        return end_by_status(line, st, int(m.group(1)), "kubectl")
    return None


# A notebook's kernel that died: JupyterLab's dialog ('Kernel Restarting', 'The kernel for {path} appears to have
# died. It will restart automatically.': @jupyterlab/services, read in jupyterlab 4.6's bundle) and the Jupyter
# server's log (jupyter_client/restarter.py: 'KernelRestarter: restarting kernel (%i/%i), %s random ports'). The
# kernel process ended with no traceback and no exit code in sight: as ranks a launcher found gone (`killing`),
# most often the host's OOM killer, else a native crash (detect/failure.py: _vanished).
@on("appears to have died. It will restart", "KernelRestarter: restarting kernel")
def notebook_kernel_died(line: Line, st: StreamState):
    if not st.once(("kernel-died",)):
        return None
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=None, who="jupyter",
                      killing=True)


# W&B's footer says the exit code its run hook saw (wandb 0.12-0.15 sdk/wandb_run.py Run._footer_exit_status_info,
# cited: 'Waiting for W&B process to finish... (success).' / '... (failed {exit_code}).', then ' Press Control-C to
# abort syncing.'). The rest of the footer ('Run history:', 'Run summary:', 'View run ... at:', 'Find logs at:',
# 0.19's wandb_run.py _footer_*) is printed after a failed run as after a good one: it says neither.
_WANDB_EXIT = compile_later(r"Waiting for W&B process to finish\.*\s*\(failed (\d+)\)")


@on("Waiting for W&B process to finish")
def wandb_exit_code(line: Line, st: StreamState):
    m = _WANDB_EXIT.search(line.text)
    if not m or not st.once(("wandb-exit",)):
        return None
    return _killed(line, st, int(m.group(1)), "wandb")


# abseil's failure signal handler (absl/debugging/failure_signal_handler.cc: WriteSignalMessage
# '*** %s received at time=%ld on cpu %d ***'), installed by Ray's C++ core in every Ray process
# (and by TensorFlow, JAX, gRPC): the process's own record of the signal that ended it, with the
# unix time. SIGTERM/SIGINT is a stop from outside (a person, `timeout`, the scheduler); a crash
# signal is a native crash. Every process of a Ray cluster prints it: one event per signal.
_ABSL_SIGNAL = compile_later(r"\*\*\* (SIG[A-Z]+) received at time=(\d+)(?: on cpu \d+)? \*\*\*")
_ABSL_SIGNUM = {"SIGTERM": 15, "SIGINT": 2, "SIGHUP": 1, "SIGSEGV": 11, "SIGABRT": 6, "SIGBUS": 7, "SIGFPE": 8,
                "SIGILL": 4}
# glog's failure signal handler (src/signalhandler.cc DumpSignalInfo), in C++ extensions and libraries built
# with glog: '*** SIGSEGV (@0x0) received by PID 4100 (TID 0x7f2b6f1ff740) from PID 0; stack trace: ***', then
# the native stack. Only its crash signals: its SIGTERM is a stop from outside like abseil's.
_GLOG_SIGNAL = compile_later(r"^\*\*\* (SIG[A-Z]+) \(@0x[0-9a-fA-F]+\) received by PID \d+")


@on(" received at time=")
def absl_failure_signal(line: Line, st: StreamState):
    m = _ABSL_SIGNAL.search(line.text)
    sig = _ABSL_SIGNUM.get(m.group(1)) if m else None
    if sig is None or not st.once(("absl-signal", sig)):
        return None
    if sig in (15, 2, 1):
        return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig, who="shell",
                          external=True, at_time=float(m.group(2)))
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig, who="faulthandler")


@on(") received by PID ")
def glog_failure_signal(line: Line, st: StreamState):
    m = _GLOG_SIGNAL.match(line.text.strip())
    sig = _ABSL_SIGNUM.get(m.group(1)) if m else None
    if sig is None or sig in (15, 2, 1) or not st.once(("glog-signal", sig)):
        return None
    return line.event("process_exit", step=st.step_of(line.rank), exitcode=None, signal=sig, who="faulthandler")


# A shell that could not start the command (exit status 127): the run never began. The shells' own
# words (each run here): bash execute_cmd.c 'bash: {cmd}: command not found' / '{script}: line N: {cmd}:
# command not found' ('-bash: ' in a login shell), and '{path}: No such file or directory' for a path; dash
# 'sh: N: {cmd}: not found' / '{script}: N: {cmd}: not found'; zsh 'zsh: command not found: {cmd}' ('zsh:1: '
# under -c, '{script}:N: ' in a script) and 'zsh: no such file or directory: {path}'; fish 'fish: Unknown command: {cmd}'; Ubuntu's
# command-not-found handler "Command '{cmd}' not found, did you mean:"; coreutils env (a shebang's
# interpreter) "env: ‘{cmd}’: No such file or directory" ('...' in the C locale); Slurm's slurmstepd
# 'execve(): {cmd}: No such file or directory'. Only after a shell's own prefix (another program's
# '{file}: No such file or directory' is about a file), and only for the commands that start training (a
# launcher, an interpreter, a fine-tuning front-end's CLI): a missing `nvidia-smi` or `git` is not why a
# run failed.
_NOT_FOUND = compile_later(
    r"(?:^|\s)(?:(?:[\w.-]*/)*-?(?:ba|da|k)?sh|[\w./-]+: line \d+|[\w./-]+: \d+): (?P<a>[\w./+-]+): "
    r"(?:command not found|not found|No such file or directory)\s*$"
    r"|(?:^|\s)(?:[\w./-]*zsh(?::\d+)?|[\w./-]+:\d+): (?:command not found|no such file or directory): (?P<b>\S+)\s*$"
    r"|\bfish: Unknown command:? (?P<c>\S+)\s*$"
    r"|\bCommand '(?P<d>[^']+)' not found\b"
    r"|\benv: ['‘`](?P<e>[^'’`]+)['’`]: No such file or directory"
    r"|\bexecve\(\): (?P<f>\S+): No such file or directory")
_STARTS_TRAINING = compile_later(
    r"^(?:deepspeed|torchrun|accelerate|python[0-9.]*|srun|mpirun|mpiexec|pdsh|llamafactory-cli|swift|axolotl|"
    r"tune|composer|nemo|ray)$")


@on("command not found", ": not found", "Unknown command", "' not found", ": No such file or directory",
    "no such file or directory: ")
def command_not_found(line: Line, st: StreamState):
    m = _NOT_FOUND.search(line.text)
    if not m:
        return None
    cmd = next(g for g in m.groups() if g)
    if not _STARTS_TRAINING.match(cmd.rsplit("/", 1)[-1]):
        return None
    if not st.once(("command_not_found", cmd, line.rank)):
        return None
    return line.event("env_error", error="command_not_found", op=None, name=cmd,
                      path="/" in cmd, message=line.text.strip()[-300:])
