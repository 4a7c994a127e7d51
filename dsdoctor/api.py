"""The Python API for notebooks and scripts: `dsdoctor.analyze(paths)` returns a Report.

    import dsdoctor
    report = dsdoctor.analyze("logs/", config="ds_config.json")
    report.findings[0].rule, report.findings[0].fixes[0].config_patch
    print(report)                    # the same text as `dsdoctor analyze`
    report.to_dict()                 # the same document as `dsdoctor analyze --json`

The command and this function share one application layer (`usable_inputs`,
`diagnose_inputs`: sources.inputs.expand, sources.logs.read_log, pipeline.Diagnoser,
fixes.resolve_fixes), which `dsdoctor run`'s post-mortem uses too; bad input raises AnalyzeError (a ValueError) with
the command's one-line message instead of exiting. Settings files (pyproject.toml,
dsdoctor.toml) are not read: pass select/ignore/rules_dirs explicitly.

The three front doors meet here: `diagnose_inputs` (analyze, the post-mortem), `check_config`
(the doctor, checkup.py) and `Watch` (live mode: every rank's LiveSession feeds its events to
one, live/session.py). Each goes through pipeline.Diagnoser and gives findings whose fixes are
resolved by fixes.resolve_fixes; the commands only parse arguments and print.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .events import Event
from .findings import Finding, worst_severity


def __getattr__(name: str) -> Any:
    # the doctor's application layer (checkup.py), imported when asked for: not by `analyze`
    if name in ("Checkup", "check_config"):
        from . import checkup
        return getattr(checkup, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AnalyzeError(ValueError):
    """The input cannot be analysed. str() is one line, as the CLI prints it."""


@dataclass
class Report:
    findings: list[Finding]                  # most likely root cause first
    inputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # inputs skipped, truncated files
    events_seen: int = 0
    config: dict[str, Any] | None = None
    rules: Any = field(default=None, repr=False)         # the RuleSet that ran
    facts: dict[str, Any] = field(default_factory=dict)  # what the run told about itself (Context)
    log_end: dict[str, Any] | None = None    # the last training progress and whether a normal end followed
    issue: Any = None                        # what a pasted issue body told besides the log (dsdoctor/issue)

    @property
    def worst(self) -> str | None:
        """The most severe finding's severity (critical, error, warning, info), or None."""
        return worst_severity(self.findings)

    def exit_code(self, fail_on: str = "warning") -> int:
        """What `dsdoctor analyze --fail-on LEVEL` would exit with (0 or 1)."""
        from .report import exit_code
        return exit_code(self.findings, fail_on)

    def to_dict(self) -> dict[str, Any]:
        """The `dsdoctor analyze --json` document (schema dsdoctor.report/1)."""
        from .report import to_json
        return to_json(self.findings, inputs=self.inputs, warnings=self.warnings, written_config=None,
                       log_end=self.log_end, **({"issue_text": self.issue.to_dict()} if self.issue else {}))

    def to_sarif(self) -> dict[str, Any]:
        """The `--format sarif` document (SARIF 2.1.0)."""
        from .output.sarif import to_sarif
        from .rules import RuleSet
        return to_sarif(self.findings, (self.rules or RuleSet.load()).by_id)

    def __str__(self) -> str:
        from rich.console import Console

        from .report import print_report
        buf = io.StringIO()
        print_report(self.findings, Console(file=buf, width=100, no_color=True, highlight=False),
                     title=f"dsdoctor analyze · {self.events_seen} events from {len(self.inputs)} input(s)")
        return buf.getvalue()

    def __repr__(self) -> str:
        rules = ", ".join(f"{f.rule} ({f.severity})" for f in self.findings[:5])
        more = f", … {len(self.findings) - 5} more" if len(self.findings) > 5 else ""
        return f"<dsdoctor Report: {len(self.findings)} finding(s) from {len(self.inputs)} input(s): {rules}{more}>"


