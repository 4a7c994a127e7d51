"""Live mode, single-process side: `dsdoctor run` over the real demo training script (DeepSpeed
on the CPU, gloo), attach/close, and failure containment. The cross-rank parts (straggler,
stall) are in test_live_cross_rank.py.

Every run is a subprocess in its own process group with a timeout; the group is killed
whatever happens. Runs are module-scoped fixtures so several asserts share one run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

from dsdoctor.pipeline import Diagnoser
from dsdoctor.events import read_events
from dsdoctor.sources.inputs import expand
from dsdoctor.sources.logs import read_log
from dsdoctor.live import hooks as live_hooks
import run_ahead  # noqa: E402

pytestmark = pytest.mark.slow

TRAIN = str(Path(__file__).resolve().parent.parent / "dsdoctor" / "demo" / "train.py")
ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int, str]:
    """Run with a wall-clock limit; afterwards nothing it started is left (dsdoctor run puts
    the training in its own process group, so the whole process tree is collected)."""
    import psutil
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env or ENV, start_new_session=True)
    tree: dict[int, psutil.Process] = {}

    def collect() -> None:
        try:
            for c in psutil.Process(proc.pid).children(recursive=True):
                tree.setdefault(c.pid, c)
        except psutil.Error:
            pass
    try:
        deadline = time.monotonic() + timeout
        while True:
            collect()
            try:
                out, _ = proc.communicate(timeout=2)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}")
    finally:
        for p in [psutil.Process(proc.pid)] if proc.poll() is None else []:
            tree.setdefault(p.pid, p)
        for p in tree.values():
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return proc.returncode, out


class Run:
    def __init__(self, out: Path, rc: int, console: str):
        self.out, self.rc, self.console = out, rc, console
        self.events = []
        for f in sorted(out.glob("events-rank*.jsonl")):
            self.events += list(read_events(f.read_text().splitlines(), str(f)))
        diag = Diagnoser()
        for inp in expand([str(out)]):
            diag.feed_all(read_log(inp))
        self.findings = diag.finish()

    def kinds(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]

    def finding(self, category: str):
        return next((f for f in self.findings if f.category == category), None)


def dsdoctor_run(tmp: Path, train_args: list[str], nproc: int = 1, run_args: list[str] = (),
                 timeout: float = 150) -> Run:
    out = tmp / "run"
    if nproc == 1:
        cmd = [sys.executable, TRAIN]
    else:
        # --standalone: torchrun picks a free port itself (no race with other tests' ports)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), TRAIN]
    rc, console = _run([sys.executable, "-m", "dsdoctor", "run", "--out", str(out), *run_args, "--",
                        *cmd, *train_args], timeout)
    return Run(out, rc, console)


# The three runs of one rank below (NaN, fp16 overflow, host OOM) are started one fixture ahead in a thread
# (tests/run_ahead.py): the next one runs on the other core while the tests of this one read it. The
# healthy 2-rank run starts alone, after the OOM run ended (its step times must not share the cores).
_runs: dict[str, run_ahead.Background] = {}


def _run_ahead(name: str, tmp_path_factory) -> run_ahead.Background:
    if name not in _runs:
        tmp = tmp_path_factory.mktemp(name)       # in this thread: pytest numbers its folders
        _runs[name] = run_ahead.Background(lambda: dsdoctor_run(tmp, *RUNS[name][:1], **RUNS[name][1])).start()
    return _runs[name]


RUNS = {   # name: (training arguments, dsdoctor_run's other arguments)
    "nan": (["--steps", "15", "--fault", "nan", "--fault-step", "6"], {"run_args": ["--localize-nan"]}),
    "ovf": (["--steps", "60", "--dtype", "fp16", "--zero-stage", "1", "--initial-scale-power", "16", "--fault",
             "overflow", "--fault-step", "25"], {}),
    "oom": (["--steps", "10", "--fault", "oom", "--fault-step", "3"], {}),
}


# ------------------------------------------------------------------ NaN at step k
@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    run = _run_ahead("nan", tmp_path_factory)
    _run_ahead("ovf", tmp_path_factory)
    return run.result()


def test_nan_loss_at_the_injected_step(nan_run):
    assert nan_run.rc == 0, nan_run.console[-2000:]
    f = nan_run.finding("nan_loss")
    assert f is not None, [x.rule for x in nan_run.findings]
    assert min(f.steps) == 6 and f.ranks == [0]


def test_nan_events_written_and_module_localized(nan_run):
    losses = {e.step: e.data["value"] for e in nan_run.kinds("loss")}
    assert losses[5] == losses[5] and losses[6] != losses[6]      # finite at 5, NaN at 6
    # fp32: the NaN gradient poisons the weights, so the next forward's first layer is named
    loc = nan_run.kinds("nonfinite_module")
    assert loc and loc[0].data["module"] == "body.0" and loc[0].step == 7
    assert len(nan_run.kinds("step")) == 15
    assert (nan_run.out / "console.log").read_text().count("loss") >= 2
    assert "nan" in nan_run.console.lower()               # the diagnosis was printed


# ------------------------------------------------------------------ fp16 loss-scale collapse
@pytest.fixture(scope="module")
def overflow_run(tmp_path_factory):
    run = _run_ahead("ovf", tmp_path_factory)
    _run_ahead("oom", tmp_path_factory)
    return run.result()


def test_loss_scale_collapse_warned_before_deepspeed_aborts(overflow_run):
    r = overflow_run
    assert r.rc != 0                                          # DeepSpeed's own exception ended it
    exc = r.kinds("exception")
    assert exc and "loss scale already at minimum" in exc[0].data["message"] and exc[0].data["phase"] == "step"
    abort_step = r.kinds("scale_at_minimum")[0].step
    # replay the live events in order, as the rank's Diagnoser saw them: when did the warning come?
    diag = Diagnoser()
    warned_at = None
    for ev in r.events:
        for f in diag.feed(ev):
            if f.category == "loss_scale_collapse" and warned_at is None:
                warned_at = ev.step
    assert warned_at is not None, "no loss_scale_collapse finding from the live events"
    assert abort_step - warned_at >= 3, (warned_at, abort_step)
    f = r.finding("loss_scale_collapse")
    assert f is not None and f.severity in ("warning", "error", "critical")


def test_overflows_at_a_static_loss_scale_are_not_calibration(tmp_path):
    # fp16.loss_scale 128 (static): DeepSpeed's FP16_UnfusedOptimizer skips every overflowing step and
    # never changes the scale, so it is no calibration (the verdict once was 'calibrated (normal)')
    r = dsdoctor_run(tmp_path, ["--steps", "16", "--dtype", "fp16", "--zero-stage", "0", "--static-loss-scale", "128",
                                "--fault", "overflow", "--fault-step", "6"])
    assert r.rc == 0, r.console[-2000:]
    f = r.finding("loss_scale_collapse")
    assert f is not None and f.rule == "loss-scale-static-overflow", [x.rule for x in r.findings]
    assert "static fp16 loss scale 128" in f.title and min(f.steps) >= 6, (f.title, f.steps)
    assert any(fx.config_patch == {"fp16": {"loss_scale": 0, "initial_scale_power": 16}} for fx in f.fixes), f.fixes


def test_overflow_events_carry_scale_and_hysteresis(overflow_run):
    ovf = overflow_run.kinds("overflow")
    assert ovf[0].step == 25 and ovf[0].data["hysteresis"] == 1
    assert ovf[1].data["prev_scale"] == 65536 and ovf[1].data["new_scale"] == 32768
    ctx = overflow_run.kinds("context")[0].data
    assert ctx["dtype"] == "fp16" and ctx["min_loss_scale"] == 1 and ctx["zero_stage"] == 1


# ------------------------------------------------------------------ real host OOM
@pytest.fixture(scope="module")
def oom_run(tmp_path_factory):
    return _run_ahead("oom", tmp_path_factory).result()


def test_host_oom_in_forward(oom_run):
    r = oom_run
    assert r.rc != 0
    oom = r.kinds("oom")
    assert oom and oom[0].data["device"] == "cpu" and oom[0].data["phase"] == "forward" and oom[0].step == 3
    assert oom[0].data["rss"] > 0 and oom[0].data["available"] > 0 and oom[0].data["requested"] == 64 << 30
    # re-raised unchanged: the user's traceback is intact
    assert "DefaultCPUAllocator: can't allocate memory" in (r.out / "console.log").read_text()
    f = r.finding("host_oom")
    assert f is not None, [x.rule for x in r.findings]
    assert any("forward" in (f.summary + f.title).lower() or 3 in f.steps for _ in [0])


# ------------------------------------------------------------------ healthy, 2 ranks
@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory):
    return dsdoctor_run(tmp_path_factory.mktemp("ok"), ["--steps", "30", "--zero-stage", "2", "--dtype", "bf16"],
                        nproc=2, timeout=200)


def test_healthy_two_ranks_no_finding_above_info(healthy_run):
    r = healthy_run
    assert r.rc == 0, r.console[-4000:]
    assert {e.rank for e in r.kinds("step")} == {0, 1}
    assert len(r.kinds("step")) == 60
    assert [f.rule for f in r.findings if f.severity != "info"] == [], \
        [(f.rule, f.summary) for f in r.findings]
    assert not r.kinds("doctor_error")
    assert (r.out / "tb" / "rank0").is_dir()


# ------------------------------------------------------------------ in-process: attach/close, containment
INPROC = textwrap.dedent("""
    import json, os, sys, tempfile
    from pathlib import Path
    sys.path.insert(0, os.path.dirname(TRAIN))
    import train as demo
    demo.single_process_env()
    import deepspeed, torch
    from deepspeed.runtime.engine import DeepSpeedEngine
    import dsdoctor
    from dsdoctor.live import hooks as H, tboard as T
    from dsdoctor import pipeline

    deepspeed.init_distributed(dist_backend="gloo")
    args = demo.parse_args(["--hidden", "64"])
    model, _ = demo.build_model(args, 0)
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()),
                                      config={"train_micro_batch_size_per_gpu": 4, "train_batch_size": 4})
    tmp = Path(tempfile.mkdtemp())
    res = {}

    def train(n, nan_at=None):
        start = engine.global_steps
        for i in range(n):
            x = torch.randn(4, 64)
            if i == nan_at:
                x[0, 0] = float("nan")
            loss = engine(x, x.sum(1))
            engine.backward(loss)
            engine.step()
        return engine.global_steps - start

    def nhooks():
        return sum(len(m._forward_hooks) for m in engine.module.modules())

    def pristine():
        return (all(k not in engine.__dict__ for k in ("forward", "backward", "step", "_dsdoctor"))
                and engine.forward.__func__ is DeepSpeedEngine.forward and nhooks() == hooks0)

    hooks0 = nhooks()
    res["pristine_before"] = pristine()
    doc = dsdoctor.attach(engine, out=tmp / "a", quiet=True)
    res["wrapped"] = "forward" in engine.__dict__ and "step" in engine.__dict__
    res["attach_twice_same"] = dsdoctor.attach(engine, out=tmp / "a2", quiet=True) is doc
    res["steps_attached"] = train(5)
    # no step's loss tensor (and so no autograd graph) is kept past its step: on the CPU the
    # hooks read the loss and grad norm as floats at the optimizer step
    import weakref
    x = torch.randn(4, 64)
    loss = engine(x, x.sum(1)); engine.backward(loss); engine.step()
    kept = weakref.ref(loss); del loss
    res["loss_freed"] = kept() is None
    res["pending_tensors"] = sum(isinstance(v, torch.Tensor) for t in doc.hooks._pending for v in t)
    doc.close(); doc.close()
    res["pristine_after"] = pristine()
    res["events_a"] = sorted({json.loads(l)["kind"] for l in (tmp / "a" / "events-rank0.jsonl").read_text().splitlines()})

    # containment: each part made to fail; training must do the same number of steps
    def contained(name, out, patch=None):
        undo = patch() if patch else None
        doc = dsdoctor.attach(engine, out=out, quiet=True)
        n = train(5)
        doc.close()                  # per-step events reach TensorBoard/detectors on the writer thread
        errs = [p for p, _ in doc.session.errors]
        if undo:
            undo()
        res[name] = {"steps": n, "errors": errs, "pristine": pristine()}

    blocker = tmp / "file"; blocker.write_text("x")
    contained("unwritable_dir", blocker / "sub")

    def boom(*a, **k):
        raise RuntimeError("injected")

    def patch(obj, attr):
        def do():
            old = getattr(obj, attr); setattr(obj, attr, boom)
            return lambda: setattr(obj, attr, old)
        return do

    contained("hook_raises", tmp / "b", patch(H.EngineHooks, "_optimizer_step_done"))
    contained("begin_raises", tmp / "c", patch(H.EngineHooks, "_begin"))
    contained("tensorboard_fails", tmp / "d", patch(T.TensorBoard, "_write"))
    contained("tensorboard_missing", tmp / "e", patch(T.TensorBoard, "start"))
    contained("diagnoser_fails", tmp / "f", patch(pipeline.Diagnoser, "feed"))
    contained("memory_fails", tmp / "g", patch(H, "memory_now"))

    # localize NaN (last: the NaN poisons the weights) - the hooks are gone afterwards
    doc = dsdoctor.attach(engine, out=tmp / "n", quiet=True, localize_nan=True)
    res["steps_nan"] = train(4, nan_at=1)
    ev = [json.loads(l) for l in (tmp / "n" / "events-rank0.jsonl").read_text().splitlines()]
    res["nonfinite_module"] = [(e["step"], e["data"]["module"]) for e in ev if e["kind"] == "nonfinite_module"]
    res["nan_findings"] = [f.category for f in doc.findings]
    doc.close()
    res["pristine_end"] = pristine()
    print("RESULT " + json.dumps(res))
