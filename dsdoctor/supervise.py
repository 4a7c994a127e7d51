"""The `dsdoctor run` front door's supervisor: the run folder, the child's environment, its
process group and its console. The command (commands/run.py) parses the options and prints;
the post-mortem is the application layer's (api.post_mortem).

Works under any launcher (deepspeed, torchrun, accelerate, srun, python): the environment
carries DSDOCTOR_AUTOATTACH=1 and the options to every rank, where dsdoctor_autoattach.pth
attaches to each engine that deepspeed.initialize returns (live/bootstrap.py).
"""
from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional


class RunFolderError(Exception):
    """The run folder cannot be used; str() is the one line the command prints."""


PTH_NAME = "dsdoctor_autoattach.pth"


def pth_installed() -> bool:
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    return any(os.path.isfile(os.path.join(d, PTH_NAME)) for d in dirs)


def child_env(out: Path, stall_timeout: Optional[float], on_stall: Optional[str], localize_nan: bool,
              tensorboard: Optional[bool], base: Optional[dict] = None,
              stall_abort_after: Optional[float] = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["DSDOCTOR_AUTOATTACH"] = "1"
    env["DSDOCTOR_OUT"] = str(out.resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")      # the console is captured live, not at exit
    if stall_timeout is not None:
        env["DSDOCTOR_STALL_TIMEOUT"] = str(stall_timeout)
    if on_stall is not None:
        env["DSDOCTOR_ON_STALL"] = on_stall
    if stall_abort_after is not None:
        env["DSDOCTOR_STALL_ABORT_AFTER"] = str(stall_abort_after)
    if localize_nan:
        env["DSDOCTOR_LOCALIZE_NAN"] = "1"
    if tensorboard is not None:
        env["DSDOCTOR_TENSORBOARD"] = "1" if tensorboard else "0"
    if not pth_installed():
        # An install without the .pth (e.g. copied sources): a sitecustomize on PYTHONPATH
        # does the same job and chains to the user's own sitecustomize.
        site_dir = str(Path(__file__).resolve().parent / "live" / "_site")
        pkg_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site_dir, pkg_root, env.get("PYTHONPATH")) if p)
    for_other_nodes(env, out)
    return env


def for_other_nodes(env: dict[str, str], out: Path) -> None:
    """Flight Recorder on, and the variables carried to ranks on other nodes through the
    deepspeed runner's own env file (live/propagate.py explains each launcher)."""
    from .live import flight_recorder, propagate
    env.update(flight_recorder.env_for_run(env, out))
    try:
        path = propagate.write_env_file(env, propagate.for_other_nodes(env), out)
        env[propagate.ENV_FILE_VAR] = str(path)
    except OSError as e:
        print(f"dsdoctor: warning: cannot write {out}/{propagate.FILE_NAME} ({e.strerror or e}): ranks on "
              f"other nodes of a deepspeed --hostfile launch will not attach", file=sys.stderr)


