"""Never break the run, never lose a file (issue 15): one test per reported fault.

1. a full disk under the run folder: the training finishes, its output stays on the terminal;
2. no output file is replaced unless --force, never the input itself (hardlinks included);
3. option values out of range: refused by `dsdoctor run`, defaulted (one warning) in the env;
4. bad inputs that gave tracebacks: one-line errors;
5. inputs that hung (FIFOs, /dev/zero, 100k-row CSVs, YAML alias bombs): bounded;
6. wrong answers on the edges: --rules typo, --plot name, two runs in one folder.
Real processes and real DeepSpeed runs where the fault is live; the CLI in-process otherwise.
"""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor import cli

if not cli.app.registered_commands:
    cli._register()

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
runner = CliRunner()

OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of "
       "79.15 GiB of which 1.20 GiB is free. Including non-PyTorch memory, this process has 77.90 GiB memory in "
       "use. Of the allocated memory 75.00 GiB is allocated by PyTorch, and 1.90 GiB is reserved by PyTorch but "
       "unallocated. If reserved but unallocated memory is large try setting "
       "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")


def invoke(*args: str):
    res = runner.invoke(cli.app, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "Traceback" not in res.stderr
    return res


def one_line_error(res, *words: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.stderr)
    err = res.stderr.strip()
    assert err.startswith("dsdoctor: error: ") and "\n" not in err, err
    for w in words:
        assert w in err, err
    return err


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DSDOCTOR_")}
    e.update(PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
             DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", **extra)
    return e


def dsdoctor(args: list[str], timeout: float = 120, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    """`python -m dsdoctor ARGS` in its own session, killed (whole group) at the timeout."""
    p = subprocess.Popen([sys.executable, "-m", "dsdoctor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env(**extra), cwd=cwd, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.communicate()
        pytest.fail(f"dsdoctor {' '.join(args[:4])} did not end within {timeout} s")
    return subprocess.CompletedProcess(p.args, p.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


# ================================================================ 1. a full disk
@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: the run folder fills up within the first steps."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a 64 KiB tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)


LOUD = """\
import sys
for i in range(1, 301):
    print(f"step {i} " + "x" * 2000, flush=True)
print("done: 300 steps", flush=True)
"""


@pytest.mark.timeout(120)
def test_full_disk_keeps_the_console_flowing(full_disk, tmp_path):
    """The copy to console.log hits ENOSPC at about step 30: the training goes on to the end
    (before: the copying thread died, the pipe filled, the training blocked at step 7)."""
    script = tmp_path / "loud.py"
    script.write_text(LOUD)
    r = dsdoctor(["run", "--out", str(full_disk / "s"), "--", sys.executable, str(script)], timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("step ")] == [str(i) for i in range(1, 301)]
    assert "done: 300 steps" in r.stdout
    warned = [ln for ln in r.stderr.splitlines() if "stopped saving the console" in ln]
    assert len(warned) == 1 and "No space left on device" in warned[0], r.stderr


@pytest.mark.timeout(60)
def test_a_disk_full_before_the_start_does_not_stop_the_run(full_disk):
    """Not one free block left: the run still starts (the lock needs no data block), the
    output is shown, and console.log's failure is said once."""
    with open(full_disk / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 1024)
        except OSError:
            pass
    r = dsdoctor(["run", "--out", str(full_disk / "s"), "--", sys.executable, "-c",
                  "print('hello from the training', flush=True)"], timeout=40)
    assert r.returncode == 0, r.stderr
    assert "hello from the training" in r.stdout
    assert r.stderr.count("stopped saving the console") == 1, r.stderr


@pytest.mark.timeout(240)
def test_full_disk_deepspeed_run_finishes_every_step(full_disk):
    """A real DeepSpeed run on the full disk: console copy, events, TensorBoard all hit ENOSPC;
    every one stops writing, says so once, and all 300 steps are trained and shown."""
    r = dsdoctor(["run", "--out", str(full_disk / "s"), "--", sys.executable, "-m", "dsdoctor.demo.train",
                  "--steps", "300", "--print-every", "1", "--hidden", "32", "--layers", "2"], timeout=200)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    shown = [int(ln.split()[1]) for ln in r.stdout.splitlines() if ln.startswith("step ")]
    # (once in CI one 'step N' line did not come out as a line of its own: the lines that hold a missing
    # step are shown, to see what it was glued to)
    missing = sorted(set(range(300)) - set(shown)) if shown[:1] == [0] else sorted(set(range(1, 301)) - set(shown))
    glued = [ln for ln in r.stdout.splitlines() for m in missing[:3] if f"step {m} " in ln + " "]
    assert shown == list(range(1, 301)) or shown == list(range(300)), (shown[:5], missing[:5], glued[:5])
    assert "done: 300 steps" in r.stdout
    said = r.stdout + r.stderr
    assert said.count("events: stopped writing") == 1, said[-3000:]
    assert "Traceback" not in said


GLUE_CHILD = """\
import errno, os, sys, threading
from pathlib import Path
from dsdoctor.live.session import LiveSession, LiveOptions
s = LiveSession(LiveOptions(out=Path(sys.argv[1]), tensorboard=False), rank=0, world_size=1, local_rank=0, store=None)
def fail():                 # the event writer's thread meeting a full disk, once per part
    for k in range(10000):
        s._record_error(f"part{k}", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
t = threading.Thread(target=fail)
t.start()
for i in range(60000):
    print(f"step {i} loss 0.1", flush=True)
t.join()
s.close()
"""


@pytest.mark.timeout(120)
def test_a_doctor_warning_from_a_thread_never_hides_a_training_line(tmp_path):
    """The cause of the full-disk run's missing 'step N' line (1 run in ~20): the event writer's
    thread printed 'dsdoctor: events: stopped writing ...' with print(), text and newline in two
    writes (PYTHONUNBUFFERED), and the training's line landed between them:
    '...the training goes onstep 189 loss 0.01'. Before: 2-9 such lines in this run of 10,000
    warnings against 60,000 prints; the doctor now writes each line whole (live/say.py)."""
    p = subprocess.run([sys.executable, "-c", GLUE_CHILD, str(tmp_path / "run")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env(PYTHONUNBUFFERED="1"), timeout=100)
    assert p.returncode == 0, p.stdout[-2000:]
    lines = p.stdout.decode().splitlines()
    hidden = [ln for ln in lines if "goes onstep " in ln]
    assert not hidden, hidden[:3]
    assert [ln.split()[1] for ln in lines if ln.startswith("step ")] == [str(i) for i in range(60000)]
    assert sum(ln.count("stopped writing") for ln in lines) == 10000


class _FailingFile:
    """A log file object whose writes fail like a dying disk (EIO)."""

    def __init__(self, err: int):
        self.err, self.writes = err, 0

    def write(self, b: bytes) -> int:
        self.writes += 1
        raise OSError(self.err, os.strerror(self.err))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        raise OSError(self.err, os.strerror(self.err))


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_console_copy_survives_a_failing_log(tmp_path, monkeypatch, capsys, err):
    from dsdoctor.supervise import Tee
    rfd, wfd = os.pipe()
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    tee = Tee(os.fdopen(rfd, "rb"), tmp_path / "console.log")
    tee.log = _FailingFile(err)
    tee.start()
    payload = b"".join(b"line %d\n" % i for i in range(100_000))     # > the pipe buffer: must be drained
    with os.fdopen(wfd, "wb") as w:
        w.write(payload)
    tee.join(timeout=20)
    assert not tee.is_alive()
    assert out.getvalue() == payload
    assert tee.log is None and tee.log_error == os.strerror(err)
    assert capsys.readouterr().err.count("stopped saving the console") == 1


def test_console_copy_survives_a_closed_terminal(tmp_path, monkeypatch):
    """stdout gone (the terminal closed, `| head` ended): console.log still gets everything."""
    from dsdoctor.supervise import Tee

    class Closed(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(Closed())))
    rfd, wfd = os.pipe()
    tee = Tee(os.fdopen(rfd, "rb"), tmp_path / "console.log")
    tee.start()
    payload = b"x" * 300_000
    with os.fdopen(wfd, "wb") as w:
        w.write(payload)
    tee.join(timeout=20)
    assert not tee.is_alive() and (tmp_path / "console.log").read_bytes() == payload


def test_session_writers_survive_a_vanished_and_a_full_folder(tmp_path, full_disk, capsys):
    """Events, TensorBoard and stack dumps: the folder deleted under a live session, then a
    session on a full disk. Nothing raises into the caller (the training); each failing part
    is said once."""
    from dsdoctor.live.session import LiveOptions, LiveSession
    from dsdoctor.live.tboard import TensorBoard
    from dsdoctor.live.watchdog import Watchdog
    gone = tmp_path / "gone"
    s = LiveSession(LiveOptions(out=gone), rank=0, world_size=1, store=None)
    s.add_part(TensorBoard(s))
    s.emit("loss", step=1, value=1.0)
    s.flush()
    shutil.rmtree(gone)
    for i in range(2, 200):
        s.emit("loss", step=i, value=1.0)
        s.emit("step", step=i, fwd_ms=1.0, bwd_ms=1.0, step_ms=1.0)
    s.emit("overflow", step=199, prev_scale=2.0, new_scale=1.0)
    s.close()

    # fill the disk, then run a session there: events, TensorBoard, stacks all fail
    (full_disk / "filler").write_bytes(b"\0" * (60 << 10))
    s = LiveSession(LiveOptions(out=full_disk / "s"), rank=0, world_size=1, store=None)
    s.add_part(TensorBoard(s))
    wd = Watchdog(s)
    for i in range(1, 400):
        s.emit("loss", step=i, value=1.0)
        s.emit("exception", step=i, type="RuntimeError", message="x" * 300)
    with s.guard("watchdog.stacks"):
        for k in range(2, 40):
            wd.dump_stacks({"ranks": [0]}, k)
    s.close()
    err = capsys.readouterr().err
    for part in ("events", "watchdog.stacks"):
        assert err.count(f"dsdoctor: {part}: stopped writing") == 1, err
    assert "Traceback" not in err


# ================================================================ 2. files replaced without asking
def _config(tmp_path: Path) -> tuple[Path, Path, str]:
    cfg = tmp_path / "ds.json"
    original = '{"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 2}}\n'
    cfg.write_text(original)
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    return cfg, log, original


def test_write_config_refuses_an_existing_file_unless_force(tmp_path):
    cfg, log, original = _config(tmp_path)
    other = tmp_path / "other.json"
    other.write_text("mine\n")
    one_line_error(invoke("analyze", "--config", str(cfg), "--write-config", str(other), str(log)),
                   "already exists", "--force")
    assert other.read_text() == "mine\n"
    res = invoke("analyze", "--config", str(cfg), "--write-config", str(other), "--force", str(log))
    assert res.exit_code == 1 and f"written to {other}" in " ".join(res.stdout.split())
    assert json.loads(other.read_text())["train_micro_batch_size_per_gpu"] < 8
    assert cfg.read_text() == original


def test_write_config_never_writes_to_a_hardlink_or_symlink_of_the_input(tmp_path):
    cfg, log, original = _config(tmp_path)
    hard, soft = tmp_path / "hard.json", tmp_path / "soft.json"
    os.link(cfg, hard)
    soft.symlink_to(cfg)
    for out in (hard, soft):
        for force in ([], ["--force"]):
            one_line_error(invoke("analyze", "--config", str(cfg), "--write-config", str(out), *force, str(log)),
                           "same file as the input")
    assert cfg.read_text() == original


def test_doctor_fix_refuses_to_overwrite(tmp_path):
    cfg = tmp_path / "bad.json"
    shutil.copy(Path(__file__).resolve().parent / "configs" / "blog_fp16_scheduler.json", cfg)
    original = cfg.read_text()
    default = tmp_path / "bad.fixed.json"
    default.write_text("keep\n")
    one_line_error(invoke("doctor", "--config", str(cfg), "--fix"), "already exists")
    existing = tmp_path / "existing.json"
    existing.write_text("keep too\n")
    one_line_error(invoke("doctor", "--config", str(cfg), "--fix", str(existing)), "already exists")
    one_line_error(invoke("doctor", "--config", str(cfg), "--fix", str(cfg), "--force"), "same file as the input")
    assert default.read_text() == "keep\n" and existing.read_text() == "keep too\n" and cfg.read_text() == original
    res = invoke("doctor", "--config", str(cfg), "--fix", str(existing), "--force")
    assert f"written to {existing}" in " ".join(res.stdout.split()), res.stdout
    assert json.loads(existing.read_text())["scheduler"]["type"] == "OneCycle"


# ================================================================ 3. options that broke training
@pytest.mark.parametrize("var,value", [
    ("DSDOCTOR_STALL_TIMEOUT", "-1"), ("DSDOCTOR_STALL_TIMEOUT", "0.01"), ("DSDOCTOR_STALL_TIMEOUT", "nan"),
    ("DSDOCTOR_TELEMETRY_INTERVAL", "nan"), ("DSDOCTOR_TELEMETRY_INTERVAL", "inf"),
    ("DSDOCTOR_TELEMETRY_INTERVAL", "0.001"), ("DSDOCTOR_EXCHANGE_EVERY", "0"),
    ("DSDOCTOR_CHECK_EVERY", "-3"), ("DSDOCTOR_STALL_ABORT_AFTER", "inf"), ("DSDOCTOR_LOCALIZE_NAN", "maybe"),
])
def test_run_refuses_bad_values_before_starting(tmp_path, var, value):
    marker = tmp_path / "started"
    r = dsdoctor(["run", "--out", str(tmp_path / "r"), "--", sys.executable, "-c",
                  f"open({str(marker)!r}, 'w').close()"], timeout=60, **{var: value})
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("dsdoctor: error:") and "\n" not in err, err
    assert var in err or "--" in err
    assert not marker.exists()


@pytest.mark.parametrize("flag,value", [("--stall-timeout", "0.01"), ("--stall-timeout", "inf"),
                                        ("--stall-abort-after", "-5"), ("--on-stall", "explode")])
def test_run_refuses_bad_options(tmp_path, flag, value):
    one_line_error(invoke("run", "--out", str(tmp_path / "r"), flag, value, "--", "true"), flag)
    assert not (tmp_path / "r" / "console.log").exists()


def test_environment_only_values_fall_back_with_one_warning(monkeypatch, capsys):
    from dsdoctor.live import session as sess
    monkeypatch.setattr(sess, "_warned", set())
    monkeypatch.setenv("DSDOCTOR_TELEMETRY_INTERVAL", "nan")
    monkeypatch.setenv("DSDOCTOR_STALL_TIMEOUT", "0.01")
    monkeypatch.setenv("DSDOCTOR_EXCHANGE_EVERY", "12")
    monkeypatch.delenv("RANK", raising=False)
    for _ in range(3):
        o = sess.LiveOptions.from_env()
        assert (o.telemetry_interval, o.stall_timeout, o.exchange_every) == (10.0, None, 12)
    err = capsys.readouterr().err.splitlines()
    assert len([ln for ln in err if "DSDOCTOR_TELEMETRY_INTERVAL=nan" in ln]) == 1
    assert len([ln for ln in err if "DSDOCTOR_STALL_TIMEOUT=0.01" in ln]) == 1


@pytest.mark.timeout(180)
def test_bad_environment_values_do_not_end_a_healthy_run(tmp_path):
    """Only the environment carries them (the script attaches itself, no `dsdoctor run`): a
    0.01 s stall timeout with abort used to end this run at step 3 (exit 86), and a nan
    telemetry interval spun; now the defaults hold and the run trains all its steps."""
    r = subprocess.run([sys.executable, "-m", "dsdoctor.demo.train", "--steps", "40", "--hidden", "32",
                        "--layers", "2", "--step-sleep-ms", "20"],
                       env=env(DSDOCTOR_AUTOATTACH="1", DSDOCTOR_OUT=str(tmp_path / "r"), DSDOCTOR_STALL_TIMEOUT="0.01",
                               DSDOCTOR_ON_STALL="abort", DSDOCTOR_TELEMETRY_INTERVAL="nan"),
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, (r.stdout[-1500:], r.stderr[-1500:])
    assert "done: 40 steps" in r.stdout
    assert r.stderr.count("DSDOCTOR_STALL_TIMEOUT=0.01") == 1 and r.stderr.count("DSDOCTOR_TELEMETRY_INTERVAL=nan") == 1
    kinds = [json.loads(ln)["kind"] for ln in (tmp_path / "r" / "events-rank0.jsonl").read_text().splitlines()]
    assert "stall" not in kinds and kinds.count("telemetry") <= 3


# ================================================================ 4. tracebacks -> one-line errors
def test_events_with_wrong_types_are_skipped_not_a_traceback(tmp_path):
    f = tmp_path / "events-rank0.jsonl"
    good = {"kind": "loss", "rank": 0, "step": 5, "time": 1.0, "data": {"value": float("nan")}}
    lines = [json.dumps({**good, "step": "abc"}), json.dumps({**good, "rank": [1]}),
             '{"kind":"loss","rank":0,"step":1,"data":{"value":' + "[" * 5000 + "]" * 5000 + "}}",
             '{"kind":"stall","rank":0,"step":3,"data":{"ranks":"all","last_step":"x"}}',
             '{"kind":"loss","rank":0,"step":2,"data":{"value":' + "9" * 400 + "}}",
             json.dumps(good).replace("NaN", '"nan"')]
    f.write_text("\n".join(lines) + "\n")
    res = invoke("analyze", "--json", str(f))
    doc = json.loads(res.stdout)
    assert [x["rule"] for x in doc["findings"]] and all(5 in x["steps"] for x in doc["findings"] if "nan" in x["rule"])


@pytest.mark.parametrize("args,words", [
    (["estimate", "--params", "1e999"], ["too large"]),
    (["estimate", "--params", "1e400B"], ["too large"]),
    (["estimate", "--params", "9" * 300], ["not a parameter count"]),
    (["estimate", "--params", "7B", "--gpu-memory", "1e999GiB"], ["too large"]),
    (["doctor", "--params", "1e999"], ["too large"]),
    (["estimate", "--params", str(CORPUS / "hf" / "list.json")], ["JSON object"]),
    (["lr-range", str(CORPUS / "lr" / "deep.json")], []),
    (["lr-range", str(CORPUS / "lr" / "inf-step.csv")], ["not a step number"]),
])
def test_bad_numbers_and_shapes_are_one_line_errors(args, words):
    one_line_error(invoke(*args), *words)


@pytest.mark.parametrize("name,words", [
    ("where-pow", ["match.where"]), ("where-import", ["unknown function"]), ("where-setcomp", ["SetComp"]),
    ("where-lambda", ["Lambda"]), ("where-fstring", ["JoinedStr"]), ("where-deep-chain", ["longer than"]),
    ("where-deep-parens", ["nested"]), ("explains-string", ["'explains'"]), ("priority-string", ["'priority'"]),
    ("title-list", ["'title'"]), ("int-key", ["unknown field"]),
])
def test_bad_rule_files_are_one_line_errors(tmp_path, name, words):
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    one_line_error(invoke("analyze", str(log), "--rules", str(CORPUS / "rules" / f"{name}.yaml")),
                   "bad rule file", *words)


# ================================================================ 5. hangs
@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "pipe.json"
    os.mkfifo(p)
    return p


@pytest.mark.parametrize("args", [
    ["doctor", "--config", "{fifo}"], ["analyze", "{log}", "--config", "{fifo}"],
    ["estimate", "--params", "7B", "--config", "{fifo}"], ["estimate", "--params", "{fifo}"],
    ["analyze", "{log}", "--config", "{cfg}", "--write-config", "{fifo}"],
    ["doctor", "--config", "{cfg}", "--fix", "{fifo}"], ["lr-range", "{fifo}"], ["lr-range", "/dev/zero"],
    ["analyze", "{log}", "--rules", "{fifo}"],
])
@pytest.mark.timeout(90)
def test_fifos_and_devices_are_refused_not_read(tmp_path, fifo, args):
    cfg, log, _ = _config(tmp_path)
    cfg.write_text('{"train_batch_size": 8, "zero_optimization": {"stage": 3, "cpu_offload": true}}')
    args = [a.format(fifo=fifo, log=log, cfg=cfg) for a in args]
    t0 = time.monotonic()
    r = dsdoctor(args, timeout=60)
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-500:])
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dsdoctor: error:") and ("FIFO" in err[0] or "device" in err[0]
                                                                       or "regular file" in err[0]), err
    assert time.monotonic() - t0 < 30


def _sweep_csv(path: Path, n: int) -> Path:
    """An LR sweep's shape (flat, descent, minimum, blow-up) as a CSV step,lr,loss."""
    import math
    rows = ["step,lr,loss"]
    for i in range(n):
        lr = 1e-6 * 10 ** (6 * i / n)
        loss = 2 - 1.5 * min(1.0, i / (0.6 * n)) + max(0.0, (i - 0.7 * n) / n * 50) + 0.01 * math.sin(i)
        rows.append(f"{i},{lr:.6g},{loss:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_lr_range_is_linear_in_rows(tmp_path):
    """100k rows: 25 s before (a rolling median over n/15 points); now a capped window."""
    f = _sweep_csv(tmp_path / "big.csv", 100_000)
    # CPU time, not wall time: the claim is the work done (the quadratic version took 25 s of it);
    # on the shared CI host (load ~20 on 2 cores) the same 1.6 s of work took 17.8 s of wall time
    t0 = time.process_time()
    res = invoke("lr-range", str(f), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["lr_min_loss"] > 0
    assert time.process_time() - t0 < 12
    big = tmp_path / "huge.csv"
    big.write_text("step,lr,loss\n" + "".join(f"{i},0.1,1\n" for i in range(200_002)))
    one_line_error(invoke("lr-range", str(big)), "more than 200000 points")


def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    t0 = time.process_time()          # the bomb's cost is CPU (100 s before): not the host's load
    one_line_error(invoke("analyze", str(log), "--rules", str(CORPUS / "rules" / "alias-bomb.yaml")), "aliases")
    assert time.process_time() - t0 < 5


# ================================================================ 6. wrong answers on the edges
def test_rules_folder_typo_is_an_error_not_a_clean_bill(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    one_line_error(invoke("analyze", str(log), "--rules", str(tmp_path / "nonexistent")), "no such rules folder")
    (tmp_path / "empty").mkdir()
    one_line_error(invoke("analyze", str(log), "--rules", str(tmp_path / "empty")), "no rule files")
    one_line_error(invoke("doctor", "--rules", "/nonexistent"), "no such rules folder")


def test_plot_is_written_where_it_is_said(tmp_path):
    csv = _sweep_csv(tmp_path / "sweep.csv", 300)
    target = tmp_path / "plot"                       # no suffix: was written to plot.png
    res = invoke("lr-range", str(csv), "--plot", str(target))
    assert res.exit_code == 0, res.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "plot.png").exists()
    assert f"plot written to {target}" in " ".join(res.stdout.split())
    one_line_error(invoke("lr-range", str(csv), "--plot", str(target)), "already exists")
    one_line_error(invoke("lr-range", str(csv), "--plot", str(tmp_path)), "is a directory")
    assert invoke("lr-range", str(csv), "--plot", str(target), "--force").exit_code == 0


SLEEPER = "import time, sys\nprint('started', flush=True)\ntime.sleep(float(sys.argv[1]))\nprint('slept', flush=True)\n"


@pytest.mark.timeout(240)
def test_one_run_one_folder(tmp_path):
    """Two `dsdoctor run` on one --out: the second is refused while the first runs (it used to
    mix its events in). A later run in a folder with an earlier run's evidence is refused
    too (that run's NaN was reported again), unless --force moves the old files aside."""
    out = tmp_path / "shared"
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    first = subprocess.Popen([sys.executable, "-m", "dsdoctor", "run", "--out", str(out), "--", sys.executable,
                              "-m", "dsdoctor.demo.train", "--steps", "12", "--fault", "nan", "--fault-step", "6",
                              "--hidden", "32", "--layers", "2", "--step-sleep-ms", "300"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / ".dsdoctor-run.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = dsdoctor(["run", "--out", str(out), "--", sys.executable, str(script), "0"], timeout=60)
        assert second.returncode == 2 and "in use by another dsdoctor run" in second.stderr, second.stderr
        assert "started" not in second.stdout
        console, _ = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    assert first.returncode == 0, console.decode(errors="replace")[-2000:]
    assert b"nan" in console.lower()
    later = dsdoctor(["run", "--out", str(out), "--", sys.executable, str(script), "0"], timeout=60)
    assert later.returncode == 2 and "already holds an earlier run" in later.stderr, later.stderr
    forced = dsdoctor(["run", "--out", str(out), "--force", "--", sys.executable, str(script), "0"], timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert "nan" not in forced.stdout.lower().replace("nan_", ""), forced.stdout[-2000:]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("shared.previous-")]
    assert len(aside) == 1 and (aside[0] / "events-rank0.jsonl").exists() and (aside[0] / "console.log").exists()
    assert not (out / "events-rank0.jsonl").exists()


def test_attach_keyword_values_that_never_work_keep_the_default(capsys):
    """dsdoctor.attach(engine, stall_timeout=nan) must not break (or spin) the training: the
    value is refused with one warning and the default kept; deliberate short values stay."""
    from dsdoctor.live import session as live_session
    from dsdoctor.live.session import LiveOptions
    live_session._warned.clear()
    o = LiveOptions.from_env(stall_timeout=float("nan"), telemetry_interval=float("inf"),
                             exchange_every=0, on_stall="explode", check_every=2.5)
    d = LiveOptions()
    assert (o.stall_timeout, o.telemetry_interval, o.exchange_every, o.on_stall, o.check_every) == \
        (d.stall_timeout, d.telemetry_interval, d.exchange_every, d.on_stall, d.check_every)
    err = capsys.readouterr().err
    assert err.count("dsdoctor: warning: dsdoctor.attach:") == 5 and "Traceback" not in err
    o = LiveOptions.from_env(stall_timeout=0.5, telemetry_interval=0)     # deliberate: kept
    assert o.stall_timeout == 0.5 and o.telemetry_interval == 0