def _paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def usable_inputs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> tuple[list, list[str]]:
    """The readable inputs among `paths` (files, folders, node folders, '-'), and a warning for
    each one skipped (an empty or binary file among 64 rank logs). AnalyzeError when nothing
    usable is left."""
    from .sources.inputs import InputError, check_readable, expand
    try:
        inputs = expand(_paths(paths))
    except InputError as e:
        raise AnalyzeError(str(e)) from None
    warnings: list[str] = []
    usable = []
    for inp in inputs:
        try:
            check_readable(inp)
            usable.append(inp)
        except InputError as e:
            if _no_stall_recorded(inp):
                continue        # the watchdog's stack file, made at attach, stays empty when no stall came
            warnings.append(f"{e}; skipped")
    if not usable:
        raise AnalyzeError(warnings[0].removesuffix("; skipped") if len(inputs) == 1 else
                           f"none of the {len(inputs)} inputs is a readable text log ({warnings[0]})")
    return usable, warnings


def _no_stall_recorded(inp: Any) -> bool:
    try:
        return inp.path is not None and inp.path.name.startswith("stacks-rank") and inp.path.stat().st_size == 0
    except OSError:
        return False


def plain_events(inputs: list, warnings: list[str], sample: bool = True) -> Iterator[Event]:
    """Every event of every input, in order (sources.logs.read_log)."""
    from .sources.logs import read_log
    for inp in inputs:
        yield from read_log(inp, warnings, sample)


def diagnose_inputs(inputs: list, warnings: list[str] | None = None, cfg: dict | None = None, *,
                    world_size: int | None = None, rule_set: Any = None, sample: bool = True,
                    validate: bool = True, on_event: Callable[[Event], None] | None = None,
                    events: Callable[[list, list[str], bool], Iterable[Event]] = plain_events) -> Report:
    """The application layer every front door that reads evidence shares (analyze, the
    post-mortem of `dsdoctor run`, this API): inputs -> events -> pipeline -> findings with
    their fixes resolved against `cfg`. `on_event` sees every event too (the HTML report's
    series); `events` may wrap the reading (a progress bar)."""
    from .rules import RuleError, RuleSet
    from .sources.inputs import InputError

    warnings = [] if warnings is None else warnings
    if sample is True:           # one steady-line budget for the run's rank logs (sources/sampler.py)
        from .sources.sampler import RunSampling
        sample = RunSampling()
    rule_set = rule_set if rule_set is not None else RuleSet.load()
    watch = Watch(cfg, world_size=world_size, rule_set=rule_set)
    try:
        for ev in events(inputs, warnings, sample):
            watch.feed(ev)
            if on_event is not None:
                on_event(ev)
        report = watch.report(validate=validate)
        issue = _issue_text(inputs, watch.pasted, report.facts) if cfg is None and watch.pasted else None
        if issue is not None and issue.changes_the_analysis():
            again = lambda: _again(inputs, issue, world_size, rule_set, sample, validate, events)  # noqa: E731
            second = again()
            lost = _diagnosis_lost(report, second) if issue.config else None
            if lost:            # the log's own diagnosis does not hold with it: not the run's config
                issue.reject_config(lost)
                second = again() if issue.changes_the_analysis() else None
            report = second or report
        if issue is not None and issue.config is not None:
            from .issue.lint import pasted_config_findings
            report.findings += pasted_config_findings(issue, report.findings, report.facts, rule_set, validate)
        if issue is not None:
            for k, v in issue.facts().items():
                report.facts.setdefault(k, v)
            report.issue = issue
    except InputError as e:
        raise AnalyzeError(str(e)) from None
    except RuleError as e:          # a rule expression the evaluator refuses when it runs
        raise AnalyzeError(f"bad rule file: {e}") from None
    if watch.bad_events:
        warnings.append(f"{watch.bad_events} event(s) in events files had fields of the wrong type and were skipped")
    report.inputs, report.warnings = [i.name for i in inputs], warnings
    return report


def _again(inputs: list, issue: Any, world_size: int | None, rule_set: Any, sample: Any, validate: bool,
           events: Callable) -> Report:
    """The input again, with the pasted config as --config gives one (and the launch command's
    world size, a GPU's bf16 support): the rules and the fixes read them as they happen."""
    watch = Watch(issue.config.config if issue.config else None, world_size=world_size, rule_set=rule_set,
                  facts=issue.facts(), pasted=True)
    if sample is not False:
        from .sources.sampler import RunSampling
        sample = RunSampling()
    for ev in events(inputs, [], sample):
        watch.feed(ev)
    return watch.report(validate=validate)


