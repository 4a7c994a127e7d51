"""dsdoctor estimate: numbers equal DeepSpeed's own estimators; fallback formulas too; CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor.cli import _register, app
from dsdoctor.config import model_states as memory

_register()
COMBOS = [(1_000_000_000, 100_000_000, 8, 1), (7_000_000_000, 250_000_000, 8, 4),
          (350_000_000, 50_000_000, 1, 1), (70_000_000_000, 1_000_000_000, 4, 16)]


@pytest.mark.parametrize("P,L,g,n", COMBOS)
def test_rows_equal_deepspeed_estimators(P, L, g, n):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs as z3
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs as z2
    rows = {(r.stage, r.offload_optimizer, r.offload_param): r for r in memory.estimates(P, L, g, n)}
    cpu, gpu = z2(P, g, n, False, 1.5)
    assert (rows[2, "none", "none"].cpu_bytes, rows[2, "none", "none"].gpu_bytes) == (int(cpu), int(gpu))
    cpu, gpu = z2(P, g, n, True, 1.5)
    assert (rows[2, "cpu", "none"].cpu_bytes, rows[2, "cpu", "none"].gpu_bytes) == (int(cpu), int(gpu))
    assert rows[0, "none", "none"].gpu_bytes == int(z2(P, 1, 1, False, 1.5)[1])
    for opt, par in ((False, False), (True, False), (True, True)):
        cpu, gpu, _ = z3(P, L, g, n, opt, par, True, 1.5)
        r = rows[3, "cpu" if opt else "none", "cpu" if par else "none"]
        assert (r.cpu_bytes, r.gpu_bytes) == (int(cpu), int(gpu))


@pytest.mark.parametrize("P,L,g,n", COMBOS)
def test_fallback_formulas_equal_deepspeed(monkeypatch, P, L, g, n):
    real = [r.to_dict() for r in memory.estimates(P, L, g, n)]
    monkeypatch.setattr(memory, "deepspeed_module", lambda: None)
    assert [r.to_dict() for r in memory.estimates(P, L, g, n)] == real


def test_activation_formula():
    # Korthikanti et al. 2022: s*b*h*(34 + 5*a*s/h) per layer
    assert memory.activation_bytes(2048, 4096, 32, 1, 32) == 32 * 2048 * 4096 * (34 + 5 * 32 * 2048 / 4096)
    assert memory.activation_bytes(2048, 4096, 32, 1) == 32 * 2048 * 4096 * 34


def test_cli_json_and_cheapest_fit():
    res = CliRunner().invoke(app, ["estimate", "--params", "7B", "--gpus-per-node", "8", "--gpu-memory", "24GiB",
                                   "--cpu-memory", "512GiB", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {"stage", "offload_optimizer", "offload_param", "gpu_bytes", "cpu_bytes", "fits"} <= set(doc["estimates"][0])
    c = doc["cheapest"]
    assert c["fits"] and c["gpu_bytes"] <= 24 * 2**30
    assert all(not r["fits"] for r in doc["estimates"][:doc["estimates"].index(c)])
    assert doc["config_patch"]["zero_optimization"]["stage"] == c["stage"]


def test_cli_nothing_fits_and_bad_input():
    res = CliRunner().invoke(app, ["estimate", "--params", "1T", "--gpu-memory", "16GiB", "--cpu-memory", "64GiB"])
    assert res.exit_code == 1 and "Nothing fits" in res.stdout
    res = CliRunner().invoke(app, ["estimate", "--params", "seven"])
    assert res.exit_code == 2 and "not a parameter count" in res.stderr


def test_hf_config_params(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
                             "vocab_size": 50257, "n_positions": 1024}))
    res = CliRunner().invoke(app, ["estimate", "--params", str(p), "--json", "--gpu-memory", "16GiB",
                                   "--micro-batch", "4"])
    doc = json.loads(res.stdout)
    assert 120e6 < doc["params"] < 130e6          # GPT-2 small: 124M
    assert doc["activation_bytes"] > 0


# Mixture-of-experts configs written from transformers' own config classes' defaults
# (transformers/models/*/configuration_*.py; MixtralConfig's defaults are Mixtral-8x7B,
# Qwen2MoeConfig's Qwen1.5-MoE-A2.7B, DeepseekV3Config's DeepSeek-V3), with the key names
# their config.json files use. Expected: the parameters of the model transformers 5.25 builds
# from each on the meta device.
HF = Path(__file__).parent / "configs" / "hf"
MOE = {"mixtral-8x7b.json": 46_702_792_704, "qwen1.5-moe-a2.7b.json": 14_315_784_192,
       "qwen3-moe.json": 15_350_731_776, "deepseek-v3.json": 671_026_404_352,
       "deepseek-v2.json": 38_612_307_968, "dbrx.json": 2_459_207_680, "olmoe.json": 13_361_612_800}


@pytest.mark.parametrize("name", sorted(MOE))
def test_moe_counted_from_config(name):
    from dsdoctor.config.hf_model import params_from_config_dict
    shape = params_from_config_dict(json.loads((HF / name).read_text()), use_transformers=False)
    assert shape["params"] == pytest.approx(MOE[name], rel=1e-3)
    assert shape["experts"] and shape["moe_layers"] and "experts in" in shape["params_source"]


def test_moe_on_meta_device_mixtral_cli():
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    res = CliRunner().invoke(app, ["estimate", "--params", str(HF / "mixtral-8x7b.json"), "--json",
                                   "--gpu-memory", "80GiB"])
    doc = json.loads(res.stdout)
    assert doc["params"] == pytest.approx(46.7e9, rel=2e-3)          # Mixtral-8x7B: 46.7 B, not 7.24 B
    assert "meta device" in doc["params_source"]
    assert doc["largest_layer_params"] > 100e6


@pytest.mark.parametrize("name", sorted(set(MOE) - {"mixtral-8x7b.json"}))
def test_moe_on_meta_device(name):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from dsdoctor.config.hf_model import count_on_meta_device
    got = count_on_meta_device(json.loads((HF / name).read_text()))
    assert not isinstance(got, str), got
    assert got[0] == pytest.approx(MOE[name], rel=1e-3)


def test_unknown_model_type_falls_back_to_counting(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "my_private_moe", "hidden_size": 1024, "num_hidden_layers": 4,
                             "num_attention_heads": 8, "vocab_size": 1000, "intermediate_size": 2048,
                             "num_local_experts": 4, "tie_word_embeddings": False}))
    res = CliRunner().invoke(app, ["estimate", "--params", str(p), "--json"])
    doc = json.loads(res.stdout)
    per_layer = 4 * 1024 * 1024 + 4 * 3 * 1024 * 2048 + 4 * 1024 + 4 * 1024
    assert doc["params"] == 4 * per_layer + 2 * 1000 * 1024
    assert doc["params_source"].startswith("counted from config.json (4 experts in 4 of 4 layers)")
