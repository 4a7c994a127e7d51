"""dsdoctor.analyze(paths, config=None, ...): the Python API returns the same findings as the
`analyze` command, on the real CPU DeepSpeed logs in fixtures/."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dsdoctor
from dsdoctor.api import AnalyzeError, Report
from dsdoctor.cli import _register, app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CONFIGS = Path(__file__).parent / "configs"
_register()


def test_same_document_as_the_cli():
    report = dsdoctor.analyze(FIXTURES / "nan.log")
    assert isinstance(report, Report)
    res = CliRunner().invoke(app, ["analyze", str(FIXTURES / "nan.log"), "--json"])
    assert report.to_dict() == json.loads(res.stdout)
    assert report.exit_code() == res.exit_code == 1
    assert report.findings[0].category == "nan_loss" and report.worst in ("critical", "error")
    assert "nan" in repr(report) and "Evidence" in str(report)
    assert report.to_sarif()["runs"][0]["results"][0]["ruleId"] == report.findings[0].rule


def test_config_paths_and_options():
    cfg = CONFIGS / "zero3_offload_bf16.json"
    report = dsdoctor.analyze([str(FIXTURES / "fp16_overflow.log"), FIXTURES / "healthy.log"], config=cfg,
                              validate=False)
    assert report.inputs == [str(FIXTURES / "fp16_overflow.log"), str(FIXTURES / "healthy.log")]
    assert report.config and report.events_seen > 0
    first = report.findings[0].rule
    assert first not in [f.rule for f in dsdoctor.analyze(FIXTURES / "fp16_overflow.log", ignore=[first]).findings]
    assert dsdoctor.analyze(FIXTURES / "healthy.log").exit_code() == 0


@pytest.mark.parametrize("kwargs,msg", [
    ({"paths": "/no/such/log"}, "no such file"),
    ({"paths": FIXTURES / "nan.log", "config": "/no/such.json"}, "no such file"),
    ({"paths": FIXTURES / "nan.log", "select": ["zzz"]}, "matches no rule"),
])
def test_bad_input_raises_one_line(kwargs, msg):
    with pytest.raises(AnalyzeError) as ei:
        dsdoctor.analyze(**kwargs)
    assert msg in str(ei.value) and "\n" not in str(ei.value)


def test_watch_is_the_live_door_to_the_same_pipeline():
    """Live mode's application layer (api.Watch, what every rank's LiveSession feeds) gives,
    event by event, the findings analyze gives for the same events, each announced once."""
    from dsdoctor.api import Watch, plain_events, usable_inputs
    inputs, warnings = usable_inputs(FIXTURES / "nan.log")
    watch, announced = Watch(), []
    for ev in plain_events(inputs, warnings):
        announced += watch.feed(ev)
    report = watch.report()
    assert [f.rule for f in report.findings] == [f.rule for f in dsdoctor.analyze(FIXTURES / "nan.log").findings]
    assert announced and len({f.rule for f in announced}) == len(announced)
    assert report.findings[0].category == "nan_loss" and report.events_seen > 0
