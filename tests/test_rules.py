"""Every rule's own examples (match and nomatch), and the rule loader's error messages."""
from __future__ import annotations

import pytest

from dsdoctor.examples import check_rule_examples
from dsdoctor.rules import RuleError, RuleSet, load_rule_file

RULES = RuleSet.load()


@pytest.mark.parametrize("rule", RULES.rules, ids=lambda r: r.id)
def test_rule_examples(rule):
    assert check_rule_examples(rule, RULES) == []


def test_one_rule_file_per_category():
    """rules/<category>.yaml holds exactly the rules of that category (findings.CATEGORIES)."""
    from pathlib import Path

    from dsdoctor.findings import CATEGORIES
    rules = RuleSet.load()
    assert {Path(r.file).stem for r in rules.rules} <= set(CATEGORIES)
    for r in rules.rules:
        assert Path(r.file).stem == r.category, f"{r.id} ({r.category}) is in {r.file}"


def test_rules_loaded():
    assert len(RULES.rules) >= 5
    assert len({r.id for r in RULES.rules}) == len(RULES.rules)


BAD = {
    "yaml": ("rules:\n  - id: x\n\ttitle: tab\n", "bad.yaml:3: invalid YAML"),
    "category": ("rules:\n  - id: x-1\n    category: nope\n    severity: error\n    title: t\n    summary: s\n"
                 "    source: s\n    match: {symptom: a}\n    examples: {match: [{log: a}], nomatch: [{log: b}]}\n",
                 "bad.yaml:2: rule x-1: category 'nope'"),
    "expr": ("rules:\n  - id: x-2\n    category: oom\n    severity: error\n    title: t\n    summary: s\n"
             "    source: s\n    match: {symptom: a, where: 'phase =='}\n    examples: {match: [{log: a}], nomatch: [{log: b}]}\n",
             "rule x-2: match.where"),
    "examples": ("rules:\n  - id: x-3\n    category: oom\n    severity: error\n    title: t\n    summary: s\n"
                 "    source: s\n    match: {symptom: a}\n", "rule x-3: 'examples' needs"),
    "python-tag": ("rules: !!python/object/apply:os.system ['echo hi']\n", "invalid YAML"),
    "unknown-field": ("rules:\n  - id: x-4\n    categroy: oom\n", "unknown field(s): categroy"),
    # a dict literal inside a template piece would print the raw template: refused at load
    "template": ("rules:\n  - id: x-5\n    category: oom\n    severity: error\n    title: t\n"
                 "    summary: \"{ {'a': 'b'}.get(reason) }\"\n"
                 "    source: s\n    match: {symptom: a}\n    examples: {match: [{log: a}], nomatch: [{log: b}]}\n",
                 "rule x-5: summary:"),
    # the same in a fix's advice, rendered like the summary: `kwargs={"use_reentrant": False}` printed as '?'
    "fix-template": ("rules:\n  - id: x-6\n    category: oom\n    severity: error\n    title: t\n    summary: s\n"
                     "    source: s\n    match: {symptom: a}\n"
                     "    fixes: [{title: f, advice: 'kwargs={\"use_reentrant\": False}'}]\n"
                     "    examples: {match: [{log: a}], nomatch: [{log: b}]}\n",
                     "rule x-6: fix.advice:"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_rule_files_give_one_line_errors(tmp_path, name):
    text, expected = BAD[name]
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(RuleError) as ei:
        load_rule_file(p)
    msg = str(ei.value)
    assert expected in msg
    assert "\n" not in msg


_PLACEHOLDER = __import__("re").compile(r"(?<![\w?/'\"])\?(?![\w?])")
_BARE_LOGS = [  # the bare messages users paste: no rank prefix, no traceback, no numbers
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n",
    "CUDA out of memory\n",
    "RuntimeError: CUDA error: an illegal memory access was encountered\n",
    "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:14522\n",
]


def test_no_finding_shows_a_question_mark_for_an_unknown_value():
    # a rank, an amount or a setting the log does not give is left out of the sentence, not printed as '?'
    from dsdoctor.pipeline import Diagnoser
    from dsdoctor.sources.logs import events_from_text
    logs = [c["log"] for r in RULES.rules for c in r.examples.get("match", []) if c.get("log")] + _BARE_LOGS
    bad = []
    for log in logs:
        d = Diagnoser(rules=RULES)
        d.feed_all(events_from_text(log, "x.log"))
        for f in d.finish():
            bad += [f"{f.rule}: ...{part[max(0, m.start() - 40):m.end() + 10]}..."
                    for part in (f.title, f.summary) for m in _PLACEHOLDER.finditer(part)]
    assert not bad, bad