def _diagnosis_lost(first: Report, second: Report) -> str | None:
    """What the log alone diagnosed and the pasted config takes away (a ZeRO-3 error read with
    a stage-2 config): the top problem's category changed, or no problem is left."""
    def top(r: Report) -> Finding | None:
        return next((f for f in r.findings if f.severity != "info"), None)
    a, b = top(first), top(second)
    if a is None:
        return None
    if b is None:
        return f"the log alone shows {a.rule}; with the config no problem is left"
    if a.category != b.category:
        return f"the log alone shows {a.rule} ({a.category}); with the config {b.rule} ({b.category})"
    return None


def _issue_text(inputs: list, pasted: list[str], log_facts: dict[str, Any]) -> Any:
    """What the text around a pasted log tells (dsdoctor/issue): read only for the inputs where
    the paste detector saw pasted prose; the config of the last one that holds one."""
    from .issue import MAX_ISSUE_BYTES, read_issue
    found = None
    for inp in inputs:
        if inp.name not in pasted or inp.kind != "log" or (inp.path is None and inp.stdin_text is None):
            continue
        try:
            with inp.open() as fh:
                raw = fh.read(MAX_ISSUE_BYTES + 1)
        except OSError:
            continue
        if len(raw) > MAX_ISSUE_BYTES:
            continue
        issue = read_issue(raw.decode("utf-8", "replace"), inp.name, log_facts)
        if issue.found() and (found is None or issue.config or not found.config):
            found = issue
    return found


def post_mortem(out: str | os.PathLike, rc: int, command: list[str],
                stopped: dict[str, Any] | None = None,
                kernel: dict[str, Any] | None = None) -> tuple[Report, list[str]]:
    """`dsdoctor run`'s diagnosis when the command has ended: the command's exit recorded as
    evidence (DIR/events-run.jsonl), with the stop `dsdoctor run` passed on to it if any
    (supervise.Stops.facts: signal, forwarded, escalated) and what the kernel's OOM-kill counters
    said of the run (live/oom_counter.oom_kill_facts: oom_kills, oom_rose), then everything the run left in DIR
    through diagnose_inputs, and DIR/report.html. Returns the report and the warnings to show."""
    from .events import Event, EventWriter
    from .report_series import RunSeries
    from .supervise import exit_text
    out = Path(out)
    try:
        w = EventWriter(out / "events-run.jsonl")
        w.write(Event("exit", data={"exitcode": rc, "command": " ".join(command)[:500], **(stopped or {}),
                                    **(kernel or {})},
                      time=time.time(), text=exit_text(rc, command, stopped, kernel)))
        w.close()
    except OSError:
        pass
    series = RunSeries()
    warnings: list[str] = []
    try:
        inputs, warnings = usable_inputs([str(out)])
        report = diagnose_inputs(inputs, warnings, on_event=series.feed)
    except AnalyzeError as e:
        warnings.append(str(e))
        report = Report([], [], warnings)
    html = out / "report.html"
    try:                 # the HTML report of every watched run: DIR/report.html
        from .report_html import write as write_html
        write_html(html, report.findings, series, title=f"dsdoctor run · exit code {rc}", inputs=report.inputs,
                   notes=[f"Command: {' '.join(command)[:500]}"], events_seen=report.events_seen,
                   facts=report.facts)
    except Exception as e:   # never costs the diagnosis in the terminal
        warnings.append(f"{html}: HTML report not written ({type(e).__name__}: {e})")
    return report, warnings


