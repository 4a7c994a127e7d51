"""The fast path looks for the steady literals of a large block with `bytes.find` in the block's
first STEADY_WINDOW bytes and scans the block with a Hyperscan database of the other literals
and the steady literals not found there (sources/scanner.py: Matcher.fast_hits). It must say
exactly what the one database with every steady literal says: the same other hits in the same
order, the same steady literals present, and so the same lines, numbers and order."""
from __future__ import annotations

import random

import pytest

from dsdoctor.sources import scanner
from dsdoctor.sources.sampler import SteadySampler

pytestmark = pytest.mark.skipif(scanner.matcher().fast is None, reason="needs hyperscan (the fast path)")


def _line(rnd: random.Random, kind: int, step: int) -> str:
    """DeepSpeed step / throughput / timer lines (deepspeed/runtime/engine.py:
    DeepSpeedEngine._report_progress, deepspeed/utils/timer.py: ThroughputTimer.stop,
    SynchronizedWallClockTimer.log), an HF Trainer dict (transformers/trainer_callback.py:
    ProgressCallback.on_log), a tqdm bar frame glued to the next record (tqdm/std.py)."""
    ts = "[2024-05-01 10:00:00,000]"
    if kind == 0:
        return f"{ts} [INFO] [logging.py:123:log_dist] [Rank 0] step={step}, skipped=0, lr=[0.0003], mom=[(0.9, 0.999)]\n"
    if kind == 1:
        return (f"{ts} [INFO] [timer.py:264:stop] epoch=0/micro_step={step * 8}/global_step={step}, "
                f"RunningAvgSamplesPerSec=90.{rnd.randrange(99)}, CurrSamplesPerSec=91.5, MemAllocated=31.42GB, "
                "MaxMemAllocated=58.9GB\n")
    if kind == 2:
        return f"[Rank 0] time (ms) | fwd: 11{step % 5}.0 | bwd: 23{step % 4}.0 | step: 41.0\n"
    if kind == 3:
        return f"{{'loss': 2.{rnd.randrange(99)}, 'grad_norm': 0.3, 'learning_rate': 0.0003, 'epoch': 0.1}}\n"
    return f"\r  1%|          | {step}/90000 [1:02:03<4:05:06,  1.3{step % 10}it/s]"


def _log(seed: int, late_kinds: tuple[int, ...], n: int = 20000) -> bytes:
    """Healthy lines with errors here and there; the kinds in `late_kinds` start only in the
    second half (a group that is not in a block's first bytes). `s/it]` (tqdm's rate when
    slower than one step a second) is never printed: a steady literal that is in no block."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kinds = [k for k in range(5) if k not in late_kinds or i > n // 2]
        out.append(_line(rnd, rnd.choice(kinds), i) if kinds else f"data loader: shard {i} opened\n")
        if i % 1777 == 0:
            out.append("[rank0]: RuntimeError: CUDA error: an illegal memory access was encountered\n")
        if i == 12345:
            out.append("[Rank 0] time (ms) | fwd: nan | bwd: 23.0 | step: 41.0\n")     # an anomaly
    return "".join(out).encode()


def _one_database(m: scanner.Matcher, body: bytes) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    m.fast.scan(body, match_event_handler=lambda i, _f, to, _fl, _c: out.append((to, i)))
    return out


def _split(hits: list[tuple[int, int]], m: scanner.Matcher) -> tuple[set[int], list[tuple[int, int]]]:
    steady = {i for _, i in hits if i < len(m.literals) and m.groups[i] is not None}
    return steady, [(e, i) for e, i in hits if not (i < len(m.literals) and m.groups[i] is not None)]


@pytest.mark.parametrize("late", [(), (3,), (1, 3), (0, 1, 2, 3, 4)])
def test_fast_hits_say_what_one_database_says(late, monkeypatch):
    m = scanner.matcher()
    monkeypatch.setattr(scanner, "STEADY_SPLIT_FROM", 0)
    monkeypatch.setattr(scanner, "STEADY_WINDOW", 4096)
    data = _log(1, late)
    for size in (len(data), 300_001, 65_536):
        for k in range(0, len(data), size):
            body = data[k:k + size]
            body = body[:body.rfind(b"\n") + 1]
            assert _split(m.fast_hits(body), m) == _split(_one_database(m, body), m), (late, size, k)


@pytest.mark.parametrize("late", [(), (3,), (1, 3)])
def test_lines_are_those_of_one_database(late, monkeypatch):
    data = _log(2, late, 40000)
    blocks = [data[i:i + 250_007] for i in range(0, len(data), 250_007)]
    names = scanner.matcher().names
    monkeypatch.setattr(scanner, "STEADY_SPLIT_FROM", 1 << 62)      # one database for every block
    one = list(scanner.candidate_hits(blocks, SteadySampler(names)))
    monkeypatch.setattr(scanner, "STEADY_SPLIT_FROM", 0)
    monkeypatch.setattr(scanner, "STEADY_WINDOW", 2048)
    split = list(scanner.candidate_hits(blocks, SteadySampler(names)))
    assert split == one
    assert sum(b"illegal memory access" in raw for _, raw, _ in one) == len(range(0, 40000, 1777))
    assert any(b"fwd: nan" in raw for _, raw, _ in one)
