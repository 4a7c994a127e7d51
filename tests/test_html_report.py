"""The HTML report, rendered by a real browser (headless Chromium, Debian package `chromium`) for
four real runs made with `dsdoctor run` over the demo training script: a NaN, a host OOM, a
slow rank (2 ranks) and a stall (2 ranks, watchdog abort).

For each: `dsdoctor analyze RUN --html` writes the report; Chromium loads it from disk with the
network off, its console must stay silent (checked against a control page that does log errors,
so the check itself is known to work), the rendered DOM must hold the case's picture with its
marks, and a screenshot is kept for people to look at (in $DSDOCTOR_TEST_ARTIFACTS or
<repo>/.test-artifacts/html-report/, which git ignores).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor import cli
from dsdoctor.findings import Finding
from dsdoctor.report_html import render
from dsdoctor.report_series import RunSeries

import run_ahead

if not cli.app.registered_commands:
    cli._register()

ROOT = Path(__file__).resolve().parent.parent
TRAIN = str(ROOT / "dsdoctor" / "demo" / "train.py")
ARTIFACTS = Path(os.environ.get("DSDOCTOR_TEST_ARTIFACTS") or ROOT / ".test-artifacts" / "html-report")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium): "
                                                            "the HTML report is not rendered in a browser")

# headless, offline, nothing from a previous profile: a fresh --user-data-dir per page
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]? ?(.*)")

# (scenario, `dsdoctor run` options, training command, picture id, texts that must be in that picture)
SCENARIOS = {
    "nan": ([], ["--steps", "30", "--dtype", "fp16", "--zero-stage", "1", "--fault", "nan", "--fault-step", "10"], 1,
            "curves", ["first non-finite value: loss at step 10", "loss scale", "overflow"]),
    "oom": ([], ["--steps", "10", "--fault", "oom", "--fault-step", "6"], 1,
            "memory", ["OOM rank 0: asked 64.00 GiB", "GiB available", "host RSS"]),
    "straggler": ([], ["--zero-stage", "2", "--hidden", "64", "--layers", "2", "--fault", "slow-rank",
                       "--fault-rank", "1", "--slow-ms", "80", "--steps", "50"], 2,
                  "step-times", ["rank 1 (slow)", "own compute"]),
    "stall": (["--stall-timeout", "5", "--on-stall", "abort"],
              ["--zero-stage", "2", "--hidden", "64", "--layers", "2", "--fault", "stall", "--fault-rank", "1",
               "--fault-step", "20", "--steps", "100000"], 2,
              "stall", ["stall verdict 1", "stuck at step 20"]),
}
EXPECTED_FINDING = {"nan": "nan_loss", "oom": "host_oom", "straggler": "straggler", "stall": "comm_stall"}


def _kill_tagged(tag: str) -> None:
    """`dsdoctor run` starts the training in its own session: find what is left by our tag."""
    import psutil
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DSDOCTOR_TEST_TAG") == tag:
                proc.kill()
        except (psutil.Error, OSError):
            pass


def dsdoctor_run(out: Path, run_opts: list[str], train: list[str], nproc: int, timeout: float = 150) -> str:
    tag = f"html-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "DSDOCTOR_TELEMETRY_INTERVAL": "1", "DSDOCTOR_EXCHANGE_EVERY": "5", "DSDOCTOR_TEST_TAG": tag,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, TRAIN] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), TRAIN]
    p = subprocess.Popen([sys.executable, "-m", "dsdoctor", "run", "--out", str(out), *run_opts, "--", *cmd, *train],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        text, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tagged(tag)
        text, _ = p.communicate()
        pytest.fail(f"dsdoctor run did not end within {timeout} s:\n{text[-3000:]}")
    finally:
        _kill_tagged(tag)
    return text


def chromium(url: str, tmp: Path, *action: str, timeout: float = 90) -> tuple[str, list[str]]:
    """Run headless Chromium on one page: (stdout, console messages)."""
    prof = tmp / f"profile-{time.time_ns()}"
    r = subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={prof}", *action, url],
                       capture_output=True, text=True, timeout=timeout)
    shutil.rmtree(prof, ignore_errors=True)
    console = [m.group(1) for line in r.stderr.splitlines() if (m := _CONSOLE.search(line))]
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, console


def external_references(html: str) -> list[str]:
    """Anything the page would load from outside the file (xmlns values are names, not loads)."""
    refs = re.findall(r'\b(?:src|href|xlink:href)\s*=\s*"([^"]*)"', html)
    bad = [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]
    bad += re.findall(r"url\(\s*['\"]?(?!data:|#)([^)'\"]+)", html)
    bad += re.findall(r"<(?:script|link|iframe|object|embed)\b[^>]*>", html, re.I)
    return bad


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pytest.importorskip("deepspeed")
    pytest.importorskip("matplotlib")
    base = tmp_path_factory.mktemp("html-runs")
    out = {}
    # the runs of one rank two at a time (one core each, tests/run_ahead.py), then the 2-rank ones alone (their
    # step times and stall verdict must not share the cores)
    single = {name: run_ahead.Background(lambda name=name, s=s: dsdoctor_run(base / name, s[0], s[1], s[2])).start()
              for name, s in SCENARIOS.items() if s[2] == 1}
    for name, (run_opts, train, nproc, _, _) in SCENARIOS.items():
        console = single[name].result() if name in single else dsdoctor_run(base / name, run_opts, train, nproc)
        out[name] = (base / name, console)
    return out


runner = CliRunner()


@pytest.mark.slow
@needs_chromium
def test_console_check_sees_errors_on_a_control_page(tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("control-error");'
                    'throw new Error("control-uncaught");</script></body></html>')
    _, console = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert any("control-error" in m for m in console) and any("control-uncaught" in m for m in console), console


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_report_renders_in_chromium(runs, name, tmp_path):
    run_dir, console_out = runs[name]
    html_path = tmp_path / f"{name}.html"
    res = runner.invoke(cli.app, ["analyze", str(run_dir), "--html", str(html_path)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 1, res.output[-2000:]
    assert "HTML report written to" in res.output and html_path.is_file()
    html = html_path.read_text(encoding="utf-8")
    assert external_references(html) == []
    assert len(html) < 400_000, len(html)          # a few dozen kB per picture
    # the findings, as in the terminal: evidence with file:line, fixes as JSON
    assert f"· {EXPECTED_FINDING[name]}</div>" in html
    assert re.search(r'<div class="meta">Run: ranks [12] · dtype \w+ · ZeRO stage \d', html)
    if name != "nan":       # live NaN events carry no log text, so that finding has no evidence lines
        assert re.search(r'<td class="loc"[^>]*>[^<]+:\d+</td>', html)
    if name in ("nan", "straggler"):
        assert '<pre title="JSON merge patch (RFC 7386) for your ds_config">{' in html

    _, _, _, fig_id, marks = SCENARIOS[name]
    dom, console = chromium(html_path.as_uri(), tmp_path, "--dump-dom")
    assert console == [], console
    fig = re.search(rf'<figure id="fig-{fig_id}">(.*?)</figure>', dom, re.S)
    assert fig, f"no {fig_id} picture in the rendered page"
    assert "<svg" in fig.group(1) and "<path" in fig.group(1)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fig.group(1))).replace("&gt;", ">")
    for m in marks:
        assert m in text, (m, text[:3000])
    # the picture of the root cause comes first
    assert dom.index('<figure id="fig-') == dom.index(f'<figure id="fig-{fig_id}">') or name == "straggler"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    _, console = chromium(html_path.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1100,2400")
    assert console == [], console
    assert shot.stat().st_size > 20_000

    # `dsdoctor run` wrote the same report into the run folder by itself
    auto = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f'<figure id="fig-{fig_id}">' in auto and external_references(auto) == []


def test_report_without_matplotlib_or_pictures_still_has_the_findings(monkeypatch):
    from dsdoctor import report_plots
    from dsdoctor.findings import Evidence, Fix
    f = Finding(rule="nan-loss", category="nan_loss", severity="error", title="Loss became <NaN>",
                summary="at step 3", ranks=[0], steps=[3], evidence=[Evidence("run/x.log", 12, "loss: nan")],
                fixes=[Fix("Train in bf16", config_patch={"bf16": {"enabled": True}})])
    monkeypatch.setattr(report_plots, "available", lambda: False)
    html = render([f], RunSeries(), title="t")
    assert "Loss became &lt;NaN&gt;" in html and "run/x.log:12" in html
    assert '&quot;bf16&quot;: {' in html and "dsdoctor[plot]" in html
    assert external_references(html) == []


def test_analyze_html_unwritable_path_is_one_line(tmp_path):
    log = tmp_path / "r.log"
    log.write_text("step 1 loss nan\n")
    res = runner.invoke(cli.app, ["analyze", str(log), "--html", str(tmp_path / "no" / "such" / "dir" / "r.html")])
    assert res.exit_code == 2 and res.stderr.startswith("dsdoctor: error: ") and "cannot write" in res.stderr
    assert "\n" not in res.stderr.strip()


def test_cuda_oom_message_numbers_become_the_memory_picture(tmp_path):
    """A log with only torch's OOM message (c10/cuda/CUDACachingAllocator.cpp wording): the
    picture is the message's own breakdown of the device memory next to the request."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.html"
    res = runner.invoke(cli.app, ["analyze", str(ROOT / "fixtures" / "excerpts" / "cuda_oom_torch21_step.log"),
                                  "--html", str(out)])
    assert res.exit_code == 1
    html = out.read_text(encoding="utf-8")
    fig = re.search(r'<figure id="fig-memory">(.*?)</figure>', html, re.S).group(1)
    assert "requested: 1.95 GiB" in fig and "allocated by PyTorch: 20.93 GiB" in fig
    assert html.index('id="fig-memory"') < html.index("</main>")
    assert 'id="fig-curves"' not in html          # one lr point is no curve


