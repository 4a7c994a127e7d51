"""`statistics.median` and `statistics.fmean`, the same arithmetic, for the detectors.

The `statistics` module imports `fractions` (which compiles a large regex), `decimal` and
`random` at import: ~5 ms of every `analyze` start-up for two functions of a few lines.
"""
from __future__ import annotations

from math import fsum
from typing import Iterable


def median(data: Iterable[float]) -> float:
    """statistics.median: the middle value, or the mean of the two middle ones."""
    data = sorted(data)
    n = len(data)
    if n == 0:
        from statistics import StatisticsError
        raise StatisticsError("no median for empty data")
    if n % 2 == 1:
        return data[n // 2]
    i = n // 2
    return (data[i - 1] + data[i]) / 2


def fmean(data: list[float]) -> float:
    """statistics.fmean without weights, for a sized collection: fsum / n."""
    n = len(data)
    total = fsum(data)
    if not n:
        from statistics import StatisticsError
        raise StatisticsError("fmean requires at least one data point")
    return total / n
