"""`dsdoctor analyze` on what runs leave behind besides text logs: DeepSpeed's TensorBoard and
csv_monitor output, HF's trainer_state.json, torchrun --log-dir trees with error.json.

The DeepSpeed monitor and the torchrun tree come from real runs made here (DeepSpeed engine on
the CPU, a NaN or a host OOM injected); trainer_state.json is written with the exact call of
transformers/trainer_callback.py: TrainerState.save_to_json (transformers is not a test
dependency).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor import cli
from dsdoctor.sources.inputs import expand
from dsdoctor.sources.scalars import Point, to_events

if not cli.app.registered_commands:
    cli._register()

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
runner = CliRunner()


def analyze_json(*args: str) -> tuple[int, dict, str]:
    res = runner.invoke(cli.app, ["analyze", "--json", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.stderr
    return res.exit_code, json.loads(res.stdout), res.stderr


def by_rule(doc: dict) -> dict[str, dict]:
    return {f["rule"]: f for f in doc["findings"]}


def run_real(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    """A real training process in its own session, killed with its children whatever happens."""
    import psutil
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = ""
        pytest.fail(f"timed out after {timeout} s: {' '.join(cmd)}")
    finally:
        try:
            for c in psutil.Process(p.pid).children(recursive=True):
                c.kill()
        except psutil.Error:
            pass
        if p.poll() is None:
            p.kill()
        p.wait()
    return subprocess.CompletedProcess(cmd, p.returncode, out)


# ------------------------------------------------------------------ DeepSpeed monitor, real run
# PipelineEngine.train_batch writes Train/Samples/train_loss itself (deepspeed/runtime/pipe/engine.py),
# DeepSpeedEngine.step writes Train/Samples/lr and, in fp16, Train/Samples/loss_scale
# (deepspeed/runtime/engine.py). fp16 on the CPU needs the test-only accelerator patch
# (as dsdoctor/demo/train.py: allow_fp16_on_cpu). The NaN goes into the input of batch NAN_AT.
MONITOR_SCRIPT = textwrap.dedent('''
    import os, sys
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from dsdoctor.demo.train import allow_fp16_on_cpu, single_process_env
    single_process_env()
    import torch, deepspeed
    from torch import nn
    from deepspeed.pipe import PipelineModule
    OUT, NAN_AT, STEPS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    allow_fp16_on_cpu()
    deepspeed.init_distributed(dist_backend="gloo")
    torch.manual_seed(0)
    net = PipelineModule(layers=[nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)], num_stages=1, loss_fn=nn.MSELoss())
    cfg = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2, "steps_per_print": 10 ** 9,
           "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
           "fp16": {"enabled": True, "initial_scale_power": 8},
           "tensorboard": {"enabled": True, "output_path": os.path.join(OUT, "tb"), "job_name": "nan_job"},
           "csv_monitor": {"enabled": True, "output_path": os.path.join(OUT, "csv"), "job_name": "nan_job"}}
    engine, *_ = deepspeed.initialize(model=net, model_parameters=list(net.parameters()), config=cfg)
    state = {"step": 0}
    def batches():
        g = torch.Generator().manual_seed(1)
        while True:
            x = torch.randn(4, 16, generator=g)
            if state["step"] == NAN_AT:
                x[0, 0] = float("nan")
            yield x.half(), x.sum(1, keepdim=True)
    it = batches()
    for i in range(STEPS):
        state["step"] = i
        engine.train_batch(it)
    print("done", flush=True)
''')


@pytest.fixture(scope="module")
def monitor_run(tmp_path_factory):
    pytest.importorskip("deepspeed")
    pytest.importorskip("tensorboard")
    d = tmp_path_factory.mktemp("monitor")
    script = d / "monitor_train.py"
    script.write_text(MONITOR_SCRIPT)
    r = run_real([sys.executable, str(script), str(d / "out"), "3", "8"])
    assert r.returncode == 0 and "done" in r.stdout, r.stdout[-3000:]
    return d / "out"


@pytest.mark.slow
def test_tensorboard_monitor_folder_of_a_real_nan_run(monitor_run):
    tb = monitor_run / "tb"
    assert list(tb.rglob("*tfevents*"))
    code, doc, _ = analyze_json(str(tb))
    rules = by_rule(doc)
    assert code == 1 and "nan-loss" in rules, list(rules)
    nan = rules["nan-loss"]
    # batch 3 (0-based) is optimizer step 4 in DeepSpeed's count (global_steps after it), 32 samples
    assert nan["steps"][0] == 4 and nan["ranks"] == [0]
    ev = nan["evidence"][0]
    assert "tfevents" in ev["source"] and "Train/Samples/train_loss = nan at samples 32" in ev["text"]
    # the fp16 scaler skipped that step: the loss scale halved, read from Train/Samples/loss_scale
    scale = [f for f in doc["findings"] if f["category"] == "loss_scale_collapse"]
    assert scale and "256 to 128" in scale[0]["summary"], doc["findings"]


@pytest.mark.slow
def test_csv_monitor_folder_of_the_same_run(monitor_run):
    csvs = sorted(p.name for p in (monitor_run / "csv" / "nan_job").iterdir())
    assert csvs == ["Train_Samples_loss_scale.csv", "Train_Samples_lr.csv", "Train_Samples_train_loss.csv"]
    code, doc, _ = analyze_json(str(monitor_run / "csv"))
    nan = by_rule(doc)["nan-loss"]
    assert nan["steps"][0] == 4
    ev = nan["evidence"][0]                       # file and row of the CSV
    assert ev["source"].endswith("Train_Samples_train_loss.csv") and ev["line"] == 5


@pytest.mark.slow
def test_both_monitors_in_one_folder_are_read_once(monitor_run):
    kinds = [i.kind for i in expand([str(monitor_run)])]
    assert kinds == ["tensorboard"]                # the CSVs hold the same values
    code, doc, _ = analyze_json(str(monitor_run))
    assert [f["category"] for f in doc["findings"]].count("nan_loss") == 1
    assert "lr_schedule" not in [f["category"] for f in doc["findings"]]   # no duplicated series


BLOCK_TB = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'deepspeed', 'tensorboard'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, _Block())
from dsdoctor.cli import main
sys.argv = ['dsdoctor', 'analyze', '--json'] + sys.argv[1:]
main()
"""


