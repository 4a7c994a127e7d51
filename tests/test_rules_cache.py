"""Rule files are parsed and checked once per text (rule_cache.py): a later start reads the
parsed document and skips the checks of a text they accepted before. An edited file is new
text: parsed and checked again, so its error is the one a first load gives."""
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
    match: {symptom: a, where: "x > 1"}
    fixes:
      - title: f
        when: "y is None"
        config_patch: {zero_optimization: {stage: "=min(3, x)"}}
    examples: {match: [{log: a}], nomatch: [{log: b}]}
"""
# the same file with one character changed: a function the evaluator does not have
BAD = GOOD.replace("min(3, x)", "mni(3, x)")


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return rule_cache.folder()


def _first_load_error(path: Path, home: Path, monkeypatch) -> str:
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))          # an empty cache
    with pytest.raises(RuleError) as ei:
        load_rule_file(path)
    return str(ei.value)


def test_accepted_file_is_not_checked_again_and_reads_the_same(tmp_path, cache_home, monkeypatch):
    p = tmp_path / "r.yaml"
    p.write_text(GOOD)
    first = load_rule_file(p)
    assert len(list(cache_home.glob("*.ok"))) == 1            # accepted: marked

    def not_again(*a):
        raise AssertionError("checked again")
    monkeypatch.setattr(rules, "_check_rule", not_again)
    again = load_rule_file(p)                                 # from the cache, unchecked
    assert again == first


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
    assert msg == _first_load_error(p, tmp_path / "empty-cache", monkeypatch)
    assert len(list(cache_home.glob("*.ok"))) == 1            # the bad text is never marked
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home.parent.parent))
    with pytest.raises(RuleError):                            # and fails again the next time
        load_rule_file(p)


def test_changed_checker_checks_again(tmp_path, cache_home, monkeypatch):
    """A mark made by other checking code (an upgrade) does not vouch for the text."""
    p = tmp_path / "r.yaml"
    p.write_text(BAD)
    rule_cache.mark_accepted(BAD, "some older dsdoctor")
    with pytest.raises(RuleError):
        load_rule_file(p)


def test_shipped_rules_read_the_same_from_the_cache(cache_home):
    RuleSet._cache.clear()
    checked = {f.name: load_rule_file(f) for f in sorted(rules_dir().glob("*.yaml"))}
    assert len(list(cache_home.glob("*.ok"))) == len(checked)
    cached = {f.name: load_rule_file(f) for f in sorted(rules_dir().glob("*.yaml"))}
    assert cached == checked
