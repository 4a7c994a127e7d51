"""dsdoctor doctor: config lint (invented keys, realistic configs, bad input, --fix), DeepSpeed
missing, and the environment probe (no GPU here; GPUs and NVML failures through a fake pynvml)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor.cli import _register, app

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).parent / "configs"
_register()


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory):
    # only this front door's rules: other rule files are being edited in parallel
    d = tmp_path_factory.mktemp("rules")
    for f in ("config_error.yaml", "environment.yaml", "hardware.yaml", "host_oom.yaml", "nccl_error.yaml", "oom.yaml"):
        shutil.copy(ROOT / "rules" / f, d / f)
    return d


def doctor(rules_dir, *args):
    res = CliRunner().invoke(app, ["doctor", "--rules", str(rules_dir), *args])
    return res


def doctor_json(rules_dir, *args):
    res = doctor(rules_dir, *args, "--json")
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, json.loads(res.stdout)


def by_key(doc):
    return {f["key"]: f for f in doc["findings"] if f.get("key")}


def test_blog_offload_and_compression_keys(rules_dir):
    code, doc = doctor_json(rules_dir, "-c", str(CONFIGS / "blog_offload_compression.json"), "--world-size", "8")
    f = by_key(doc)
    assert code == 1
    assert f["offload_params"]["rule"] == "cfg-invented-offload-params"
    assert f["offload_params"]["fixes"][0]["config_patch"] == {
        "offload_params": None, "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu", "pin_memory": True}}}
    assert f["gradient_compression"]["rule"] == "cfg-invented-compression"
    assert f["gradient_compression"]["fixes"][0]["config_patch"]["communication_data_type"] == "fp16"
    assert f["hierarchical_compress"]["rule"] == "cfg-invented-compression"
    assert f["communication"]["rule"] == "cfg-invented-communication"
    assert f["zero_optimization.zero_allowed_param_types"]["rule"] == "cfg-invented-zero-param-types"
    assert f["zero_force_param_types"]["rule"] == "cfg-invented-zero-param-types"
    assert f["zero_optimization.nvme_path"]["rule"] == "cfg-misplaced-nvme-path"
    assert "train_batch_size" not in f            # 64 == 4 * 2 * 8
    assert all(fx.get("validated") is True for x in doc["findings"] for fx in x["fixes"] if fx["config_patch"]
               and x["rule"].startswith("cfg-invented"))


def test_blog_fp16_and_scheduler(rules_dir):
    code, doc = doctor_json(rules_dir, "-c", str(CONFIGS / "blog_fp16_scheduler.json"))
    f = by_key(doc)
    assert f["fp16.fp16_override_modules"]["rule"] == "cfg-invented-fp16-override"
    assert f["fp16.fp16_override_modules"]["fixes"][0]["config_patch"]["bf16"] == {"enabled": True}
    assert f["fp16.min_loss_scale"]["fixes"][0]["config_patch"] == {"fp16": {"min_loss_scale": 1}}
    sched = f["scheduler.type"]
    assert sched["rule"] == "cfg-scheduler-invented-type" and "WarmupOneCycle" in sched["title"]
    assert sched["fixes"][0]["config_patch"]["scheduler"]["type"] == "OneCycle"
    assert sched["fixes"][0]["config_patch"]["scheduler"]["params"]["cycle_max_lr"] == 3e-4
    assert doc["deepspeed_validation"]["accepted"] is False      # DeepSpeed itself rejects the original


@pytest.mark.parametrize("name,extra", [("hf_zero2_fp16.json", ["--hf"]), ("zero3_offload_bf16.json", []),
                                        ("onecycle.json", [])])
def test_realistic_configs_pass(rules_dir, name, extra):
    code, doc = doctor_json(rules_dir, "-c", str(CONFIGS / name), "--world-size", "1", *extra)
    assert [f["rule"] for f in doc["findings"] if f["severity"] != "info"] == []
    assert code == 0
    assert doc["deepspeed_validation"]["accepted"] is True
    assert doc["schema"] == "dsdoctor.report/1"


def test_hf_config_without_hf_flag_warns_about_auto(rules_dir):
    _, doc = doctor_json(rules_dir, "-c", str(CONFIGS / "hf_zero2_fp16.json"))
    (f,) = [f for f in doc["findings"] if f["rule"] == "cfg-auto-outside-hf"]
    # the title counts every "auto" (a fact named 'count' was once shadowed by the symptom's own count)
    n = f["summary"].split(' "auto"')[0].count(",") + 1
    assert n > 1 and f'values ({n})' in f["title"], (n, f["title"])


BAD = {
    "not-json": ('{"train_batch_size": 8,, }', ":1:"),
    "duplicate": ('{\n"steps_per_print": 1,\n"steps_per_print": 2\n}', ":3:1: duplicate key 'steps_per_print'"),
    "underscore": ('{\n "zero_optimization": {"reduce_bucket_size": 500_000_000}\n}', "Python literal"),
    "huge": ('{"train_batch_size": 1e999}', "too large"),
    "empty": ("", "empty file"),
    "list": ("[1, 2]", "must be a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2(rules_dir, tmp_path, case):
    text, expected = BAD[case]
    p = tmp_path / "ds.json"
    p.write_text(text)
    res = doctor(rules_dir, "-c", str(p))
    assert res.exit_code == 2
    assert expected in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_file_and_directory(rules_dir, tmp_path):
    for path, msg in ((tmp_path / "nope.json", "no such file"), (tmp_path, "is a directory")):
        res = doctor(rules_dir, "-c", str(path))
        assert res.exit_code == 2 and msg in res.stderr


def test_wrong_types_are_findings(rules_dir, tmp_path):
    p = tmp_path / "ds.json"
    p.write_text(json.dumps({"train_micro_batch_size_per_gpu": 1, "steps_per_print": 1,
                             "fp16": {"enabled": True, "initial_scale_power": "sixteen"},
                             "zero_optimization": {"stage": 2, "overlap_comm": "maybe"}}))
    code, doc = doctor_json(rules_dir, "-c", str(p))
    f = by_key(doc)
    assert code == 1
    assert f["fp16.initial_scale_power"]["rule"] == "cfg-wrong-type"
    assert f["zero_optimization.overlap_comm"]["rule"] == "cfg-wrong-type"


def test_fix_writes_new_file_and_keeps_input(rules_dir, tmp_path):
    src = tmp_path / "blog.json"
    shutil.copy(CONFIGS / "blog_fp16_scheduler.json", src)
    before = src.read_text()
    res = doctor(rules_dir, "-c", str(src), "--fix")
    assert res.exit_code == 1, res.output
    out = tmp_path / "blog.fixed.json"
    assert src.read_text() == before and out.exists()
    assert "+  \"bf16\"" in res.stdout or '"bf16"' in res.stdout
    fixed = json.loads(out.read_text())
    assert fixed["scheduler"]["type"] == "OneCycle" and "fp16_override_modules" not in fixed["fp16"]
    from dsdoctor.fixes import validate_with_deepspeed
    assert validate_with_deepspeed(fixed) == (True, None)
    res = doctor(rules_dir, "-c", str(src), "--fix", str(tmp_path / "other.json"))
    assert (tmp_path / "other.json").exists()
    res = doctor(rules_dir, "-c", str(src), "--fix", str(src))
    assert res.exit_code == 2 and src.read_text() == before


def test_doctor_runs_without_deepspeed(rules_dir):
    code = ("import sys; sys.modules['deepspeed'] = None\n"
            "from dsdoctor.cli import main\n"
            f"main(['doctor', '--rules', {str(rules_dir)!r}, '-c', {str(CONFIGS / 'blog_fp16_scheduler.json')!r}, '--json'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    rules = {f["rule"] for f in doc["findings"]}
    assert {"cfg-invented-fp16-override", "cfg-fp16-min-loss-scale", "cfg-scheduler-invented-type",
            "env-deepspeed-unavailable"} <= rules
    assert doc["deepspeed_validation"]["accepted"] is None
    assert any("not run" in n for n in doc["notes"])


def test_environment_only_on_this_cpu_machine(rules_dir):
    code, doc = doctor_json(rules_dir)
    env = doc["environment"]
    assert env["gpu_count"] == 0 and env["nvml"] in ("missing", "failed")
    assert any(f["rule"] == "env-no-gpu" and f["severity"] == "info" for f in doc["findings"])


# --- fake NVML ---------------------------------------------------------------------------------

class FakeNVML:
    NVML_CLOCK_SM = 1
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_FEATURE_ENABLED = 1
    NVML_NVLINK_MAX_LINKS = 4

    class Mem:
        total = 80 * 2**30

    def __init__(self, n=2, cc=(8, 0), throttle=0, ecc=0, nvlink=False, fail_init=False, fail_count=False):
        self.n, self.cc, self.throttle, self.ecc, self.nvlink = n, cc, throttle, ecc, nvlink
        self.fail_init, self.fail_count = fail_init, fail_count

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        if self.fail_count:
            raise RuntimeError("GPU is lost")
        return self.n

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA A100-SXM4-80GB"

    def nvmlDeviceGetMemoryInfo(self, h):
        return self.Mem()

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self.cc

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return self.throttle if h == 1 else 0

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1100

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTotalEccErrors(self, h, kind, counter):
        return self.ecc if h == 0 else 0

    def nvmlDeviceGetNvLinkState(self, h, link):
        if not self.nvlink:
            raise RuntimeError("Not Supported")
        return 1


def test_fake_gpus_checks():
    from dsdoctor.env import env_problems, probe_gpus
    g = probe_gpus(FakeNVML(n=2, cc=(8, 0), throttle=0x40, ecc=3))
    assert g["gpu_count"] == 2 and g["gpus"][0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert g["gpus"][0]["memory_total"] == 80 * 2**30 and g["gpus"][0]["bf16"] is True
    assert g["nvlink"] is False and g["gpus"][1]["throttle"] == ["hw_thermal"]
    names = {p.name for p in env_problems(g, {"fp16": {"enabled": True}})}
    assert {"bf16_available_fp16_used", "gpu_throttled", "gpu_ecc_errors", "gpu_no_nvlink"} <= names
    assert "no_gpu" not in names
    v100 = probe_gpus(FakeNVML(n=1, cc=(7, 0)))
    assert {p.name for p in env_problems(v100, {"bf16": {"enabled": True}})} >= {"bf16_unsupported"}
    assert probe_gpus(FakeNVML(n=2, nvlink=True))["nvlink"] is True


def test_fake_nvml_failures_are_handled():
    from dsdoctor.env import env_problems, probe_gpus
    g = probe_gpus(FakeNVML(fail_init=True))
    assert g["nvml"] == "failed" and "Library Not Found" in g["nvml_error"] and g["gpus"] == []
    assert [p.name for p in env_problems(g)] == ["no_gpu"]
    g = probe_gpus(FakeNVML(fail_count=True))
    assert g["nvml"] == "failed" and "GPU is lost" in g["nvml_error"]


def test_env_vars_checks():
    from dsdoctor.env import env_problems
    facts = {"nvml": "ok", "gpus": [{"index": 0}, {"index": 1}], "cpu_count": 8, "shm_bytes": 64 << 20,
             "memlock_bytes": 64 << 10, "nofile": 1024,
             "env": {"NCCL_P2P_DISABLE": "1", "OMP_NUM_THREADS": "8", "CUDA_VISIBLE_DEVICES": "0",
                     "TORCH_NCCL_ASYNC_ERROR_HANDLING": "0"}}
    names = {p.name for p in env_problems(facts)}
    assert {"nccl_p2p_disabled", "omp_oversubscribed", "cuda_visible_devices_short", "small_shm",
            "low_memlock", "low_nofile", "nccl_debug_unset", "nccl_async_error_handling_off"} <= names


def test_scheduler_fallback_table_matches_installed_deepspeed(monkeypatch):
    from dsdoctor.config import schedulers
    real = {n: schedulers.scheduler_params(n) for n in schedulers.DEEPSPEED_SCHEDULERS}
    assert real == schedulers.FALLBACK


def test_catalogue_snapshot_is_current():
    from dsdoctor.config.catalogue import SNAPSHOT, _introspect
    snap = json.loads(SNAPSHOT.read_text())
    assert _introspect().root.to_dict() == snap["root"], "run: python -m dsdoctor.config.catalogue"


def test_doctor_fit_check(rules_dir):
    code, doc = doctor_json(rules_dir, "-c", str(CONFIGS / "onecycle.json"), "--params", "13B",
                            "--gpus-per-node", "8", "--gpu-memory", "40GiB", "--cpu-memory", "1TiB")
    f = by_key(doc)["zero_optimization.stage"]
    assert code == 1 and f["rule"] == "cfg-model-states-exceed-gpu" and f["category"] == "oom"
    assert f["fixes"][0]["config_patch"]["zero_optimization"]["stage"] == doc["estimate"]["cheapest"]["stage"]
    assert f["fixes"][0]["validated"] is True
    code, doc = doctor_json(rules_dir, "-c", str(CONFIGS / "onecycle.json"), "--params", "125M",
                            "--gpu-memory", "16GiB", "--cpu-memory", "1TiB")
    assert not any(x["rule"] == "cfg-model-states-exceed-gpu" for x in doc["findings"])


def test_scheduler_checks_shared_module():
    from dsdoctor.config.schedulers import REQUIRED, check_scheduler_block, scheduler_params
    assert scheduler_params("OneCycle")["cycle_max_lr"] is REQUIRED
    assert scheduler_params("StepLR")["step_size"] is REQUIRED          # torch class, by signature
    assert scheduler_params("WarmupOneCycle") is None
    names = lambda b: {(p.name, p.key) for p in check_scheduler_block(b)}  # noqa: E731
    assert names({"type": "WarmupDecayLR", "params": {"warmup_num_steps": 10}}) == {
        ("scheduler_missing_param", "scheduler.params.total_num_steps")}
    assert ("scheduler_warmup_exceeds_total", "scheduler.params.warmup_num_steps") in names(
        {"type": "WarmupCosineLR", "params": {"total_num_steps": 100, "warmup_num_steps": 1000}})
    assert ("scheduler_unknown_param", "scheduler.params.warmup") in names({"type": "StepLR", "params": {"step_size": 1, "warmup": 5}})
    assert names({"type": "OneCycle", "params": {"cycle_min_lr": 1e-4, "cycle_max_lr": 1e-3}}) == set()


def test_world_size_from_launcher_env_and_evidence_line(rules_dir, tmp_path):
    p = tmp_path / "ds.json"
    p.write_text('{\n  "train_batch_size": 32,\n  "train_micro_batch_size_per_gpu": 4,\n'
                 '  "gradient_accumulation_steps": 1,\n  "steps_per_print": 10,\n'
                 '  "zero_optimization": {\n    "stage": 2,\n    "offload_params": {"device": "cpu"}\n  }\n}\n')
    res = CliRunner().invoke(app, ["doctor", "--rules", str(rules_dir), "-c", str(p), "--json"],
                             env={"WORLD_SIZE": "4"})
    doc = json.loads(res.stdout)
    f = by_key(doc)
    assert f["train_batch_size"]["fixes"][0]["config_patch"] == {"gradient_accumulation_steps": 2}
    assert "$WORLD_SIZE" in f["train_batch_size"]["summary"]
    ev = f["zero_optimization.offload_params"]["evidence"][0]
    assert ev["line"] == 8 and "offload_params" in ev["text"]


def test_nccl_socket_ifname_checked_against_interfaces():
    from dsdoctor.env import env_problems, probe_env_vars
    env = probe_env_vars({"NCCL_SOCKET_IFNAME": "nosuchif0"})
    assert env["ifname_missing"] == ["nosuchif0"]
    assert "nccl_ifname_missing" in [p.name for p in env_problems({"env": env})]
    assert probe_env_vars({"NCCL_SOCKET_IFNAME": "lo"})["ifname_missing"] == []


# --- data_efficiency at every level; optimizer params for Muon / mup and without deepspeed ------

def test_data_efficiency_block_passes(rules_dir):
    code, doc = doctor_json(rules_dir, "-c", str(CONFIGS / "data_efficiency.json"), "--world-size", "64")
    assert code == 0, [f["rule"] for f in doc["findings"]]
    assert not [f for f in doc["findings"] if (f.get("key") or "").startswith("data_efficiency")]


def test_data_efficiency_deep_unknown_key(rules_dir, tmp_path):
    cfg = json.loads((CONFIGS / "data_efficiency.json").read_text())
    metric = cfg["data_efficiency"]["data_sampling"]["curriculum_learning"]["curriculum_metrics"]["seqlen_truncate"]
    metric["schedule_config"]["max_stepp"] = metric["schedule_config"].pop("max_step")
    cfg["data_efficiency"]["data_routing"]["random_ltd"]["model_mask_nam"] = "attention_mask"
    path = tmp_path / "de.json"
    path.write_text(json.dumps(cfg))
    code, doc = doctor_json(rules_dir, "-c", str(path), "--world-size", "64")
    assert code == 1
    found = by_key(doc)
    deep = ("data_efficiency.data_sampling.curriculum_learning.curriculum_metrics.seqlen_truncate."
            "schedule_config.max_stepp")
    assert found[deep]["rule"] == "cfg-unknown-key"
    assert "Did you mean max_step?" in found[deep]["summary"]
    ltd = found["data_efficiency.data_routing.random_ltd.model_mask_nam"]
    assert "Did you mean model_mask_name?" in ltd["summary"]
    # a user-chosen metric name is not a typo
    assert not [k for k in found if k.endswith(".seqlen_truncate") or k.endswith(".vocabularyrarity")]


def test_muon_and_mup_params_checked():
    from dsdoctor.config.lint import lint
    base = {"train_micro_batch_size_per_gpu": 1, "steps_per_print": 10}
    muon = lint({**base, "optimizer": {"type": "Muon", "params": {"lr": 0.02, "momentun": 0.95, "adam_lr": 3e-4}}})
    [p] = [p for p in muon if p.name == "optimizer_unknown_param"]
    assert p.key == "optimizer.params.momentun" and p.facts["suggestion"] == "momentum"
    assert p.facts["ignored"] is True          # Muon drops unknown keys instead of raising
    ok = lint({**base, "optimizer": {"type": "Muon", "params": {"lr": 0.02, "momentum": 0.95, "ns_method": "gram"}}})
    assert not [p for p in ok if p.name.startswith("optimizer_")]
    mu = lint({**base, "optimizer": {"type": "MuAdamW", "params": {"lr": 1e-3, "weight_decai": 0.1}}})
    assert [p.facts["suggestion"] for p in mu if p.name == "optimizer_unknown_param"] == ["weight_decay"]


@pytest.fixture
def without_deepspeed(monkeypatch):
    """The lint as it runs when deepspeed does not import: catalogue and optimizers from the snapshot."""
    from dsdoctor.config import catalogue, optimizers
    for mod in (catalogue, optimizers):
        monkeypatch.setattr(mod, "deepspeed_module", lambda: None)
    catalogue.catalogue.cache_clear()
    optimizers._table.cache_clear()
    yield
    catalogue.catalogue.cache_clear()
    optimizers._table.cache_clear()


def test_no_deepspeed_checks_adam_params_and_data_efficiency(without_deepspeed):
    from dsdoctor.config.catalogue import catalogue
    from dsdoctor.config.lint import lint
    assert "snapshot" in catalogue().source
    cfg = json.loads((CONFIGS / "data_efficiency.json").read_text())
    assert not [p for p in lint(cfg, world_size=64) if p.name.startswith(("optimizer_", "unknown_key"))]
    cfg["optimizer"]["params"]["betas1"] = 0.9
    cfg["data_efficiency"]["data_routing"]["random_ltd"]["random_ltd_schedule"]["schedule_config"]["require_step"] = 1
    found = {p.key: p for p in lint(cfg, world_size=64)}
    adam = found["optimizer.params.betas1"]
    assert adam.name == "optimizer_unknown_param" and adam.facts["cls"] == "FusedAdam"
    assert adam.facts["suggestion"] is None and "betas" in adam.facts["allowed"]
    deep = found["data_efficiency.data_routing.random_ltd.random_ltd_schedule.schedule_config.require_step"]
    assert deep.facts["suggestion"] == "require_steps"


def test_optimizer_snapshot_is_current():
    from dsdoctor.config.catalogue import SNAPSHOT
    from dsdoctor.config.optimizers import introspect_table
    assert introspect_table() == json.loads(SNAPSHOT.read_text())["optimizers"], \
        "run: python -m dsdoctor.config.catalogue"


def test_a_patch_of_an_hf_auto_config_is_checked_with_its_auto_values_left_to_the_integration():
    """HF ds_configs hold "auto" (filled from TrainingArguments by transformers' integration):
    DeepSpeedConfig fails on the strings themselves, which says nothing about the patch."""
    from dsdoctor.fixes import validate_with_deepspeed
    cfg = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
           "gradient_clipping": "auto", "bf16": {"enabled": "auto"},
           "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "weight_decay": "auto"}},
           "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                                 "offload_param": {"device": "nvme", "nvme_path": "/local_nvme"}}}
    assert validate_with_deepspeed(cfg) == (True, None)
    bad = dict(cfg, zero_optimization={"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/x", "no_such": 1}})
    ok, why = validate_with_deepspeed(bad)
    assert ok is False and "no_such" in why


def test_an_unknown_world_size_is_the_one_the_batch_keys_imply():
    # `doctor` on a login node (no GPU, no $WORLD_SIZE) of a config for 4 ranks: DeepSpeed's parser sees 1 rank
    # outside a launcher; the batch equation holds at 4, so the config (and every patch) is not "rejected" for it
    pytest.importorskip("deepspeed")
    from dsdoctor.fixes import validate_with_deepspeed
    cfg = {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 4}
    assert validate_with_deepspeed(cfg, None) == (True, None)
    assert validate_with_deepspeed(cfg, 4) == (True, None)
    ok, why = validate_with_deepspeed(cfg, 2)
    assert ok is False and "world size 2" in why
    ok, why = validate_with_deepspeed({**cfg, "train_batch_size": 60}, None)
    assert ok is False and "no world size satisfies it" in why


def test_deepspeed_parser_prints_nothing_to_stdout(capfd):
    """DeepSpeed's logger writes to stdout: a deprecated key's warning while a patched config is
    checked would land in the middle of `analyze --json` (a paste with DeepSpeed 0.16's deprecated
    stage3_gather_fp16_weights_on_model_save made the JSON unreadable)."""
    from dsdoctor.fixes import validate_with_deepspeed
    ok, why = validate_with_deepspeed({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {
        "stage": 3, "stage3_gather_fp16_weights_on_model_save": True}})
    assert ok, why
    assert capfd.readouterr().out == ""