@pytest.mark.slow
def test_without_tensorboard_the_csvs_are_read_and_tb_skipped_with_a_note(monitor_run):
    r = subprocess.run([sys.executable, "-c", BLOCK_TB, str(monitor_run)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stderr
    assert "TensorBoard event files skipped: reading them needs the tensorboard package" in r.stderr
    doc = json.loads(r.stdout)
    assert [f["rule"] for f in doc["findings"]][0] == "nan-loss"        # from the CSVs
    r = subprocess.run([sys.executable, "-c", BLOCK_TB, str(monitor_run / "tb")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "TensorBoard event files skipped" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ torchrun --log-dir, real run
RECORD_SCRIPT = textwrap.dedent('''
    import sys
    from torch.distributed.elastic.multiprocessing.errors import record
    from dsdoctor.demo.train import main
    sys.exit(record(main)())
''')


@pytest.mark.slow
def test_torchrun_log_dir_tree_has_ranks_and_reads_error_json(tmp_path):
    pytest.importorskip("deepspeed")
    script = tmp_path / "rec_train.py"
    script.write_text(RECORD_SCRIPT)
    logs = tmp_path / "tlog"
    r = run_real([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                  "--log-dir", str(logs), "--redirects", "3", str(script), "--steps", "8", "--hidden", "64",
                  "--layers", "2", "--fault", "oom", "--fault-rank", "1", "--fault-step", "3"])
    assert r.returncode != 0
    errs = sorted(logs.rglob("error.json"))
    assert errs, r.stdout[-3000:]
    assert all(p.parent.parent.name == "attempt_0" for p in errs)
    ins = expand([str(logs)])
    assert {(Path(i.name).name, i.rank_hint) for i in ins} >= {("stderr.log", 0), ("stderr.log", 1), ("error.json", 1)}
    code, doc, _ = analyze_json(str(logs))
    oom = by_rule(doc)["host-oom-allocator"]
    assert oom["ranks"] == [1]
    assert any(e["source"].endswith("error.json (py_callstack)") for e in oom["evidence"]), oom["evidence"]
    # rank 0 only lost its peer: named as rank 0, and as the consequence. Whether rank 0 says so at all is a race
    # (torchrun may stop it before its collective fails: seen once in CI, its stderr.log without a traceback; and
    # once it logged gloo's closed connection without one), so an echo is required when rank 0's own log holds a
    # traceback, and any echo must be rank 0's and the consequence
    echo = [f for f in doc["findings"] if f["rule"] != "host-oom-allocator" and f["severity"] != "info"]
    rank0_said = any("Traceback" in Path(i.name).read_text(errors="replace") for i in ins
                     if Path(i.name).name == "stderr.log" and i.rank_hint == 0)
    assert echo or not rank0_said, (echo, rank0_said)
    assert all(f["ranks"] == [0] and f["consequence_of"] == "host-oom-allocator" for f in echo), echo
    # error.json alone is an input too
    code, doc, _ = analyze_json(str(errs[-1]))
    assert by_rule(doc)["host-oom-allocator"]["ranks"] == [1]


# ------------------------------------------------------------------ HF trainer_state.json
def save_trainer_state(path: Path, state: dict) -> None:
    """transformers/trainer_callback.py: TrainerState.save_to_json, verbatim."""
    json_string = json.dumps(state, indent=2, sort_keys=True) + "\n"
    path.write_text(json_string, encoding="utf-8")


def hf_state(steps: int, nan_from: int | None = None) -> dict:
    hist = []
    for s in range(5, steps + 1, 5):
        bad = nan_from is not None and s >= nan_from
        hist.append({"epoch": s / steps, "grad_norm": math.inf if bad else 1.0 + s / 100,
                     "learning_rate": 5e-5 * (1 - s / steps), "loss": math.nan if bad else 2.0 - s / 100, "step": s})
        if s % 20 == 0:
            hist.append({"epoch": s / steps, "eval_loss": 1.9, "eval_runtime": 1.0, "step": s})
    hist.append({"epoch": 1.0, "step": steps, "total_flos": 1.0, "train_loss": 1.5, "train_runtime": 99.0,
                 "train_samples_per_second": 10.0})
    return {"best_metric": None, "epoch": 1.0, "global_step": steps, "log_history": hist, "max_steps": steps,
            "train_batch_size": 8}


def test_trainer_state_nan_with_its_line(tmp_path):
    p = tmp_path / "trainer_state.json"
    save_trainer_state(p, hf_state(60, nan_from=35))
    code, doc, _ = analyze_json(str(p))
    nan = by_rule(doc)["nan-loss"]
    assert nan["steps"][0] == 35
    ev = nan["evidence"][0]
    assert ev["source"] == str(p) and '"step": 35' in p.read_text().splitlines()[ev["line"] - 1]
    assert '"loss": NaN' in ev["text"]


def test_trainer_state_healthy_and_the_latest_checkpoint_only(tmp_path):
    for n in (20, 40, 60):
        d = tmp_path / "out" / f"checkpoint-{n}"
        d.mkdir(parents=True)
        save_trainer_state(d / "trainer_state.json", hf_state(n))
    ins = [i for i in expand([str(tmp_path / "out")]) if i.kind == "hf_state"]
    assert [Path(i.name).parent.name for i in ins] == ["checkpoint-60"]
    code, doc, _ = analyze_json(str(tmp_path / "out"))
    assert code == 0 and [f for f in doc["findings"] if f["severity"] != "info"] == []


def test_trainer_state_events_skip_eval_and_summary(tmp_path):
    from dsdoctor.sources.logs import read_log
    p = tmp_path / "trainer_state.json"
    save_trainer_state(p, hf_state(40))
    evs = list(read_log(expand([str(p)])[0]))
    assert {e.kind for e in evs} == {"loss", "grad_norm", "lr"}
    assert sorted({e.step for e in evs}) == [5, 10, 15, 20, 25, 30, 35, 40]
    assert all(e.data.get("name") in (None, "loss") for e in evs)


# ------------------------------------------------------------------ tags -> events
def test_deepspeed_tags_become_the_events_the_detectors_read():
    bs = 16
    series = {
        "Train/Samples/lr": [Point(bs * s, 1e-3) for s in range(1, 4)],
        "Train/Samples/loss_scale": [Point(bs * s, v) for s, v in ((1, 256.0), (2, 128.0), (3, 128.0))],
        "Train/Samples/elapsed_time_ms_forward": [Point(bs * s, 5.0) for s in range(1, 4)],
        "Train/Samples/elapsed_time_ms_backward": [Point(bs * s, 9.0) for s in range(1, 4)],
        "Train/Samples/eval_loss": [Point(bs, 1.0)],
        "my/own/samples_per_sec": [Point(7, 123.0)],
        "unrelated/histogram_mean": [Point(1, 0.0)],
    }
    evs = to_events(series, "tb")
    kinds = [(e.kind, e.step) for e in evs]
    assert ("lr", 1) in kinds and ("loss_scale", 2) in kinds and ("throughput", 7) in kinds
    timers = [e for e in evs if e.kind == "timers"]
    assert [(e.step, e.data) for e in timers][0] == (1, {"fwd": 5.0, "bwd": 9.0})
    assert not any(e.kind == "loss" for e in evs)         # eval loss is no training point
    # the csv_monitor file names (tag with '/' -> '_') classify the same
    evs2 = to_events({"Train_Samples_lr": series["Train/Samples/lr"]}, "csv")
    assert [(e.kind, e.step) for e in evs2] == [("lr", 1), ("lr", 2), ("lr", 3)]
    # other writers' names, with their own step as x: HF's TensorBoardCallback, dashes
    from dsdoctor.sources.scalars import classify
    assert [classify(t) for t in ("train/loss", "train/grad_norm", "train/learning_rate", "loss-scale",
                                  "grad-norm", "eval/loss", "train/epoch")] == \
        [("loss", "train_loss"), ("grad_norm", "value"), ("lr", "value"), ("loss_scale", "value"),
         ("grad_norm", "value"), None, None]


def test_a_folder_of_foreign_csvs_is_not_a_monitor_folder(tmp_path):
    (tmp_path / "data.csv").write_text("a,b,c\n1,2,3\n")
    res = runner.invoke(cli.app, ["analyze", str(tmp_path)])
    assert res.exit_code == 2 and "folder contains no log files" in res.stderr


def test_broken_artifacts_are_warnings_not_tracebacks(tmp_path):
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    tb.mkdir()
    (tb / "events.out.tfevents.1.host").write_bytes(bytes(range(256)) * 8)     # not TensorBoard records
    code, doc, err = analyze_json(str(tb))
    assert code == 0 and "no scalar values in these TensorBoard event files" in err
    bad = tmp_path / "logs" / "attempt_0" / "3"
    bad.mkdir(parents=True)
    (bad / "error.json").write_text('{"message": ')                              # cut short by a kill
    code, doc, err = analyze_json(str(tmp_path / "logs"))
    assert code == 0 and "not a torchelastic error file" in err
