"""Rule files are parsed and checked once per text (rule_cache.py): a later start reads the
checked rules and skips YAML and checks for a text they accepted before. An edited file is
new text: parsed and checked again, so its error is the one a first load gives."""
from __future__ import annotations

from pathlib import Path

import pytest

from dsdoctor import rule_cache, rules
from dsdoctor.rules import RuleError, RuleSet, load_rule_file, rules_dir

GOOD = """rules:
  - id: x-cached
    category: oom
    severity: error
    title: "out of memory on {ranks_text(ranks)}"
    summary: s
    source: s
    explains: [a-b]
    match: {symptom: [a, b], where: "x > 1"}
    fixes:
      - title: f
        when: "y is None"
        config_patch: {zero_optimization: {stage: "=min(3, x)"}}
        env: {NCCL_DEBUG: INFO}
    examples: {match: [{log: a, facts: {x: 2}}], nomatch: [{log: b}]}
"""
# the same file with one character changed: a function the evaluator does not have
BAD = GOOD.replace("min(3, x)", "mni(3, x)")


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return rule_cache.folder()


def _not_again(*a):
    raise AssertionError("parsed or checked again")


def test_accepted_file_is_not_checked_again_and_reads_the_same(tmp_path, cache_home, monkeypatch):
    p = tmp_path / "r.yaml"
    p.write_text(GOOD)
    first = load_rule_file(p)
    monkeypatch.setattr(rules, "_check_rule", _not_again)
    monkeypatch.setattr(rules, "_parse_yaml", _not_again)
    again = load_rule_file(p)                                 # from the cache
    assert again == first and again[0].file == str(p)
    other = tmp_path / "copy.yaml"                            # the same text in another file
    other.write_text(GOOD)
    assert [r.file for r in load_rule_file(other)] == [str(other)]


def test_cached_file_edited_to_be_invalid_gives_its_error(tmp_path, cache_home, monkeypatch):
    p = tmp_path / "r.yaml"
    p.write_text(GOOD)
    load_rule_file(p)
    load_rule_file(p)
    p.write_text(BAD)                                         # same name, same size
    with pytest.raises(RuleError) as ei:
        load_rule_file(p)
    msg = str(ei.value)
    assert "rule x-cached: config_patch value:" in msg and "unknown function mni()" in msg
    assert "\n" not in msg
    with pytest.raises(RuleError) as again:                   # a bad text is never kept
        load_rule_file(p)
    assert str(again.value) == msg
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(RuleError) as first:                   # what a first load says
        load_rule_file(p)
    assert str(first.value) == msg


def test_changed_checker_checks_again(tmp_path, cache_home, monkeypatch):
    """What other checking code (an older dsdoctor) kept for a text does not vouch for it."""
    p = tmp_path / "r.yaml"
    p.write_text(BAD)
    rule_cache.parsed(BAD, lambda t: [], "some older dsdoctor")
    with pytest.raises(RuleError):
        load_rule_file(p)


def test_shipped_rules_read_the_same_from_the_cache(cache_home):
    RuleSet._cache.clear()
    checked = {f.name: load_rule_file(f) for f in sorted(rules_dir().glob("*.yaml"))}
    cached = {f.name: load_rule_file(f) for f in sorted(rules_dir().glob("*.yaml"))}
    assert cached == checked
    # every file was kept: the YAML document and the checked rules
    assert len(list(cache_home.glob("*.json"))) == 2 * len(checked)
