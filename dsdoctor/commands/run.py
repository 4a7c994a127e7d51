"""`dsdoctor run [OPTIONS] -- COMMAND...`: run an unchanged training command and diagnose it.

Works under any launcher (deepspeed, torchrun, python): the environment carries
DSDOCTOR_AUTOATTACH=1 and the options to every rank, where dsdoctor_autoattach.pth attaches
to each engine that deepspeed.initialize returns. Console output is shown and saved to
DIR/console.log; at the end (normal exit, exception or kill) the live findings and a
post-mortem of DIR are printed. The exit code is the command's.
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

import typer

PTH_NAME = "dsdoctor_autoattach.pth"


def _pth_installed() -> bool:
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
    if not _pth_installed():
        # An install without the .pth (e.g. copied sources): a sitecustomize on PYTHONPATH
        # does the same job and chains to the user's own sitecustomize.
        site_dir = str(Path(__file__).resolve().parent.parent / "sources" / "live" / "_site")
        pkg_root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site_dir, pkg_root, env.get("PYTHONPATH")) if p)
    _for_other_nodes(env, out)
    return env


def _for_other_nodes(env: dict[str, str], out: Path) -> None:
    """Flight Recorder on, and the variables carried to ranks on other nodes through the
    deepspeed runner's own env file (sources/live/propagate.py explains each launcher)."""
    from ..sources.live import flight_recorder, propagate
    env.update(flight_recorder.env_for_run(env, out))
    try:
        path = propagate.write_env_file(env, propagate.for_other_nodes(env), out)
        env[propagate.ENV_FILE_VAR] = str(path)
    except OSError as e:
        print(f"dsdoctor: warning: cannot write {out}/{propagate.FILE_NAME} ({e.strerror or e}): ranks on "
              f"other nodes of a deepspeed --hostfile launch will not attach", file=sys.stderr)


class Tee(threading.Thread):
    """Copies the child's output to our stdout and to console.log, bytes as they come
    (progress bars with carriage returns stay intact)."""

    def __init__(self, src, log_path: Path):
        super().__init__(daemon=True)
        self.src = src
        self.log = open(log_path, "ab")

    def run(self) -> None:
        out = sys.stdout.buffer
        fd = self.src.fileno()
        while True:
            try:
                b = os.read(fd, 65536)
            except OSError:
                break
            if not b:
                break
            self.log.write(b)
            self.log.flush()
            try:
                out.write(b)
                out.flush()
            except (OSError, ValueError):
                pass
        self.log.close()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if `dsdoctor run` itself is killed (Linux), so the launcher
    (which passes it on to its ranks) does not outlive us."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG
    except Exception:
        pass


def run_command(command: List[str], out: Path, env: dict[str, str]) -> int:
    """Start the command in its own process group, forward SIGINT/SIGTERM, return its exit code."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    tee = Tee(proc.stdout, out / "console.log")
    tee.start()
    interrupts = 0

    def forward(sig: int, _frame) -> None:
        nonlocal interrupts
        interrupts += 1
        # a second Ctrl-C means "now": SIGKILL the whole group
        send = signal.SIGKILL if interrupts > 1 else sig
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
    _reap_group(proc.pid)
    return 128 - rc if rc < 0 else rc


def _reap_group(pgid: int) -> None:
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


def post_mortem(out: Path, rc: int, command: List[str]) -> int:
    """The analyze pipeline over everything the run left in DIR; returns the report's exit code."""
    from ..events import Event, EventWriter
    from ..pipeline import Diagnoser
    from ..report import exit_code, print_report
    from ..sources.inputs import InputError, expand
    from ..sources.logs import read_log
    try:
        w = EventWriter(out / "events-run.jsonl")
        w.write(Event("exit", data={"exitcode": rc, "command": " ".join(command)[:500]}, time=time.time()))
        w.close()
    except OSError:
        pass
    diag = Diagnoser()
    warnings: list[str] = []
    try:
        for inp in expand([str(out)]):
            for ev in read_log(inp, warnings):
                diag.feed(ev)
    except InputError as e:
        warnings.append(str(e))
    findings = diag.finish()
    for w_ in warnings:
        print(f"dsdoctor: warning: {w_}", file=sys.stderr)
    print_report(findings, title=f"dsdoctor run · exit code {rc} · {diag.events_seen} events · {out}",
                 notes=[f"Evidence kept in {out}/ (events-rank*.jsonl, console.log, tb/). "
                        f"Re-read it any time with: dsdoctor analyze {out}"])
    return exit_code(findings)


def _missing_node_folders(out: Path) -> list[str]:
    """After a run over several nodes without a shared file system, the other nodes' folders
    (DIR/node<K>-<host>/, sources/live/nodes.py) are on their own disks: say how to fetch them."""
    try:
        from ..events import read_events
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


def run(
    ctx: typer.Context,
    command: List[str] = typer.Argument(None, help="The training command, after --: deepspeed/torchrun/python ..."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", envvar="DSDOCTOR_OUT", help="Run folder (default ./dsdoctor-<timestamp>)."),
    stall_timeout: Optional[float] = typer.Option(None, "--stall-timeout", envvar="DSDOCTOR_STALL_TIMEOUT", help="Seconds without progress before a stall is reported (default max(60, 10 x median step))."),
    on_stall: str = typer.Option("report", "--on-stall", envvar="DSDOCTOR_ON_STALL", help="report | abort (end the run with the diagnosis)."),
    stall_abort_after: Optional[float] = typer.Option(None, "--stall-abort-after", envvar="DSDOCTOR_STALL_ABORT_AFTER", help="With --on-stall abort: end the run only after this many seconds without progress (default: the stall timeout); a shorter pause is reported and ridden out."),
    localize_nan: bool = typer.Option(False, "--localize-nan", envvar="DSDOCTOR_LOCALIZE_NAN", help="On the first NaN/Inf loss, name the first module whose output is non-finite."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", envvar="DSDOCTOR_TENSORBOARD", help="Write scalars and findings under DIR/tb."),
) -> None:
    """Run a training command unchanged, watch every rank, and diagnose the run when it ends."""
    from .analyze import fail
    command = list(command or []) + list(ctx.args)
    if not command:
        fail("no command given: dsdoctor run [OPTIONS] -- COMMAND ...")
    if on_stall not in ("report", "abort"):
        fail(f"--on-stall must be 'report' or 'abort', not {on_stall!r}")
    out = out or Path(f"dsdoctor-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "console.log").touch()
    except OSError as e:
        fail(f"cannot write the run folder {out}: {e.strerror or e}")
    env = child_env(out, stall_timeout, on_stall, localize_nan, tensorboard, stall_abort_after=stall_abort_after)
    try:
        rc = run_command(command, out, env)
    except FileNotFoundError:
        fail(f"command not found: {command[0]}")
        return
    except PermissionError:
        fail(f"cannot execute: {command[0]}")
        return
    try:
        post_mortem(out, rc, command)
    except Exception as e:          # the diagnosis must never hide the command's exit code
        print(f"dsdoctor: error: diagnosis failed ({type(e).__name__}: {e}); "
              f"try: dsdoctor analyze {out}", file=sys.stderr)
    for note in _missing_node_folders(out):
        print(f"dsdoctor: {note}", file=sys.stderr)
    raise typer.Exit(rc)


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run)
