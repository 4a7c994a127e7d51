"""The hand-written forms of two per-line regex searches on the scanner's hot path say
exactly what the regexes say (sources/recogniser.py: no_nonfinite, sources/lines.py:
_rank_in_msg): seeded random strings built from the pieces that matter, and real lines."""
from __future__ import annotations

import random

from dsdoctor.sources import lines, recogniser

NONFINITE_PIECES = [b"nan", b"inf", b"NaN", b"INF", b"Inf", b"info", b"[INFO]", b"Infinity", b"-inf", b"nanx",
                    b"xinf", b"a", b"Z", b" ", b"1", b"_", b".", b"\xc3\xa9", b"\n", b"'", b":"]
RANK_PIECES = ["[Rank ", "[rank", "[rank=", "Rank ", "rank=", "rank ", "ank", "]", "0", "12", " ", "x", "[",
               "=", "Frank ", "_rank=3", "crank=", "[Rank 1]", "Rank 2]", "rank=5", "RANK 3]"]


def _strings(pieces, n=30_000, seed=0):
    rnd = random.Random(seed)
    empty = pieces[0][:0]
    for _ in range(n):
        yield empty.join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8)))


def test_no_nonfinite_is_the_regex():
    real = [b"[2024-05-01 10:00:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step=10, skipped=0, lr=[0.0003]",
            b" iteration 10/ 100 | loss: 2.3E+00 | number of skipped iterations: 0 | number of nan iterations: 0 |",
            b"{'loss': nan, 'grad_norm': inf, 'learning_rate': 1e-05, 'epoch': 0.1}",
            b"{'loss': 1.2, 'grad_norm': 0.5, 'learning_rate': 1e-05, 'epoch': 0.1}"]
    for s in [*real, *_strings(NONFINITE_PIECES)]:
        assert recogniser.no_nonfinite(s) == (not recogniser._NONFINITE.search(s)), s


def test_rank_in_msg_is_the_regex_search():
    for s in _strings(RANK_PIECES, seed=1):
        want, got = lines._RANK_IN_MSG.search(s), lines._rank_in_msg(s)
        assert (want is None) == (got is None), s
        if want is not None:
            assert (want.span(), want.groups()) == (got.span(), got.groups()), s