class Watch:
    """Events -> findings, one event at a time: live mode's application layer (one rank's
    events as they happen; the findings that appear with each one are printed at once) and the
    core of diagnose_inputs. report() is the whole Report at any time. Not thread-safe:
    live/session.py calls it under its lock."""

    def __init__(self, cfg: dict[str, Any] | None = None, *, world_size: int | None = None,
                 rule_set: Any = None, facts: dict[str, Any] | None = None, pasted: bool = False) -> None:
        from .context import Context
        from .pipeline import Diagnoser
        self.config = cfg
        facts = {**(facts or {}), **({"world_size": world_size} if world_size else {})}
        self._diag = Diagnoser(Context.from_config(cfg, pasted=pasted, **facts), rule_set)
        if type(self).feed is Watch.feed:  # (not a subclass's own feed)
            self.feed = self._diag.feed    # type: ignore[method-assign]  # one call less per event (4 per step live)
        if type(self).feed_step is Watch.feed_step and type(self).feed is Watch.feed:
            self.feed_step = self._diag.feed_step   # type: ignore[method-assign]
            self.feed_usual_step = self._diag.feed_usual_step   # type: ignore[method-assign]

    def feed(self, ev: Event) -> list[Finding]:
        """Feed one event; return the findings it made appear (each is returned once)."""
        return self._diag.feed(ev)

    def feed_step(self, evs: list[Event]) -> list[Finding]:
        """feed() of one live step's events (step, lr, loss, grad norm), the same findings in
        fewer calls (pipeline.Diagnoser.feed_step); a subclass's own feed() takes them one by one."""
        if type(self).feed is not Watch.feed:
            return [f for ev in evs for f in self.feed(ev)]
        return self._diag.feed_step(evs)

    def feed_usual_step(self, evs: list[Event]) -> list[Finding]:
        """feed_step() of a step whose shape its maker vouches for (live/session.py Prewritten.usual)."""
        if type(self).feed is not Watch.feed:
            return [f for ev in evs for f in self.feed(ev)]
        return self._diag.feed_usual_step(evs)

    @property
    def pasted(self) -> list[str]:
        """Inputs where the paste detector saw pasted prose around the log (an issue body)."""
        return self._diag.pasted

    @property
    def bad_events(self) -> int:
        """Events-file events a detector could not use (fields of the wrong type)."""
        return self._diag.bad_events

    def report(self, *, validate: bool = False) -> Report:
        """Every finding so far (finish()-time ones too: a slope, a missing rank), fixes
        resolved against the config given. `validate` runs DeepSpeed's config parser per fix:
        off by default, since a live caller is inside the training process."""
        from .fixes import resolve_fixes
        findings = self._diag.finish()
        resolve_fixes(findings, self.config, self._diag.context.facts.get("world_size"), validate=validate)
        return Report(findings, [], [], self._diag.events_seen, self.config, self._diag.rules,
                      facts=dict(self._diag.context.facts), log_end=self._diag.log_end())


def analyze(paths: str | os.PathLike | Iterable[str | os.PathLike], config: str | os.PathLike | dict | None = None,
            *, world_size: int | None = None, all_lines: bool = False,
            select: list[str] | None = None, ignore: list[str] | None = None,
            rules_dirs: Iterable[str | os.PathLike] = (), rules: str | os.PathLike | None = None,
            validate: bool = True) -> Report:
    """Diagnose the logs / event files / folders in `paths`, like `dsdoctor analyze`.

    config: the run's ds_config (a path, or the dict) — fixes are then computed against it and,
    with `validate`, checked by DeepSpeed's config parser. select/ignore: rule selectors (id
    prefix, glob or category). rules_dirs: extra rule folders added to the built-in rules;
    rules: a folder that replaces them.
    """
    from . import rule_selection
    from .config_io import ConfigError, load_config
    from .rules import RuleError

    cfg = config if isinstance(config, dict) or config is None else None
    if cfg is None and config is not None:
        try:
            cfg = load_config(config)
        except ConfigError as e:
            raise AnalyzeError(str(e)) from None
    try:
        rule_set = rule_selection.load(Path(rules) if rules else None, [Path(d) for d in rules_dirs], select, ignore)
    except RuleError as e:
        raise AnalyzeError(str(e)) from None
    usable, warnings = usable_inputs(paths)
    return diagnose_inputs(usable, warnings, cfg, world_size=world_size, rule_set=rule_set,
                           sample=not all_lines, validate=validate)
