"""Fuzz dsdoctor's readers, loaders and option parsers with >= 10,000 generated inputs and
print, per target, how many inputs ran, how many ended in a traceback and how many hung
(ran past the per-input limit of tests/fuzz_targets.LIMIT_S).

    python scripts/fuzz.py                 # 10,000 inputs over the 6 targets (~2-4 min here)
    python scripts/fuzz.py --inputs 50000 --save

--save keeps every failing input in tests/corpus/fuzz/ (tests/test_fuzz.py replays them).
Exit code 1 if any input ended in a traceback or a hang.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

import fuzz_targets as ft  # noqa: E402


def fuzz(target: str, n: int, seed_value: int, keep: bool) -> tuple[collections.Counter, list[str]]:
    counts: collections.Counter = collections.Counter()
    examples: list[str] = []

    @seed(seed_value)
    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(ft.TARGETS[target][0])
    def one(value) -> None:
        result, detail = ft.outcome(target, value)
        counts[result] += 1
        if result != "ok":
            where = f" -> {ft.save(target, value).name}" if keep else ""
            if len(examples) < 5:
                examples.append(f"{result}: {detail}{where}")

    one()
    return counts, examples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=10_000, help="total generated inputs (split over the targets)")
    ap.add_argument("--targets", nargs="*", default=list(ft.TARGETS), choices=list(ft.TARGETS))
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--save", action="store_true", help="keep failing inputs in tests/corpus/fuzz/")
    args = ap.parse_args()
    per = -(-args.inputs // len(args.targets))
    total: collections.Counter = collections.Counter()
    t0 = time.monotonic()
    print(f"{'target':<10}{'inputs':>8}{'tracebacks':>12}{'hangs':>8}{'seconds':>9}")
    for name in args.targets:
        t = time.monotonic()
        counts, examples = fuzz(name, per, args.seed, args.save)
        total += counts
        n = sum(counts.values())
        print(f"{name:<10}{n:>8}{counts['traceback']:>12}{counts['hang']:>8}{time.monotonic() - t:>9.1f}", flush=True)
        for e in examples:
            print(f"    {e}")
    n = sum(total.values())
    print(f"{'total':<10}{n:>8}{total['traceback']:>12}{total['hang']:>8}{time.monotonic() - t0:>9.1f}")
    print(f"per-input limit {ft.LIMIT_S:g} s; {n} inputs, {total['traceback']} tracebacks, {total['hang']} hangs")
    return 1 if total["traceback"] or total["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
