"""Golden tests: every fixture (real DeepSpeed runs with injected faults, and hand-written
excerpts of the message formats of the installed torch/deepspeed) gets the diagnosis in
fixtures/expected.yaml: the top finding's category, and its rank/step where known (and the host of a
multi-node run where the log says it)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli_invoke import invoke_cli    # the app's click command built once for ~2,500 calls
from test_unwrap import wrapped      # a terminal's hard wrap

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXPECTED = yaml.safe_load((FIXTURES / "expected.yaml").read_text(encoding="utf-8"))


def analyze(path: Path) -> tuple[int, dict]:
    res = invoke_cli(["analyze", "--json", str(path)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.stderr
    return res.exit_code, json.loads(res.stdout)


def describe(doc: dict) -> str:
    return "; ".join(f"{f['rule']}({f['category']}, {f['severity']}, ranks {f['ranks']}, steps {f['steps'][:3]})"
                     for f in doc["findings"]) or "no findings"


def test_every_fixture_has_an_expectation():
    listed = {e["file"] for e in EXPECTED}
    present = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.suffix in (".log", ".ipynb")}
    assert present == listed


@pytest.mark.parametrize("exp", EXPECTED, ids=[e["file"] for e in EXPECTED])
def test_golden(exp):
    path = FIXTURES / exp["file"]
    code, doc = analyze(path)
    problems = [f for f in doc["findings"] if f["severity"] != "info"]
    if exp.get("healthy"):
        assert code == 0 and not problems, describe(doc)
        return
    assert code == 1 and problems, f"expected {exp['category']}, got {describe(doc)}"
    top = doc["findings"][0]
    assert top["category"] == exp["category"], describe(doc)
    for r in exp.get("ranks", []):
        assert r in top["ranks"], describe(doc)
    if "steps" in exp:
        assert top["steps"] and top["steps"][0] in exp["steps"], describe(doc)
    assert top["evidence"], "a finding without evidence"
    if "evidence" in exp:       # the decisive line is quoted, not only an echo of it
        assert exp["evidence"].lower() in json.dumps(top["evidence"], ensure_ascii=False).lower(), top["evidence"]
    if "host" in exp:           # a multi-node run's machine to drain: the host of its ranks, or of its evidence
        assert exp["host"] in {*top.get("hosts", {}).values(), top.get("node")}, describe(doc)


# The same fixtures the ways a log reaches us when a user pastes it (scripts/perturb_realworld.py
# does this to the real-world development set): behind `kubectl logs --prefix`, hard-wrapped by a
# terminal 100 columns wide, quoted in an issue. The diagnosis must not change.
def _kubectl(t: str) -> str:
    return "".join(f"[pod/trainer-worker-0/pytorch] {ln}\n" for ln in t.splitlines())


def _quoted(t: str) -> str:
    return "".join(f"> {ln}\n" for ln in t.splitlines())


PASTED = {"kubectl": _kubectl, "wrap100": lambda t: wrapped(t, 100), "quoted": _quoted}
# a notebook file is not pasted text: its JSON behind a prefix is no notebook any more
PASTABLE = [e for e in EXPECTED if not e["file"].endswith(".ipynb")]


@pytest.fixture(scope="module")
def pasted_dir(tmp_path_factory) -> Path:
    # one folder for the ~1,850 pasted copies: pytest's tmp_path makes a numbered folder per test and
    # lists every earlier one to number it (measured: 500 empty tests with tmp_path 11-30 s, without
    # 2.5-3.3 s, under load); each copy keeps its fixture's own name (the same JSON, checked)
    return tmp_path_factory.mktemp("pasted")


def _check_pasted(exp: dict, how: str, paste, pasted_dir: Path) -> None:
    """The fixture `exp` pasted as `how` (`paste` rewrites its text) keeps its diagnosis."""
    if how in exp.get("not_pasted", ()):
        pytest.skip(f"known limit: {exp['file']} pasted as {how} (fixtures/expected.yaml)")
    path = pasted_dir / how / exp["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(paste((FIXTURES / exp["file"]).read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
    code, doc = analyze(path)
    problems = [f for f in doc["findings"] if f["severity"] != "info"]
    if exp.get("healthy"):
        assert code == 0 and not problems, describe(doc)
        return
    assert problems and doc["findings"][0]["category"] == exp["category"], describe(doc)
    for r in exp.get("ranks", []):
        assert r in doc["findings"][0]["ranks"], describe(doc)


@pytest.mark.parametrize("how", sorted(PASTED))
@pytest.mark.parametrize("exp", PASTABLE, ids=[e["file"] for e in PASTABLE])
def test_golden_pasted(exp, how, pasted_dir):
    _check_pasted(exp, how, PASTED[how], pasted_dir)


# Only the last 40 lines: an issue thread's "here is the end of my log", the way logs nobody has seen
# reach us most often (scripts/perturb_fixtures.py pastes every fixture the sixteen ways). Only the
# fixtures longer than that (a shorter one is its own tail, tested above); a fixture whose decisive
# lines are above its last 40 says so in not_pasted, with why.
def _tail40(t: str) -> str:
    return "".join(f"{ln}\n" for ln in t.splitlines()[-40:])


LONG = [e for e in PASTABLE
        if len((FIXTURES / e["file"]).read_text(encoding="utf-8", errors="replace").splitlines()) > 40]


@pytest.mark.parametrize("exp", LONG, ids=[e["file"] for e in LONG])
def test_golden_tail40(exp, pasted_dir):
    _check_pasted(exp, "tail40", _tail40, pasted_dir)
