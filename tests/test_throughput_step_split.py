"""Where a lasting slowdown starts: a clean step in a smoothed rate (a tqdm s/it that jumps and
stays) is placed at the step, not at the first split whose median already sees the new level."""
from __future__ import annotations

from dsdoctor.detect.throughput import find_drop


def test_clean_step_is_split_where_it_happens():
    vals = [3100.0] * 40 + [4600.0] * 80          # ms per iteration: 3.1 s/it, then 4.6 s/it
    d = find_drop(vals, higher_is_better=False, min_after=12)
    assert d["split"] == 40 and d["before"] == 3100.0 and d["after"] == 4600.0


def test_samples_per_second_step():
    vals = [42.0] * 30 + [29.0] * 30
    assert find_drop(vals, higher_is_better=True)["split"] == 30
