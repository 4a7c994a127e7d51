"""SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format) for dsdoctor's findings.

One run, tool `dsdoctor`; a rule descriptor for each rule that produced a finding; one result
per finding, its primary location the config key (doctor) or the first evidence line (analyze),
the other evidence lines as relatedLocations. Levels: critical/error -> error, warning ->
warning, info -> note. The dsdoctor-specific details (category, ranks, steps, fixes) are in
each result's `properties`. Checked against the OASIS schema in tests/test_ci_output.py.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any, TextIO

from ..version import __version__
from ..findings import Finding
from ..rules import Rule
from . import file_uri, locations, message

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {"critical": "error", "error": "error", "warning": "warning", "info": "note"}


def _plain_title(template: str) -> str:
    """A rule's title without its per-finding {expressions}: the rule as a whole."""
    return re.sub(r"\s*\{[^{}]*\}", " …", template).replace("' …'", "'…'").strip()


def _descriptor(rule_id: str, rule: Rule | None, f: Finding) -> dict[str, Any]:
    sev = rule.severity if rule else f.severity
    d: dict[str, Any] = {"id": rule_id,
                         "shortDescription": {"text": _plain_title(rule.title) if rule else f.title},
                         "defaultConfiguration": {"level": LEVEL.get(sev, "warning")},
                         "properties": {"category": rule.category if rule else f.category,
                                        "severity": sev, "tags": [rule.category if rule else f.category]}}
    if rule is not None:
        if rule.description.strip():
            d["fullDescription"] = {"text": " ".join(rule.description.split())}
        d["help"] = {"text": f"Source: {rule.source}. Explain: dsdoctor rules {rule.id}"}
        url = next((r for r in rule.references if isinstance(r, str) and r.startswith(("https://", "http://"))), None)
        if url:
            d["helpUri"] = url
    return d


def _physical(source: str, line: int | None, col: int | None) -> dict[str, Any] | None:
    uri = file_uri(source)
    if uri is None:
        return None
    loc: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    if line:
        region: dict[str, Any] = {"startLine": int(line)}
        if col:
            region["startColumn"] = int(col)
        loc["region"] = region
    return loc


def _result(f: Finding, index: int, texts: dict[str, str] | None) -> dict[str, Any]:
    r: dict[str, Any] = {"ruleId": f.rule, "ruleIndex": index, "level": LEVEL.get(f.severity, "warning"),
                         "message": {"text": message(f)}}
    places = []
    for src, line, col, text in locations(f, texts):
        phys = _physical(src, line, col)
        if phys is not None:
            places.append((phys, text))
    if places:
        r["locations"] = [{"physicalLocation": places[0][0]}]
        if len(places) > 1:
            r["relatedLocations"] = [{"id": i, "physicalLocation": p, "message": {"text": t[:500]}}
                                     for i, (p, t) in enumerate(places[1:], 1)]
    anchor = f.key or (f"{places[0][0]['artifactLocation']['uri']}" if places else "")
    r["partialFingerprints"] = {"dsdoctorFinding/v1": hashlib.sha256(f"{f.rule}|{anchor}".encode()).hexdigest()[:32]}
    props: dict[str, Any] = {"category": f.category, "severity": f.severity,
                             "fixes": [fx.to_dict() for fx in f.fixes]}
    if f.ranks:
        props["ranks"] = f.ranks
    if f.steps:
        props["steps"] = f.steps
    if f.key:
        props["key"] = f.key
    if f.consequence_of:
        props["consequenceOf"] = f.consequence_of
    r["properties"] = props
    return r


def to_sarif(findings: list[Finding], rules_by_id: dict[str, Rule] | None = None,
             texts: dict[str, str] | None = None) -> dict[str, Any]:
    """The SARIF log as a dict. `texts`: file name -> text of configs whose keys are located."""
    rules_by_id = rules_by_id or {}
    order: dict[str, int] = {}
    descriptors = []
    results = []
    for f in findings:
        if f.rule not in order:
            order[f.rule] = len(descriptors)
            descriptors.append(_descriptor(f.rule, rules_by_id.get(f.rule), f))
        results.append(_result(f, order[f.rule], texts))
    return {"$schema": SCHEMA_URI, "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "dsdoctor", "version": __version__,
                                          "semanticVersion": __version__, "rules": descriptors}},
                      "columnKind": "unicodeCodePoints",
                      "results": results}]}


def print_sarif(findings: list[Finding], rules_by_id: dict[str, Rule] | None = None,
                texts: dict[str, str] | None = None, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(to_sarif(findings, rules_by_id, texts), out, indent=2, default=str)
    out.write("\n")