""")


@pytest.fixture(scope="module")
def inproc(tmp_path_factory):
    script = tmp_path_factory.mktemp("inproc") / "inproc.py"
    script.write_text(f"TRAIN = {TRAIN!r}\n" + INPROC)
    rc, out = _run([sys.executable, str(script)], timeout=150)
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    assert rc == 0 and line, out[-3000:]
    return json.loads(line[len("RESULT "):])


def test_attach_then_close_leaves_engine_as_it_was(inproc):
    assert inproc["pristine_before"] and inproc["wrapped"] and inproc["attach_twice_same"]
    assert inproc["steps_attached"] == 5
    assert inproc["pristine_after"]
    assert {"context", "step", "loss"} <= set(inproc["events_a"])


def test_no_loss_tensor_kept_past_the_step(inproc):
    # a kept loss keeps its autograd graph: ~40-115 more page faults per step inside DeepSpeed
    assert inproc["loss_freed"] and inproc["pending_tensors"] == 0


@pytest.mark.parametrize("case,part", [
    ("unwritable_dir", "events"), ("hook_raises", "steps"), ("begin_raises", "steps"),
    ("tensorboard_fails", "tensorboard"), ("tensorboard_missing", "tensorboard"),
    ("diagnoser_fails", "diagnose"), ("memory_fails", "memory")])
def test_containment(inproc, case, part):
    r = inproc[case]
    assert r["steps"] == 5                 # training did every step
    assert part in r["errors"], r["errors"]  # the failure was recorded against that part only
    assert r["pristine"]


def test_localize_nan_names_module_and_removes_hooks(inproc):
    assert inproc["steps_nan"] == 4
    assert [m for _, m in inproc["nonfinite_module"]] == ["body.0"]     # one step of hooks, one name
    assert inproc["pristine_end"]
    assert "nan_loss" in inproc["nan_findings"]


# ------------------------------------------------------------------ pure helpers (fakes)
def test_gpu_memory_from_fake_stats():
    stats = {"allocated_bytes.all.current": 10, "reserved_bytes.all.current": 20,
             "allocated_bytes.all.peak": 15, "num_alloc_retries": 3}
    assert live_hooks.gpu_memory(stats) == {"gpu_allocated": 10, "gpu_reserved": 20, "gpu_peak": 15}
    assert live_hooks.gpu_memory({}) == {}


def test_classify_oom_messages():
    torch = pytest.importorskip("torch")
    assert live_hooks.classify_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "cuda"
    assert live_hooks.classify_oom(RuntimeError("CUDA error: out of memory")) == "cuda"
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)")
    assert live_hooks.classify_oom(cpu) == "cpu"
    assert live_hooks.requested_bytes(str(cpu)) == 4294967296
    assert live_hooks.requested_bytes("Tried to allocate 2.00 GiB. GPU 0") == 2 << 30
    assert live_hooks.classify_oom(ValueError("out of memory")) is None
    assert live_hooks.classify_oom(RuntimeError("shape mismatch")) is None


def test_tensorboard_files_read_back_by_tensorboard(tmp_path, monkeypatch):
    """The hand-written event file, read by TensorBoard's own EventAccumulator: window means,
    a NaN at its own step, rare scalars as they come, telemetry, texts; nothing is written
    before the first window (lazy file) and never on the emitting thread."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from dsdoctor.live import tboard
    from dsdoctor.live.session import LiveOptions, LiveSession
    monkeypatch.setattr(tboard, "PERIOD", 0.0)           # windows by steps only: EVERY = 10
    s = LiveSession(LiveOptions(out=tmp_path, telemetry_interval=0), rank=0, world_size=1, store=None, quiet=True)
    tb = tboard.TensorBoard(s)
    s.add_part(tb)
    tb_dir = tmp_path / "tb" / "rank0"
    s.emit("loss_scale", step=0, value=65536.0)           # a rare event, on this thread: queued only
    assert not tb_dir.exists()
    for step in range(25):
        s.emit("step", step=step, fwd_ms=2.0, bwd_ms=4.0, step_ms=1.0, data_ms=0.5, micro_steps=1)
        s.emit("loss", step=step, value=float("nan") if step == 13 else float(step), name="loss")
    s.emit("telemetry", step=25, cpu_percent=50.0, rss=1000, throttle=["hw_slowdown"])
    s.emit("exception", step=25, type="RuntimeError", message="boom", phase="forward")
    deadline = time.monotonic() + 10
    while not tb_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)                                   # the writer thread's tick creates it
    assert tb_dir.is_dir()
    s.close()
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert loss[0] == (9, 4.5)                             # mean of steps 0-9, at the window's last step
    assert (13, pytest.approx(float("nan"), nan_ok=True)) in loss   # the NaN at its own step
    assert loss[-1] == (24, pytest.approx((20 + 21 + 22 + 23 + 24) / 5))  # the last window, at close
    assert [(e.step, e.value) for e in acc.Scalars("time_ms/backward")][0] == (9, 4.0)
    assert [(e.step, e.value) for e in acc.Scalars("fp16/loss_scale")] == [(0, 65536.0)]
    assert [e.value for e in acc.Scalars("telemetry/cpu_percent")] == [50.0]
    assert [e.value for e in acc.Scalars("telemetry/throttle_count")] == [1.0]
    text = acc.Tensors("events/exception/text_summary")[0]
    assert text.step == 25 and b"boom" in text.tensor_proto.string_val[0]
    assert not s.errors