class Tee(threading.Thread):
    """Copies the child's output to our stdout and to console.log, bytes as they come
    (progress bars with carriage returns stay intact).

    It must drain the pipe until the child closes it, whatever happens to the copies: if it
    stopped, the child would block on its next print and the training would hang (a full
    disk did exactly that). A copy that fails (ENOSPC, EIO, a vanished folder, a closed
    terminal) is stopped, said once on stderr, and the other copy and the draining go on."""

    def __init__(self, src, log_path: Path):
        super().__init__(daemon=True, name="dsdoctor-console")
        self.src = src
        self.log_path = log_path
        self.log = None
        self.log_error: str | None = None      # why console.log stopped, once
        self.out_error: str | None = None
        try:
            self.log = open(log_path, "ab")
        except OSError as e:
            self._log_failed(e)

    def _log_failed(self, e: BaseException) -> None:
        self.log_error = getattr(e, "strerror", None) or str(e) or type(e).__name__
        if self.log is not None:
            try:
                self.log.close()     # may try to flush the rest again and fail: the fd is closed anyway
            except (OSError, ValueError):
                pass
        self.log = None
        try:
            print(f"dsdoctor: warning: {self.log_path}: stopped saving the console ({self.log_error}); "
                  "the output is still shown here and the training goes on", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def run(self) -> None:
        try:
            self._copy()
        except Exception:           # a bug here must not hang the training: drain to the end
            try:
                while os.read(self.src.fileno(), 65536):
                    pass
            except OSError:
                pass

    def _copy(self) -> None:
        try:
            out = sys.stdout.buffer
        except (AttributeError, ValueError):
            out = None
        fd = self.src.fileno()
        while True:
            try:
                b = os.read(fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                break
            if not b:
                break
            if self.log is not None:
                try:
                    self.log.write(b)
                    self.log.flush()
                except (OSError, ValueError) as e:
                    self._log_failed(e)
            if out is not None:
                try:
                    out.write(b)
                    out.flush()
                except (OSError, ValueError) as e:
                    self.out_error = getattr(e, "strerror", None) or str(e)
                    out = None               # keep draining: the child must never block on us
        if self.log is not None:
            try:
                self.log.close()
            except (OSError, ValueError) as e:
                self._log_failed(e)


def die_with_parent() -> None:
    """In the child: get SIGTERM if `dsdoctor run` itself is killed (Linux), so the launcher
    (which passes it on to its ranks) does not outlive us."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG
    except Exception:
        pass


# A second SIGINT/SIGTERM this soon after the first is the same stop delivered twice, not a
# person's second Ctrl-C: a wrapper that forwards the signal to its process group (GNU timeout,
# a job script's trap) while the terminal or the scheduler also sent it arrives within milliseconds.
SAME_STOP_S = 1.0


class Stops:
    """The signals `dsdoctor run` passed on to the command (the post-mortem's evidence of a stop
    from outside): the first one's number, how many came, and whether it ended the group with
    SIGKILL itself (a second Ctrl-C)."""

    def __init__(self) -> None:
        self.first: Optional[int] = None
        self.count = 0
        self.escalated = False
        self._at = 0.0

    def facts(self) -> dict:
        if self.first is None:
            return {}
        return {"signal": self.first, "forwarded": self.count, "escalated": self.escalated}


def run_command(command: List[str], out: Path, env: dict[str, str], stops: Optional[Stops] = None) -> int:
    """Start the command in its own process group, forward SIGINT/SIGTERM (noted in `stops`),
    return its exit code."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True,
                            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    tee = Tee(proc.stdout, out / "console.log")
    tee.start()
    stops = stops if stops is not None else Stops()

    def forward(sig: int, _frame) -> None:
        now = time.monotonic()
        if stops.first is not None and now - stops._at < SAME_STOP_S:
            return                            # the same stop again (see SAME_STOP_S)
        # a second Ctrl-C means "now": SIGKILL the whole group
        send = signal.SIGKILL if stops.first is not None else sig
        if stops.first is None:
            stops.first = int(sig)
        stops.count += 1
        stops.escalated = stops.escalated or send == signal.SIGKILL
        stops._at = now
        try:
            os.killpg(proc.pid, send)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    tee.join(timeout=10)
    reap_group(proc.pid)
    return 128 - rc if rc < 0 else rc


def reap_group(pgid: int) -> None:
    """Ranks left behind by a launcher that died (stall, kill) must not outlive the run."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(1.0)


def exit_text(rc: int, command: List[str], stopped: Optional[dict] = None, kernel: Optional[dict] = None) -> str:
    """The evidence line of the command's end: detect/failure.py reads the code (128+N: signal N),
    the stop dsdoctor run passed on (Stops.facts) and the kernel's OOM-kill counters (live/oom_counter.py)."""
    text = f"dsdoctor run: `{' '.join(command)[:200]}` exited with code {rc}"
    if 128 < rc < 160:
        try:
            text += f" (killed by {signal.Signals(rc - 128).name})"
        except ValueError:
            pass
    if stopped and stopped.get("signal"):
        try:
            name = signal.Signals(stopped["signal"]).name
        except ValueError:
            name = f"signal {stopped['signal']}"
        text += f" after dsdoctor run passed on {name}"
        if stopped.get("escalated"):
            text += " and, at a second one, SIGKILLed the command"
    if kernel and rc != 0:
        from .live.oom_counter import oom_kill_text
        text += oom_kill_text(kernel)
    return text


def missing_node_folders(out: Path) -> list[str]:
    """After a run over several nodes without a shared file system, the other nodes' folders
    (DIR/node<K>-<host>/, live/nodes.py) are on their own disks: say how to fetch them."""
    try:
        from .events import read_events
        here = {p.name for p in out.glob("node*-*") if p.is_dir()}
        if not here:
            return []
        attached: dict[str, str] = {}          # host label -> its folder name, from rank 0's roll call
        for f in out.glob("node*-*/events-rank0.jsonl"):
            with open(f, encoding="utf-8", errors="replace") as fh:
                for ev in read_events(fh, str(f)):
                    if ev.kind == "roll_call":
                        for label in ev.data.get("hosts") or {}:
                            attached[label] = label
        missing = []
        for label in attached:
            host, _, node = label.partition(" (node ")
            name = f"node{node.rstrip(')')}-{host}" if node else host
            if name not in here:
                missing.append((host, name))
    except Exception:
        return []
    return [f"{name}/ is not here (its node wrote to its own disk): `rsync -a {host}:{out.resolve()}/ {out}/`, "
            f"then `dsdoctor analyze {out}`" for host, name in missing]


LOCK_NAME = ".dsdoctor-run.lock"
EVIDENCE = ("events-*.jsonl", "stacks-rank*.txt", "console.log", "tb")


def claim_run_folder(out: Optional[Path], force: bool) -> tuple[Path, object]:
    """One run, one folder. The folder is locked (flock on DIR/.dsdoctor-run.lock, held until
    this process exits, released by the kernel even after a SIGKILL, so it never goes stale):
    a second `dsdoctor run` on it is refused instead of mixing its events into this one. A
    folder that holds an earlier run's evidence is refused too (its NaN would be reported
    again), unless --force, which moves those files to a sibling DIR.previous-<time>/ first
    (outside DIR, so `dsdoctor analyze DIR` reads only the new run; nothing is deleted).
    Returns the folder and the open lock file (keep it open); RunFolderError when it cannot be used."""
    import fcntl
    if out is None:
        out = Path(f"dsdoctor-{time.strftime('%Y%m%d-%H%M%S')}")
        if out.exists():                          # two runs started in the same second
            out = Path(f"{out}-{os.getpid()}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / LOCK_NAME, "a+")
    except OSError as e:
        raise RunFolderError(f"cannot write the run folder {out}: {e.strerror or e}")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read(64).strip()
        raise RunFolderError(f"{out} is in use by another dsdoctor run{f' (pid {holder})' if holder.isdigit() else ''}; "
             "give each run its own --out")
    earlier = sorted({p.name for pat in EVIDENCE for p in out.glob(pat)
                      if not (p.name == "console.log" and p.stat().st_size == 0)})
    if earlier and not force:
        raise RunFolderError(f"{out} already holds an earlier run ({', '.join(earlier[:3])}{', ...' if len(earlier) > 3 else ''}); "
             "choose a new --out, or pass --force to move those files aside first")
    if earlier:
        aside = out.parent / f"{out.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        try:
            aside.mkdir()
            for name in earlier:
                os.replace(out / name, aside / name)
        except OSError as e:
            raise RunFolderError(f"cannot move the earlier run's files from {out} to {aside}: {e.strerror or e}")
        print(f"dsdoctor: the earlier run's files in {out} were moved to {aside}", file=sys.stderr)
    try:                 # the pid only names the holder in the error above: a full disk must not stop the run
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
    except OSError:
        pass
    try:
        (out / "console.log").touch()
    except OSError as e:
        raise RunFolderError(f"cannot write the run folder {out}: {e.strerror or e}")
    return out, lock
