"""Fuzz the readers, loaders and option parsers with hypothesis (tests/fuzz_targets.py):
every generated input either works or raises the reader's one-line error, within a
per-input time limit. CI runs a modest count (DSDOCTOR_FUZZ_EXAMPLES, default 60 per target,
~20 s in all); scripts/fuzz.py runs >= 10,000 and prints the counts. Inputs that once failed
are kept in tests/corpus/fuzz/ and replayed here."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

import fuzz_targets as ft  # noqa: E402

EXAMPLES = int(os.environ.get("DSDOCTOR_FUZZ_EXAMPLES", "60"))


def _check(target: str, value) -> None:
    result, detail = ft.outcome(target, value)
    if result != "ok":
        saved = ft.save(target, value)
        pytest.fail(f"{target}: {result} ({detail}); input kept in {saved}")


def _fuzz_test(target: str):
    strategy = ft.TARGETS[target][0]

    @pytest.mark.timeout(300)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def test(value) -> None:
        _check(target, value)
    test.__name__ = f"test_fuzz_{target}"
    return test


for _name in ft.TARGETS:
    globals()[f"test_fuzz_{_name}"] = _fuzz_test(_name)


CORPUS = sorted(p for p in ft.FUZZ_CORPUS.glob("*") if p.is_file() and not p.name.startswith("."))


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_fuzz_corpus_replays_clean(path: Path) -> None:
    target, value = ft.load(path)
    result, detail = ft.outcome(target, value)
    assert result == "ok", f"{path.name}: {result} ({detail})"
