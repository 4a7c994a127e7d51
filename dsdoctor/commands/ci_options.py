"""Options shared by analyze, doctor and rules for CI: --format, --fail-on, --select, --ignore,
--rules-dir, merged with the project's settings file (dsdoctor/settings.py). Declared with
commands/params.py (no typer import): `analyze` reads plain command lines without typer."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from ..output import FORMATS
from ..report import FAIL_ON
from ..rules import RuleError, RuleSet
from .common import fail
from .params import Option

FORMAT_HELP = "Output: text (default), json (one JSON document, schema dsdoctor.report/1), sarif (SARIF 2.1.0), github (GitHub Actions annotations)."
FAIL_ON_HELP = ("Exit 1 when a finding is at least this severe: info | warning (default) | error | never. "
                "0 otherwise; 2 for unusable input.")
SELECT_HELP = "Only these rules: id prefix, glob or category; repeatable or comma-separated."
IGNORE_HELP = "Skip these rules: id prefix, glob or category; repeatable or comma-separated."
RULES_DIR_HELP = "A folder of extra *.yaml rules, added to the built-in ones (repeatable)."
REPLACE_HELP = "Replace the built-in rules with the rules of this folder."


def format_option() -> Any:
    return Option(None, "--format", "-f", help=FORMAT_HELP, metavar="text|json|sarif|github")


def fail_on_option() -> Any:
    return Option(None, "--fail-on", help=FAIL_ON_HELP, metavar="info|warning|error|never")


def select_option() -> Any:
    return Option(None, "--select", help=SELECT_HELP, metavar="RULE")


def ignore_option() -> Any:
    return Option(None, "--ignore", help=IGNORE_HELP, metavar="RULE")


def rules_dir_option() -> Any:
    return Option(None, "--rules-dir", help=RULES_DIR_HELP, metavar="DIR")


def replace_option() -> Any:
    return Option(None, "--rules", help=REPLACE_HELP, metavar="DIR")


def output_format(fmt: Optional[str], as_json: bool) -> str:
    """--json is --format json."""
    if fmt is not None and fmt not in FORMATS:
        fail(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if as_json and fmt not in (None, "json"):
        fail(f"--json and --format {fmt} contradict each other (--json is --format json)")
    return "json" if as_json else (fmt or "text")


def _split(values: Optional[List[str]]) -> list[str]:
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def setup(replace: Optional[Path], rules_dirs: Optional[List[Path]], select: Optional[List[str]],
          ignore: Optional[List[str]], fail_on: Optional[str]) -> tuple[RuleSet, str]:
    """(the rules to run, the --fail-on level), command line over the settings file."""
    from .. import rule_selection
    from ..settings import SettingsError, load_settings
    if fail_on is not None and fail_on not in FAIL_ON:
        fail(f"--fail-on {fail_on}: choose one of {', '.join(FAIL_ON)}")
    try:
        s = load_settings()
    except SettingsError as e:
        fail(str(e))
    sel = _split(select) or s.select
    ign = s.ignore + _split(ignore)
    try:
        rules = rule_selection.load(replace, [*s.rules_dirs, *(rules_dirs or [])], sel, ign)
    except RuleError as e:
        msg = str(e)
        if msg.startswith("--"):             # a selector or folder, not a rule file's content
            fail(msg + (f" (settings: {s.file})" if s.file else ""))
        fail(f"bad rule file: {msg}")
    return rules, fail_on or s.fail_on or "warning"


def emit(fmt: str, findings: list, rules: RuleSet, texts: dict[str, str] | None = None) -> None:
    """The CI formats (sarif, github); text and json stay with each command's own printer."""
    if fmt == "sarif":
        from ..output.sarif import print_sarif
        print_sarif(findings, rules.by_id, texts)
    elif fmt == "github":
        from ..output.github import print_github
        print_github(findings, texts)
