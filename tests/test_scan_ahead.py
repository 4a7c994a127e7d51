"""The fast path scans the next blocks in threads while this block's lines are parsed
(sources/scanner.py: _Ahead, SCANS_IN_FLIGHT): the lines, their numbers and their order must be
exactly those of scanning each block in turn, however many scans run at once, and an abandoned
read must leave no scan running."""
from __future__ import annotations

import threading

import pytest

from dsdoctor.sources import scanner
from dsdoctor.sources.sampler import SteadySampler

pytestmark = pytest.mark.skipif(scanner.matcher().fast is None, reason="needs hyperscan (the fast path)")


def _log() -> bytes:
    lines = []
    for step in range(1, 6001):
        lines.append(f"[2024-05-01 10:00:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step={step}, skipped=0, "
                     f"lr=[0.0003], mom=[(0.9, 0.95)]")
        lines.append(f"[Rank 0] time (ms) | fwd: 11{step % 5}.0 | bwd: 23{step % 4}.0 | step: 41.0")
        if step in (1234, 4321):
            lines.append("[rank0]: RuntimeError: CUDA error: an illegal memory access was encountered")
    return ("\n".join(lines) + "\n").encode()


def _blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


class _InTurn:
    """_Ahead's stand-in that computes at once, in the reader's thread."""

    def __init__(self, fn, arg):
        self._out = fn(arg)

    def wait(self) -> None:
        pass

    def result(self):
        return self._out


@pytest.mark.parametrize("in_flight", [1, 2, 4])
@pytest.mark.parametrize("size", [9973, 64 << 10])
def test_scanning_ahead_changes_nothing(size, in_flight, monkeypatch):
    data = _blocks(_log(), size)
    names = scanner.matcher().names
    monkeypatch.setattr(scanner, "SCANS_IN_FLIGHT", in_flight)
    ahead = list(scanner.candidate_hits(data, SteadySampler(names)))
    monkeypatch.setattr(scanner, "_Ahead", _InTurn)
    in_turn = list(scanner.candidate_hits(data, SteadySampler(names)))
    assert ahead == in_turn
    assert sum(b"illegal memory access" in raw for _, raw, _ in ahead) == 2


@pytest.mark.parametrize("in_flight", [1, 3])
def test_an_abandoned_read_leaves_no_scan_running(in_flight, monkeypatch):
    started: list = []
    monkeypatch.setattr(scanner, "SCANS_IN_FLIGHT", in_flight)

    class Slow(scanner._Ahead):
        def __init__(self, fn, arg):
            def slow(body):
                threading.Event().wait(0.05)      # still scanning when the reader is closed
                return fn(body)
            super().__init__(slow, arg)
            started.append(self)

    monkeypatch.setattr(scanner, "_Ahead", Slow)
    hits = scanner.candidate_hits(_blocks(_log(), 9973), SteadySampler(scanner.matcher().names))
    next(hits)
    hits.close()
    assert started and not any(a._thread.is_alive() for a in started)
    monkeypatch.undo()
    # the fast database is free again: a new read works
    assert list(scanner.candidate_hits(_blocks(_log(), 64 << 10), SteadySampler(scanner.matcher().names)))