def test_many_ranks_are_a_heatmap_with_the_slow_rank_named():
    """64 ranks of DeepSpeed timer events (as the per-rank timer lines give them): a rank x step
    heatmap of each rank's own compute, the slow rank labelled."""
    pytest.importorskip("matplotlib")
    from dsdoctor.events import Event
    s = RunSeries()
    for step in range(120):
        for r in range(64):
            fwd = 20.0 + (r % 5) * 0.3 + (25.0 if r == 37 and step >= 40 else 0.0)
            s.feed(Event("timers", rank=r, step=step, time=1000.0 + step,
                         data={"fwd": fwd, "bwd_inner": 30.0, "bwd": 60.0, "step": 10.0}))
    f = Finding(rule="slow-rank", category="straggler", severity="warning", title="Rank 37 is slow",
                summary="forward", ranks=[37])
    html = render([f], s, title="t")
    fig = re.search(r'<figure id="fig-step-times">(.*?)</figure>', html, re.S).group(1)
    assert "<image" in fig and "rank 37 (slow)" in fig and "own compute per step" in fig
    assert len(html) < 200_000


def test_series_stay_bounded_and_keep_the_first_nan():
    import math
    from dsdoctor.report_series import MAX_POINTS, Points
    p = Points()
    for i in range(300_000):
        p.add(i, math.nan if i >= 123_457 else 1.0)
    assert len(p.xs) <= MAX_POINTS
    assert 123_457 in p.xs                          # the first non-finite value, whatever the stride
    gaps = {b - a for a, b in zip(p.xs, p.xs[1:]) if b < 123_457}
    assert len(gaps) == 1                           # evenly thinned before it