# ------------------------------------------------------------------ HF Trainer (skipped without transformers)
HF_SCRIPT = textwrap.dedent("""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256, n_positions=64))
    class DS(torch.utils.data.Dataset):
        def __len__(self): return 64
        def __getitem__(self, i):
            ids = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": ids}
    ds_cfg = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
              "train_batch_size": "auto", "zero_optimization": {"stage": 2}, "bf16": {"enabled": "auto"}}
    args = TrainingArguments(output_dir=OUT, per_device_train_batch_size=4, max_steps=6, use_cpu=True, bf16=True,
                             deepspeed=ds_cfg, logging_steps=2, report_to=[], save_strategy="no")
    Trainer(model=model, args=args, train_dataset=DS()).train()
""")


def test_hf_trainer_engine_is_attached(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    script = tmp_path / "hf_train.py"
    script.write_text(f"OUT = {str(tmp_path / 'hf')!r}\n" + HF_SCRIPT)
    out = tmp_path / "run"
    rc, console = _run([sys.executable, "-m", "dsdoctor", "run", "--out", str(out), "--", sys.executable, "-m",
                        "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                        str(script)], timeout=240)
    assert rc == 0, console[-2000:]
    r = Run(out, rc, console)
    assert len(r.kinds("step")) == 6 and len(r.kinds("loss")) == 6
    assert r.kinds("context")[0].data["zero_stage"] == 2


# ------------------------------------------------------------------ dsdoctor run: SIGTERM forwarded
def test_run_forwards_sigterm_and_still_diagnoses(tmp_path):
    import psutil
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dsdoctor", "run", "--out", str(out), "--", sys.executable, TRAIN,
                             "--steps", "50", "--fault", "stall", "--fault-step", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                            start_new_session=True)
    tree = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for c in psutil.Process(proc.pid).children(recursive=True):
                tree.setdefault(c.pid, c)
            if "stalling before backward" in (out / "console.log").read_text() if (out / "console.log").exists() else False:
                break
            time.sleep(0.5)
        else:
            log = out / "console.log"
            pytest.fail("the stall fault never started: " + (log.read_text()[-2000:] if log.exists() else "no console.log"))
        # step events reach the disk within STEP_FLUSH_SECONDS (the writer thread); a kill
        # sooner than that may lose the last ones by design
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        console, _ = proc.communicate(timeout=60)
        time.sleep(1)
        left = [p.pid for p in tree.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        for p in [*tree.values()]:
            try:
                p.kill()
            except psutil.Error:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "dsdoctor run" in console and "exit code 143" in console
    steps = [json.loads(ln) for ln in (out / "events-rank0.jsonl").read_text().splitlines()]
    assert sum(1 for e in steps if e["kind"] == "step") == 3      # buffered step events reached the disk
    assert left == []                      # the training process went with the signal


def test_sitecustomize_fallback_when_pth_missing(tmp_path, monkeypatch):
    """Installs without dsdoctor_autoattach.pth: `dsdoctor run` puts a sitecustomize on PYTHONPATH."""
    from dsdoctor import supervise as run_cmd
    monkeypatch.setattr(run_cmd, "pth_installed", lambda: False)
    env = run_cmd.child_env(tmp_path, None, None, False, None, base=dict(ENV))
    code = ("import sys; sc = sys.modules.get('sitecustomize'); "
            "print(getattr(sc, '__file__', ''), type(sys.meta_path[0]).__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "_site" in out and "_DeepSpeedFinder" in out and out.strip().endswith("False")


def test_run_options_reach_every_rank_and_bad_numbers_keep_defaults(tmp_path, monkeypatch):
    """`dsdoctor run` options travel as DSDOCTOR_* variables; a malformed one must not stop training."""
    from dsdoctor import supervise as run_cmd
    from dsdoctor.live.session import LiveOptions
    env = run_cmd.child_env(tmp_path, 30.0, "abort", True, False, base={}, stall_abort_after=120.0)
    for k, v in env.items():
        if k.startswith("DSDOCTOR_"):
            monkeypatch.setenv(k, v)
    o = LiveOptions.from_env()
    assert (o.stall_timeout, o.on_stall, o.stall_abort_after, o.localize_nan, o.tensorboard) == (30.0, "abort", 120.0, True, False)
    monkeypatch.setenv("DSDOCTOR_STALL_TIMEOUT", "3O")
    monkeypatch.setenv("DSDOCTOR_EXCHANGE_EVERY", "ten")
    o = LiveOptions.from_env()
    assert o.stall_timeout is None and o.exchange_every == 10
