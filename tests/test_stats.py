"""dsdoctor/stats.py gives what `statistics` gives (the detectors use it to keep `statistics`,
with `fractions`, `decimal` and `random`, out of the start-up), and find_drop's sorted-list
medians give what sorting each side gave."""
from __future__ import annotations

import math
import random
import statistics

import pytest

from dsdoctor.detect.throughput import find_drop
from dsdoctor.stats import fmean, median


def _same(a, b) -> bool:
    return (a == b or (a != a and b != b)) and type(a) is type(b)


def test_median_and_fmean_match_statistics():
    rnd = random.Random(5)
    for _ in range(5000):
        xs = [rnd.choice([rnd.random(), float(rnd.randrange(5)), rnd.lognormvariate(0, 3), math.inf, rnd.randrange(9)])
              for _ in range(rnd.randrange(1, 40))]
        assert _same(median(xs), statistics.median(xs)), xs
        assert _same(median(iter(xs)), statistics.median(iter(xs))), xs
        assert _same(fmean(xs), statistics.fmean(xs)), xs


def test_empty_data_raises_as_statistics_does():
    with pytest.raises(statistics.StatisticsError):
        median([])
    with pytest.raises(statistics.StatisticsError):
        fmean([])


def _find_drop_by_sorting(values, higher_is_better, monkeypatch):
    """find_drop as it was: each candidate split's two sides sorted anew (its path for values
    that cannot be kept sorted, taken here by telling it every value is a NaN)."""
    import dsdoctor.detect.throughput as t
    with monkeypatch.context() as m:
        m.setattr(t, "all", lambda _: False, raising=False)
        return find_drop(values, higher_is_better)


def test_find_drop_same_splits_as_sorting_each_side(monkeypatch):
    rnd = random.Random(7)
    for _ in range(400):
        n = rnd.choice([4, 9, 12, 40, 150, 250, 600])
        k = rnd.randrange(n)
        base = rnd.uniform(10, 1000)
        vals = [base * (1 + rnd.gauss(0, 0.05)) * (1.5 if i > k else 1) for i in range(n)]
        if rnd.random() < 0.3:
            vals = [float(rnd.choice([1, 2, 3])) for _ in range(n)]     # ties
        hib = rnd.random() < 0.5
        assert find_drop(vals, hib) == _find_drop_by_sorting(vals, hib, monkeypatch)
