"""Recognisers for messages that real runs print and that dsdoctor used to miss: DeepSpeed,
transformers and accelerate integration errors, NaN in TRL metric dicts, Megatron's non-finite
grad norm, fairseq's loss scaler, many ranks in one stream, tqdm iteration times, a phase that
dominates the step, NCCL/gloo communication texts; and scripts/score_realworld.py.

Texts come from the libraries' raise sites (checked against the installed source where the
library is installed) or from real runs made here (DeepSpeed on the CPU, gloo).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dsdoctor.pipeline import Diagnoser
from dsdoctor.sources.logs import events_from_text
from ports import free_port
import run_ahead
from diagnose_text import RULES, findings, top

REPO = Path(__file__).resolve().parent.parent


def _source(module: str, rel: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{module} is not installed")
    return (Path(list(spec.submodule_search_locations)[0]) / rel).read_text(encoding="utf-8")


# ------------------------------------------------------------------ DeepSpeed: client optimizer under ZeRO-Offload
CLIENT_OPT_RUN = textwrap.dedent("""
    import os, torch, deepspeed
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = {"train_micro_batch_size_per_gpu": 1,
           "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}
    deepspeed.initialize(model=model, optimizer=opt, config=cfg)
""")


def _script_ahead(name: str, source: str, timeout: float, env) -> run_ahead.Ahead:
    """`python SCRIPT` (`source` written as `name` into a folder of its own when it starts), listed to start one
    test ahead (tests/run_ahead.py); `env` is called then (a free port of that moment)."""
    script = Path(run_ahead.scratch("realworld")) / name
    return run_ahead.QUEUE.add([sys.executable, str(script)], timeout=timeout, env=env,
                               setup=lambda: script.write_text(source))


def _one_rank_env() -> dict:
    return dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                LOCAL_RANK="0", DS_ACCELERATOR="cpu")


CLIENT_OPT_PROCESS = _script_ahead("run.py", CLIENT_OPT_RUN, 170, _one_rank_env)


@pytest.mark.timeout(180)
def test_client_optimizer_under_offload_from_a_real_deepspeed_run():
    pytest.importorskip("deepspeed")
    p = CLIENT_OPT_PROCESS.run()        # python run.py, one rank's environment, a free port
    assert p.returncode != 0
    assert "ZeRORuntimeException" in p.stderr
    f = top(p.stdout + p.stderr)
    assert f.rule == "log-cfg-client-optimizer-offload" and f.category == "config_error"
    assert "torch.optim.adamw.AdamW" in f.summary
    patches = [fx.config_patch for fx in f.fixes if fx.config_patch]
    assert {"optimizer": {"type": "AdamW"}} in patches and {"zero_force_ds_cpu_optimizer": False} in patches


def test_client_optimizer_literal_is_deepspeeds():
    src = _source("deepspeed", "runtime/engine.py")
    assert "You are using ZeRO-Offload with a client provided optimizer" in src
    assert "zero_force_ds_cpu_optimizer" in _source("deepspeed", "runtime/constants.py")


# ------------------------------------------------------------------ transformers / accelerate integration errors
def test_integration_literals_are_in_the_installed_libraries():
    tf = _source("transformers", "integrations/accelerate.py")
    assert "DeepSpeed Zero-3 is not compatible with" in tf
    tfd = _source("transformers", "integrations/deepspeed.py")
    assert "not possible to automatically fill out the following `auto` entries" in tfd
    assert "(calculated)" in tfd and "mismatch TrainingArguments" in tfd
    acc = _source("accelerate", "accelerator.py").replace('"\n', "").replace('                    "', "")
    for lit in ("requires you to pass at least one of training or evaluation dataloaders",
                "You cannot specify an optimizer in the config file and in the code at the same time",
                "You cannot specify a scheduler in the config file and in the code at the same time",
                "You cannot create a `DummyOptim` without specifying an optimizer in the config file"):
        assert lit in acc, lit


@pytest.mark.parametrize("text,rule", [
    # transformers 4.2x-4.4x modeling_utils.py and 5.x integrations/accelerate.py wordings
    ("ValueError: DeepSpeed Zero-3 is not compatible with `low_cpu_mem_usage=True` or with passing a `device_map`.",
     "log-cfg-zero3-device-map"),
    ("ValueError: DeepSpeed Zero-3 is not compatible with passing a `device_map`.", "log-cfg-zero3-device-map"),
    ("ValueError: ZeRO Offload can only work with DeepSpeed optimizers", "log-cfg-client-optimizer-offload"),
    # accelerate 0.x (no comma) and 1.x wordings
    ("ValueError: When using DeepSpeed `accelerate.prepare()` requires you to pass at least one of training or "
     "evaluation dataloaders or alternatively set an integer value in `train_micro_batch_size_per_gpu` in the "
     "deepspeed config file", "log-cfg-accelerate-micro-batch"),
    ("ValueError: When using DeepSpeed, `accelerate.prepare()` requires you to pass at least one of training or "
     "evaluation dataloaders with `batch_size` attribute returning an integer value", "log-cfg-accelerate-micro-batch"),
    ("ValueError: You cannot specify a scheduler in the config file and in the code at the same time. Please remove "
     "the scheduler from the config file or create `accelerate.utils.DummyScheduler` in the code.",
     "log-cfg-accelerate-twice"),
])
def test_integration_errors_are_config_errors(text, rule):
    f = top(text + "\n")
    assert f is not None and f.rule == rule and f.category == "config_error"


def test_zero3_device_map_fix_is_code_advice_without_a_fake_key():
    f = top("ValueError: DeepSpeed Zero-3 is not compatible with passing a `device_map`.\n")
    assert "low_cpu_mem_usage=True or" not in f.summary        # this wording names only device_map
    code = f.fixes[0]
    assert code.title.startswith("Code:") and not code.config_patch and "device_map" in code.advice


def test_hf_mismatch_with_a_calculated_value():
    # HfTrainerDeepSpeedConfig.fill_match: f"- ds {ds_key_long}={ds_val} vs hf {hf_key}={hf_val}"
    text = ("ValueError: Please correct the following DeepSpeed config values that mismatch TrainingArguments values:\n"
            "- ds scheduler.params.total_num_steps=0 vs hf num_training_steps (calculated)=260\n"
            "The easiest method is to set these DeepSpeed config values to 'auto'.\n")
    f = top(text)
    assert f.rule == "log-cfg-hf-mismatch"
    assert f.fixes[0].config_patch == {"scheduler": {"params": {"total_num_steps": "auto"}}}


def test_each_rank_printing_the_error_is_one_finding():
    line = "[rank{r}]: ValueError: DeepSpeed Zero-3 is not compatible with passing a `device_map`.\n"
    fs = [f for f in findings("".join(line.format(r=r) for r in range(4))) if f.severity != "info"]
    assert len(fs) == 1


# ------------------------------------------------------------------ NaN in metric dicts and loss lines
def test_trl_dpo_metrics_nan_with_zero_loss():
    # TRL DPOTrainer logs rewards/logps/logits next to the loss; a float NaN prints as a bare nan
    text = ("{'loss': 0.6931, 'learning_rate': 1e-06, 'rewards/chosen': 0.0, 'rewards/rejected': 0.0, "
            "'rewards/accuracies': 0.0, 'rewards/margins': 0.0, 'logps/chosen': -120.5, 'epoch': 0.0}\n"
            "{'loss': 0.0, 'learning_rate': 1e-06, 'rewards/chosen': nan, 'rewards/rejected': nan, "
            "'rewards/accuracies': 0.0, 'rewards/margins': nan, 'logps/chosen': nan, 'epoch': 0.01}\n")
    f = top(text)
    assert f.rule == "nan-loss" and "rewards/chosen" in f.summary


def test_finite_trl_metrics_are_healthy():
    assert top("{'loss': 0.6931, 'rewards/chosen': 0.01, 'rewards/margins': 0.02, 'epoch': 0.1}\n") is None


def test_prefixed_loss_names_inf():
    # DeepSpeed-Chat step 3 (DeepSpeedExamples applications/DeepSpeed-Chat/.../step3_rlhf_finetuning/main.py)
    text = ("epoch: 0|step: 10|ppo_ep: 1|act_loss: 0.5|cri_loss: 0.4|unsuper_loss: 0.0\n"
            "epoch: 0|step: 11|ppo_ep: 1|act_loss: inf|cri_loss: inf|unsuper_loss: 0.0\n")
    f = top(text)
    assert f.rule == "nan-loss" and "act_loss" in f.summary and "step 11" in f.summary


MEGATRON_GNORM_NAN = (" iteration       10/     100 | consumed samples:           10 | elapsed time per iteration (ms): "
                      "2208.9 | learning rate: 3.000E-04 | global batch size:     1 | lm loss: 1.461212E+01 | loss scale: "
                      "1.0 | grad norm: nan | number of skipped iterations: {skipped} | number of nan iterations:   0 |\n")


def test_megatron_nan_grad_norm_on_an_applied_iteration():
    f = top(MEGATRON_GNORM_NAN.format(skipped=0))
    assert f.rule == "nan-loss" and "grad norm" in f.summary and "not skipped" in f.summary


def test_megatron_nan_grad_norm_on_a_skipped_iteration_is_not_a_nan_loss():
    assert top(MEGATRON_GNORM_NAN.format(skipped=1)) is None


def test_megatron_core_wrapped_record_with_unit_after_the_value():
    # Megatron-LM core training_log: 'elapsed time per iteration: 21392.5 ms |', wrapped over lines
    text = ("iteration 5/50 | elapsed time per iteration: 21392.5 ms |\n"
            "learning rate: 1.350000E-04 | global batch size: 4096 |\n"
            "loss scale: 1.0 | grad norm: nan |\n"
            "number of skipped iterations: 0 | number of nan iterations: 0\n")
    evs = events_from_text(text)
    assert any(e.kind == "throughput" and e.data.get("iter_ms") == 21392.5 for e in evs)
    assert top(text).rule == "nan-loss"


# ------------------------------------------------------------------ fairseq's loss scaler
def test_fairseq_overflows_down_to_the_minimum():
    text = "".join(f"| WARNING: overflow detected, setting loss scale to: {0.5 / 2 ** i}\n" for i in range(1, 13))
    f = top(text)
    assert f.rule == "loss-scale-collapse"
    assert "fell from 0.5 to 0.0001220703125 (12 halvings) over 12 overflows" in f.summary


def test_fairseq_single_overflow_at_a_normal_scale_is_not_a_collapse():
    text = ("2020-03-23 11:41:18 | INFO | fairseq.trainer | NOTE: overflow detected, setting loss scale to: 8.0\n"
            "2020-03-23 11:48:04 | INFO | train_inner | epoch 003:    100 / 356 loss=9.44, nll_loss=8.44, num_updates=800\n")
    assert top(text) is None


def test_fairseq_minimum_loss_scale_reached():
    text = ("FloatingPointError: Minimum loss scale reached (0.0001). Your loss is probably exploding. Try lowering "
            "the learning rate, using gradient clipping or increasing the batch size.\n")
    f = top(text)
    assert f.rule == "loss-scale-collapse"
    assert any("effective batch" in fx.title for fx in f.fixes)


# ------------------------------------------------------------------ many ranks in one stream (point 3)
def _zero0_overflow(it: int, prev: float, new: float) -> str:
    # fp16/fused_optimizer.py: FP16_Optimizer._update_scale, printed by every rank
    return (f"Grad overflow on iteration {it}\n"
            f"[2023-04-18 03:36:00,502] [INFO] [fused_optimizer.py:363:_update_scale] Reducing dynamic loss scale "
            f"from {prev} to {new}\n")


def _ds_step(step: int, skipped: int) -> str:
    return f"[INFO] [logging.py:96:log_dist] [Rank 0] step={step}, skipped={skipped}, lr=[1e-05], mom=[(0.9, 0.95)]\n"


def test_eight_ranks_calibrating_in_one_stream_is_healthy():
    text = ""
    scale = 65536.0
    for it in range(4):
        for _ in range(8):
            text += _zero0_overflow(it, scale, scale / 2)
        scale /= 2
    text += "".join(_ds_step(s, 4) for s in range(10, 400, 10))
    for _ in range(8):                      # one periodic overflow later on, printed by every rank
        text += _zero0_overflow(350, scale, scale / 2)
    text += "".join(_ds_step(s, 5) for s in range(400, 800, 10))
    fs = findings(text)
    assert not [f for f in fs if f.severity != "info"]
    info = [f for f in fs if f.rule == "loss-scale-calibration"]
    assert info and "5 overflow(s)" in info[0].summary


def test_eight_ranks_collapsing_count_each_overflow_once():
    text = "".join(_ds_step(s, 0) for s in range(10, 500, 10))
    scale = 1024.0
    for it in range(500, 509):
        for _ in range(8):
            text += _zero0_overflow(it, scale, scale / 2)
        scale /= 2
    f = top(text)
    assert f.rule == "loss-scale-collapse"
    assert "fell from 1024 to 2 (9 halvings) over 9 overflows, 9 in a row" in f.summary


def test_summary_never_says_fell_without_a_halving():
    from dsdoctor.findings import Symptom
    from dsdoctor.rules import make_finding
    rule = next(r for r in RULES.rules if r.id == "loss-scale-collapse")
    facts = dict(start_scale=2048, settled_scale=2048, end_scale=2048, halvings=0, overflows=46, streak=5,
                 at_minimum=False, one_to_one=0, late=True, steps_left=None, lowest_scale=1024)
    text = make_finding(rule, Symptom(name="loss_scale_collapse", facts=facts), {}).summary
    assert "fell from" not in text
    assert "overflowed 46 times (5 in a row, down to 1024) and is at 2048 now" in text


# ------------------------------------------------------------------ slow runs (point 4)
def _bar(n: int, total: int, rate: float, desc: str = "") -> str:
    # tqdm/std.py: tqdm.format_meter
    pct = int(100 * n / total)
    head = f"{desc}: " if desc else ""
    unit = f"{rate:.2f}s/it" if rate >= 1 else f"{1 / rate:.2f}it/s"
    return f"{head}{pct:3d}%|####      | {n}/{total} [01:00<02:00, {unit}]"


def test_tqdm_iteration_time_slowdown_is_found():
    segs = [_bar(n, 1000, 1.20 if n < 700 else 1.45) for n in range(2, 1000, 2)]
    f = top("\r".join(segs) + "\n")
    assert f is not None and f.rule == "throughput-drop" and f.category == "straggler"


def test_tqdm_steady_bar_and_dataset_bars_are_quiet():
    train = "\r".join(_bar(n, 1000, 1.20 + 0.01 * (n % 3)) for n in range(2, 1000, 2))
    data = "\r".join(f"Map (num_proc=14):  {p}%|###   | {p * 100}/10000 [00:10<00:20, {5000 - p * 40:.2f} examples/s]"
                     for p in range(1, 99))
    evalbar = "\r".join(_bar(n, 50, 0.1 if n < 25 else 0.5) for n in range(2, 50))    # eval: its own series
    assert top(train + "\n" + data + "\n" + train + "\r" + evalbar + "\n") is None


def test_phase_dominates_is_quiet_with_optimizer_offload():
    # runtime/config.py: DeepSpeedConfig.print with DeepSpeed 0.19's pydantic repr of zero_config
    text = ("[INFO] [config.py:1003:print]   zero_config .................. stage=2 contiguous_gradients=True "
            "overlap_comm=False offload_param=None offload_optimizer=DeepSpeedZeroOffloadOptimizerConfig("
            "device='cpu', nvme_path=None, buffer_count=4, pin_memory=False)\n"
            "time (ms) | forward: 207.71 | backward: 3509.10 | optimizer: 38738.77 | batch generator: 4.65\n")
    evs = events_from_text(text)
    if not any(e.kind == "context" and e.data.get("offload_optimizer") == "cpu" for e in evs):
        pytest.skip("the config line format is not the one context_lines reads")
    # not slow links (step-phase-dominates): the CPU optimizer itself, 10x forward + backward
    f = top(text)
    assert f is not None and f.rule == "step-bound-by-cpu-optimizer"


def test_phase_dominates_numbers_come_from_one_line():
    text = ("time (ms) | forward: 200.00 | backward: 3500.00 | optimizer: 38000.00\n"
            "time (ms) | forward: 400.00 | backward: 1800.00 | optimizer: 600.00\n"
            "time (ms) | forward: 1000.00 | backward: 5000.00 | step: 12000.00\n")
    f = top(text)
    assert f.rule == "step-phase-dominates"
    assert "12000 ms per step, 2x forward + backward (6000 ms)" in f.summary


# ------------------------------------------------------------------ communication
def test_watchdog_check_timeout_frame_without_its_header():
    # torch ProcessGroupNCCL.cpp: WorkNCCL::checkTimeout raises the timeout (a C++ stack of the watchdog thread)
    text = ("frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x96 (0x1554e8b12f86 in libc10.so)\n"
            "frame #1: c10d::ProcessGroupNCCL::WorkNCCL::checkTimeout(std::optional<std::chrono::duration<long, "
            "std::ratio<1l, 1000l> > >) + 0x1d2 (0x1554e9e0f8f2 in libtorch_cuda.so)\n"
            "frame #2: c10d::ProcessGroupNCCL::watchdogHandler() + 0x233 (0x1554e9e16333 in libtorch_cuda.so)\n")
    f = top(text)
    assert f.category == "comm_stall" and "None" not in f.summary and "?" not in f.summary
    assert any("every rank" in (fx.advice or "") for fx in f.fixes)


def test_check_timeout_frame_after_the_timeout_line_adds_nothing():
    text = ("[E ProcessGroupNCCL.cpp:587] [Rank 5] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, "
            "OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1800315 milliseconds before timing out.\n"
            "frame #1: c10d::ProcessGroupNCCL::WorkNCCL::checkTimeout(std::optional<std::chrono::duration<long, "
            "std::ratio<1l, 1000l> > >) + 0x1d2 (0x1554e9e0f8f2 in libtorch_cuda.so)\n")
    evs = [e for e in events_from_text(text) if e.kind == "collective_timeout"]
    assert len(evs) == 1 and evs[0].data["seq"] == 7


def _run_two_gloo_ranks(tmp_path: Path, body: str, env: dict | None = None) -> str:
    """Two real gloo ranks on loopback running `body` (rank in `rank`); their output, joined."""
    script = tmp_path / "two.py"
    script.write_text(textwrap.dedent("""
        import datetime, sys, time
        import torch, torch.distributed as dist
        rank, port = int(sys.argv[1]), sys.argv[2]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                timeout=datetime.timedelta(seconds=30))
    """) + textwrap.dedent(body))
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(r), port], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
             for r in range(2)]
    out = []
    try:
        for p in procs:
            out.append(p.communicate(timeout=60)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return "".join(out)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("slow", [0, 1])
def test_monitored_barrier_names_the_rank_that_did_not_arrive(tmp_path, slow):
    pytest.importorskip("torch")
    out = _run_two_gloo_ranks(tmp_path, f"""
        if rank == {slow}:
            time.sleep(4)
        else:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=1))
    """)
    assert "monitoredBarrier" in out
    f = top(out)
    assert f.rule == "comm-timeout-desync-report" and f.category == "comm_stall"
    assert f"rank(s) {slow} are the lagging" in f.summary.replace("\n", " ")


@pytest.mark.timeout(150)
def test_ranks_in_different_collectives_are_named_with_both_calls(tmp_path):
    # TORCH_DISTRIBUTED_DEBUG=DETAIL's fingerprint check, for real: rank 0 all_reduces while rank 1 broadcasts
    out = _run_two_gloo_ranks(tmp_path, """
        t = torch.ones(4)
        dist.all_reduce(t) if rank == 0 else dist.broadcast(t, 0)
    """, env={"TORCH_DISTRIBUTED_DEBUG": "DETAIL"})
    assert "Detected mismatch between collectives" in out, out[-2000:]
    fs = [f for f in findings(out) if f.severity != "info"]
    assert fs[0].rule == "comm-collective-mismatch", [f.rule for f in fs]
    assert {"ALLREDUCE", "BROADCAST"} <= set(fs[0].title.replace(",", " ").split()), fs[0].title
    assert all(f.consequence_of for f in fs[1:]), [(f.rule, f.consequence_of) for f in fs]


def test_same_collective_with_other_shapes_names_the_shapes():
    text = ("RuntimeError: Detected mismatch between collectives on ranks. Rank 2 is running collective: "
            "CollectiveFingerPrint(SequenceNumber=41, OpType=ALLREDUCE, TensorShape=[1024], TensorDtypes=Float), "
            "but Rank 0 is running collective: CollectiveFingerPrint(SequenceNumber=41, OpType=ALLREDUCE, "
            "TensorShape=[2048], TensorDtypes=Float).Collectives differ in the following aspects:   "
            "Tensor Tensor shapes: 1024vs 2048\n")
    f = top(text)
    assert f.rule == "comm-collective-mismatch" and "[1024]" in f.title and "[2048]" in f.title, f.title


def test_cut_off_nccl_error_quotes_the_unexplained_warn():
    text = ("node1: node1:3048:4991 [2] graph/rings.cc:38 NCCL WARN Error : ring 2 does not loop back to start (7 != 2)\n"
            "node2: RuntimeError: NCCL error in: ../torch/lib/c10d/ProcessG\n")
    f = top(text)
    assert f.rule == "nccl-error" and "cut off" in f.summary and "ring 2 does not loop back" in f.summary


def test_no_socket_interface_points_at_nccl_socket_ifname():
    text = ("[rank0]: torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/"
            "ProcessGroupNCCL.cpp:2588, internal error - please report this issue to the NCCL developers, NCCL version 2.21.5\n"
            "[rank0]: ncclInternalError: Internal check failed.\n[rank0]: Last error:\n"
            "[rank0]: Bootstrap : no socket interface found\n")
    f = top(text)
    assert f.rule == "nccl-error-no-interface"
    assert any(fx.env and "NCCL_SOCKET_IFNAME" in fx.env for fx in f.fixes)


# ------------------------------------------------------------------ the scorer (point 6)
def _scorer():
    spec = importlib.util.spec_from_file_location("score_realworld", REPO / "scripts" / "score_realworld.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(240)
def test_scorer_on_a_small_labelled_folder(tmp_path, capsys):
    (tmp_path / "900_config_error.log").write_text(
        "ValueError: DeepSpeed Zero-3 is not compatible with passing a `device_map`.\n")
    (tmp_path / "901_healthy.log").write_text("".join(_ds_step(s, 0) for s in range(10, 60, 10)))
    (tmp_path / "902_nan_loss.log").write_text("epoch 0 step 7 loss: nan\n")
    (tmp_path / "903_straggler.log").write_text("".join(_ds_step(s, 0) for s in range(10, 60, 10)))
    labels = [
        {"file": "900_config_error.log", "category": "config_error", "expected_fix": "remove device_map",
         "key_lines": ["DeepSpeed Zero-3 is not compatible with passing a `device_map`."]},
        {"file": "901_healthy.log", "category": "healthy", "expected_fix": "none"},
        {"file": "902_nan_loss.log", "category": "nan_loss", "expected_fix": "unknown",
         "key_lines": ["a line the finding does not quote"]},
        {"file": "903_straggler.log", "category": "straggler", "expected_fix": "exclude the node"},
    ]
    (tmp_path / "labels.yaml").write_text(json.dumps(labels))          # JSON is YAML
    sc = _scorer()
    sc.FIX_KEYWORDS["900"] = ("device_map",)
    assert sc.main([str(tmp_path), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "score: 3/4 top-1 category correct (75%)" in out
    assert "failed runs reported with no problem: 1 903_straggler.log" in out
    assert "fix agreement (category right, fix known): 1/1 (100%)" in out
    assert "quotes a labelled key line): 1/2; not quoted: 902_nan_loss.log" in out
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["per_category"]["straggler"]["recall"] == 0.0
    assert s["per_category"]["healthy"]["precision"] == 0.5
    assert s["confusion"]["straggler"] == {"healthy": 1}
    assert s["healthy_false_alarms"] == []


def test_scorer_skips_cleanly_without_shared(tmp_path, monkeypatch, capsys):
    sc = _scorer()
    monkeypatch.setattr(sc, "DEFAULT_DIRS", (tmp_path / "nope",))
    assert sc.main([]) == 0
    assert "skipped" in capsys.readouterr().out


def test_scorer_bad_labels_is_one_line_error(tmp_path, capsys):
    (tmp_path / "labels.yaml").write_text("just a string\n")
    assert _scorer().main([str(tmp_path)]) == 2
    assert "score_realworld: error:" in capsys.readouterr().err


def test_bf16_skips_reported_by_every_rank_count_once():
    # runtime/fp16/loss_scaler.py: LossScaler.update_scale (bf16 / static scale) via log_dist: copies of the
    # same line from several ranks (a run whose ranks all print, e.g. log_dist(ranks=[-1]) or a wrapper)
    text = ""
    for step in (100, 101, 102):
        text += f"[Rank 0] step={step}, skipped={step - 99}, lr=[1e-05], mom=[(0.9, 0.999)]\n"
        text += "".join(f"[rank{r}]: [deepspeed] OVERFLOW! Skipping step. Gradients are non-finite, weights were "
                        f"not updated.\n" for r in range(4))
    fs = [f for f in findings(text) if f.rule == "bf16-nonfinite-grads"]
    assert fs and "skipped 3 step(s)" in fs[0].summary


def test_the_same_throughput_line_from_every_rank_is_one_reading():
    from dsdoctor.detect.throughput import ThroughputDetector
    from dsdoctor.events import Event
    d = ThroughputDetector()
    for step in range(10):
        for _ in range(8):
            d.feed(Event("throughput", step=step, data={"samples_per_sec": 100.0}), 0)
    assert len(next(iter(d.series.values())).values) == 10


def test_a_rank_whose_own_iterations_are_slower_is_named():
    # one Megatron-style line per pipeline stage's last rank, each with its rank prefix
    text = ""
    for it in range(1, 11):
        for r, ms in ((0, 1000.0), (1, 1010.0), (2, 995.0), (3, 1600.0)):
            text += (f"[rank{r}]: iteration {it:8d}/    1000 | elapsed time per iteration (ms): {ms + it:.1f} | "
                     f"lm loss: 2.1E+00 | number of skipped iterations:   0 | number of nan iterations:   0 |\n")
    f = top(text)
    assert f.rule == "slow-rank" and "Rank 3" in f.summary and "iteration" in f.summary


def test_ranks_with_equal_iteration_times_are_quiet():
    text = ""
    for it in range(1, 11):
        for r in range(4):
            text += (f"[rank{r}]: iteration {it:8d}/    1000 | elapsed time per iteration (ms): {1000.0 + r + it:.1f} | "
                     f"lm loss: 2.1E+00 | number of skipped iterations:   0 | number of nan iterations:   0 |\n")
    assert top(text) is None


def _deepspeed_config_error_ahead(arg: str, files: dict[str, str] | None = None) -> None:
    """`_deepspeed_config_error(arg, ...)`'s process listed to start one test ahead (tests/run_ahead.py), in a
    folder of its own holding `files` (name: text) when there are any."""
    code = f"import json, sys\nfrom deepspeed.runtime.config import DeepSpeedConfig\nDeepSpeedConfig({arg})\n"
    cwd = run_ahead.scratch("ds-config") if files is not None else None

    def setup():
        for name, text in (files or {}).items():
            Path(cwd, name).write_text(text)
    run_ahead.register(("DeepSpeedConfig", arg), [sys.executable, "-c", code], timeout=110,
                       env=lambda: dict(os.environ, DS_ACCELERATOR="cpu"), cwd=cwd, setup=setup)


BATCH_CONFIGS = [
    ({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"},
     "log-cfg-auto-outside-hf"),
    ({"gradient_accumulation_steps": 2}, "log-cfg-batch-missing"),
]
for _cfg, _ in BATCH_CONFIGS:
    _deepspeed_config_error_ahead(f"json.loads({json.dumps(json.dumps(_cfg))})")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cfg,rule", BATCH_CONFIGS)
def test_batch_config_errors_from_deepspeeds_own_parser(cfg, rule):
    _deepspeed_config_error(f"json.loads({json.dumps(json.dumps(cfg))})", rule)


def _deepspeed_config_error(arg: str, rule: str, cwd: Path | None = None) -> None:
    pytest.importorskip("deepspeed")
    code = f"import json, sys\nfrom deepspeed.runtime.config import DeepSpeedConfig\nDeepSpeedConfig({arg})\n"
    early = run_ahead.registered(("DeepSpeedConfig", arg))
    p = early.run() if early else subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=110,
                                                 env=dict(os.environ, DS_ACCELERATOR="cpu"), cwd=cwd)
    assert p.returncode != 0
    f = top(p.stderr)
    assert f is not None and f.rule == rule


@pytest.mark.parametrize("line,name", [
    ("{'objective/kl': nan, 'objective/entropy': 3.2, 'ppo/loss/total': nan, 'epoch': 0.1}", "objective/kl"),
    ('{"loss": NaN, "learning_rate": 1e-05, "epoch": 0.5}', "loss"),            # json.dumps of a float nan
    ("Epoch 3 | Train Loss: nan | lr 1e-4", "Loss"),
])
def test_non_finite_metrics_in_other_dicts_and_lines(line, name):
    f = top(line + "\n")
    assert f is not None and f.rule == "nan-loss" and f"The {name} became" in f.summary


def test_a_nan_in_an_evaluation_score_is_not_a_nan_loss():
    assert top("{'eval_bleu': nan, 'eval_loss': 2.3, 'epoch': 1.0}\n") is None


def test_store_based_barrier_timeout_is_a_start_up_failure():
    # torch/distributed/distributed_c10d.py: _store_based_barrier
    text = ("RuntimeError: Timed out initializing process group in store based barrier on rank: 3, for key: "
            "store_based_barrier_key:1 (world_size=8, worker_count=5, timeout=0:30:00)\n")
    f = top(text)
    assert f.rule == "rendezvous-timeout" and f.category == "nccl_error"


def test_stuck_at_the_floor_without_iteration_numbers_still_counts():
    text = "".join("[INFO] [fused_optimizer.py:363:_update_scale] Reducing dynamic loss scale from 1 to 1\n"
                   for _ in range(3))
    f = top(text)
    assert f.rule == "loss-scale-collapse" and "stuck at the minimum" in f.summary


def test_client_optimizer_message_cut_off_after_the_class_still_names_it():
    text = ("deepspeed.runtime.zero.utils.ZeRORuntimeException: You are using ZeRO-Offload with a client provided "
            "optimizer (<class 'apex.optimizers.fused_adam.FusedAdam\n")
    f = top(text)
    assert f.rule == "log-cfg-client-optimizer-offload" and "apex.optimizers.fused_adam.FusedAdam" in f.summary


_deepspeed_config_error_ahead("'ds_config_zero3.json'", files={})
DUPLICATE_KEYS = '{"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": true}, "fp16": {"enabled": false}}'
_deepspeed_config_error_ahead("'ds.json'", files={"ds.json": DUPLICATE_KEYS})


@pytest.mark.timeout(120)
def test_missing_config_file_from_deepspeeds_own_parser(tmp_path):
    # 0.19: a path that does not exist is tried as base64 -> binascii.Error
    _deepspeed_config_error("'ds_config_zero3.json'", "log-cfg-config-path", cwd=tmp_path)


@pytest.mark.timeout(120)
def test_duplicate_keys_from_deepspeeds_own_parser(tmp_path):
    (tmp_path / "ds.json").write_text(DUPLICATE_KEYS)
    _deepspeed_config_error("'ds.json'", "log-cfg-duplicate-keys", cwd=tmp_path)


@pytest.mark.parametrize("text,rule", [
    ("ValueError: Expected a string path to an existing deepspeed config, or a dictionary, or a base64 encoded "
     "string. Received: configs/ds_z3.json", "log-cfg-config-path"),                  # accelerate's wording
    ("ValueError: `auto_find_batch_size` isn't supported yet with DeepSpeed Zero-3. Please consider using Zero-2, "
     "Zero-1, or FSDP", "log-cfg-auto-find-batch-size-zero3"),
])
def test_more_integration_errors(text, rule):
    f = top(text + "\n")
    assert f is not None and f.rule == rule


@pytest.mark.filterwarnings("ignore:Error detected in")
def test_autograd_anomaly_nan_from_a_real_backward():
    torch = pytest.importorskip("torch")
    x = torch.zeros(1, requires_grad=True)
    with torch.autograd.set_detect_anomaly(True, check_nan=True):
        with pytest.raises(RuntimeError) as ei:
            (x / x).sum().backward()
    f = top(f"RuntimeError: {ei.value}\n")
    assert f is not None and f.rule == "nan-loss" and "DivBackward0" in f.summary


def test_megatron_nan_check():
    text = ("AssertionError: Rank 3, node node-7, device 3, iteration 1200: Unexpected result nan "
            "(message='found NaN in local grad norm for bucket #0 in backward pass before data-parallel "
            "communication collective')\n")
    f = top(text)
    assert f.rule == "nan-loss" and "grad norm" in f.summary


def test_apex_amp_overflows_down_to_nothing():
    # apex/amp/scaler.py: LossScaler.update_scale
    text = "".join(f"Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to {2.0 ** -i}\n"
                   for i in range(0, 8))
    f = top(text)
    assert f.rule == "loss-scale-collapse" and "over 8 overflows" in f.summary


def test_rank_waiting_for_rank0s_nccl_id_names_rank0():
    # torch ProcessGroupNCCL.cpp: broadcastUniqueNCCLID
    text = "".join(f"[rank{r}]: torch.distributed.DistBackendError: [{r}] is setting up NCCL communicator and "
                   f"retrieving ncclUniqueId from [0] via c10d key-value store by key '0', but store->get('0') got "
                   f"error: Socket Timeout\n" for r in (1, 2, 3))
    f = top(text)
    assert f.rule == "comm-timeout-desync-report" and "rank(s) 0 are the lagging" in f.summary.replace("\n", " ")
    assert "The waiting rank says" in f.summary


@pytest.mark.parametrize("line,name", [
    ("step:10 - actor/pg_loss:nan - critic/vf_loss:0.3 - actor/entropy:1.2", "pg_loss"),       # verl console logger
    ("| epoch 003 | loss nan | nll_loss nan | ppl nan | wps 30690.8 | num_updates 700", "loss"),  # fairseq progress
    ("Epoch 1/1 with loss nan", "loss"),
])
def test_loss_without_a_separator_or_space(line, name):
    f = top(line + "\n")
    assert f is not None and f.rule == "nan-loss" and f"The {name} became nan" in f.summary


@pytest.mark.parametrize("line", ["loss information follows", "step 3 loss inflated by 2%", "no loss: infinite patience",
                                  "enable loss nan checks for this run"])
def test_words_after_loss_are_not_values(line):
    assert top(line + "\n") is None


def test_tqdm_dip_after_a_late_evaluation_is_not_a_slowdown():
    rates = [1.20] * 190 + [2.5, 2.0, 1.6, 1.35, 1.25] + [1.20] * 4
    segs = [_bar(2 * (i + 1), 400, r) for i, r in enumerate(rates)]
    assert top("\r".join(segs) + "\n") is None


def test_gradual_slowdown_and_step_change_are_told_apart():
    from dsdoctor.detect.throughput import find_gradual, worsening
    import random
    rnd = random.Random(7)
    creep = [1000 * (1 + 0.002 * i) + rnd.uniform(-5, 5) for i in range(200)]        # +40 % over the run
    step = [1000 + rnd.uniform(-5, 5) for _ in range(150)] + [1100 + rnd.uniform(-5, 5) for _ in range(50)]
    flat = [1000 + rnd.uniform(-20, 20) for _ in range(200)]
    assert find_gradual(creep, False) and worsening(creep, False) > 0.9
    assert find_gradual(flat, False) is None
    lines = lambda vals: "".join(  # noqa: E731
        f" iteration {i + 1:8d}/ 1000 | elapsed time per iteration (ms): {v:.1f} | lm loss: 2.1E+00 | "
        f"number of skipped iterations:   0 | number of nan iterations:   0 |\n" for i, v in enumerate(vals))
    assert top(lines(creep)).rule == "throughput-gradual"
    assert top(lines(step)).rule == "throughput-drop"
    assert top(lines(flat)) is None


ZERO_WITHOUT_OPTIMIZER = _script_ahead("run.py", textwrap.dedent("""
    import torch, deepspeed
    model = torch.nn.Linear(4, 4)
    deepspeed.initialize(model=model, config={"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2}})
"""), 170, _one_rank_env)


@pytest.mark.timeout(180)
def test_zero_without_an_optimizer_from_a_real_deepspeed_run():
    pytest.importorskip("deepspeed")
    p = ZERO_WITHOUT_OPTIMIZER.run()     # python run.py, one rank's environment, a free port
    assert p.returncode != 0
    f = top(p.stdout + p.stderr)
    assert f.rule == "log-cfg-zero-needs-optimizer" and "stage 2" in f.title


def test_nan_seen_first_in_a_console_log_takes_the_earliest_step_and_rank():
    from dsdoctor.events import Event
    d = Diagnoser(rules=RULES)
    d.feed_all(events_from_text("step 10 loss nan\n"))                      # the console, read first
    d.feed_all([Event("loss", rank=0, step=s, data={"value": float("nan"), "name": "loss"}) for s in (6, 7)])
    f = next(f for f in d.finish() if f.category == "nan_loss")
    assert "at step 6" in f.summary and f.ranks == [0]


_HF_OUT = Path(run_ahead.scratch("hf-trainer")) / "out"
HF_SHORT_STREAM = _script_ahead("hf_short.py", textwrap.dedent(f"""
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
        model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64, n_positions=16))
        class Stream(torch.utils.data.IterableDataset):      # a one-shot stream: empty when read again
            read = False
            def __iter__(self):
                if Stream.read:
                    return
                Stream.read = True
                for i in range(16):
                    ids = torch.randint(0, 64, (8,), generator=torch.Generator().manual_seed(i))
                    yield {{"input_ids": ids, "labels": ids}}
        args = TrainingArguments(output_dir={str(_HF_OUT)!r}, per_device_train_batch_size=2, max_steps=50,
                                 use_cpu=True, logging_steps=2, report_to=[], save_strategy="no")
        Trainer(model=model, args=args, train_dataset=Stream()).train()
    """), 200, lambda: {**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.timeout(240)
def test_hf_trainer_stopping_early_on_an_exhausted_iterable_dataset():
    # a real HF Trainer whose one-shot stream holds 8 batches while max_steps is 50: the next epoch
    # gets no batch; transformers warns and ends the training at step 8 (exit 0), or accelerate's
    # dispatcher raises (the installed accelerate 1.16 does)
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    p = HF_SHORT_STREAM.run()            # python hf_short.py, started one test ahead
    out = p.stdout + p.stderr
    f = top(out)
    if p.returncode == 0:        # transformers' own warning: training ends at step 8
        assert "stopping training at step" in out, out[-3000:]
        assert f is not None and f.rule == "log-cfg-hf-dataset-exhausted" and "step 8 of 50" in f.title, f
    else:                        # accelerate >= 1.x dispatching the stream: it raises instead
        assert "Batch does not contain any data" in out, out[-3000:]
        assert f is not None and f.rule == "log-cfg-dataset-exhausted-crash", f


def test_a_slowdown_in_a_run_of_seconds_is_no_lasting_drop():
    # a healthy 16-step run on a busy machine (tests/test_fixes_work.py's fixed fp16 run showed one): the same
    # shape over minutes is a drop
    lines = lambda vals: "".join(  # noqa: E731
        f" iteration {i + 1:8d}/ 16 | elapsed time per iteration (ms): {v:.1f} | lm loss: 2.1E+00 | "
        f"number of skipped iterations:   0 | number of nan iterations:   0 |\n" for i, v in enumerate(vals))
    short = [200.0, 201.0, 199.0, 200.0, 202.0, 200.0, 199.0, 201.0, 200.0, 200.0, 300.0, 305.0, 298.0, 301.0, 300.0, 302.0]
    assert top(lines(short)) is None
    assert top(lines([v * 100 for v in short])).rule == "throughput-drop"


def test_one_export_time_on_every_line_leaves_the_length_to_the_iteration_times(tmp_path):
    # docker's json-file export with a single "time" (the copy's, not the print's): the lines' times span 0 s,
    # the run minutes; the drop stays a drop (the dev set's BLOOM log pasted that way came out healthy)
    from cli_invoke import invoke_cli
    rates = [19.5, 19.4, 19.6, 12.1, 12.0, 11.9]
    lines = [f"[default7]: iteration {42780 + i:8d}/ 115311 | consumed samples: {71455664 + 2048 * i} | elapsed "
             f"time per iteration (s): {2048 / r:.2f} | learning rate: 4.475E-05 | global batch size: 2048 | lm "
             f"loss: 2.117073E+00 | grad norm: 0.150 | number of skipped iterations:   0 | number of nan "
             f"iterations:   0 | samples per second: {r:.3f} | TFLOPs: {r * 7.65:.2f} |" for i, r in enumerate(rates)]
    log = tmp_path / "docker.log"
    log.write_text("".join(json.dumps({"log": ln + "\n", "stream": "stderr", "time": "2026-12-05T10:00:00Z"}) + "\n"
                           for ln in lines))
    report = json.loads(invoke_cli(["analyze", str(log), "--json"]).stdout)
    assert [f["rule"] for f in report["findings"]][:1] == ["throughput-drop"]
