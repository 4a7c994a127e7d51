"""Sampling of steady metric lines: the fast path (hyperscan reports only unusual steady lines)
and the line-by-line path see the same unusual lines, wherever the blocks are cut, and both
match reading every line where it matters (findings, non-finite values, skipped steps, the
step an error happened at)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from dsdoctor.pipeline import Diagnoser
from dsdoctor.sources import scanner
from dsdoctor.sources.inputs import Input
from dsdoctor.sources.logs import read_log
from dsdoctor.sources.registry import STEADY_KEEP_ALL
from dsdoctor.sources.sampler import SteadySampler

pytestmark = pytest.mark.skipif(scanner._triggers().fast is None, reason="needs hyperscan (the fast path)")

STEPS = max(8 * STEADY_KEEP_ALL, 8000) + 321       # the stride phase is reached, and the events below
OVERFLOW_AT, HF_NAN_AT, MG_NAN_AT, MG_MISSING_AT, MG_WRAPPED_AT = 1500, 2222, 3001, 3500, 3777


def _ds(step: int) -> str:
    skipped = int(step >= OVERFLOW_AT)
    lines = [f"[2024-05-01 10:00:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step={step}, skipped={skipped}, "
             f"lr=[0.0003], mom=[(0.9, 0.95)]",
             f"[2024-05-01 10:00:00,000] [INFO] [timer.py:264:stop] epoch=0/micro_step={step}/global_step={step}, "
             f"RunningAvgSamplesPerSec=90.{step % 7}, CurrSamplesPerSec=9{step % 3}.5, MemAllocated=31.42GB, MaxMemAllocated=58.9GB",
             f"[Rank 0] time (ms) | fwd: 11{step % 5}.0 | bwd: 23{step % 4}.0 | step: 41.0"]
    if step == OVERFLOW_AT:
        lines.insert(0, "[2024-05-01 10:00:00,000] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] OVERFLOW! "
                        "Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768")
    if step % 10 == 0:
        loss = "nan" if step == HF_NAN_AT else f"2.{step % 97:02d}"
        lines.append(f"{{'loss': {loss}, 'grad_norm': 0.3{step % 9}, 'learning_rate': 0.0003, 'epoch': 0.{step % 10}}}")
    return "\n".join(lines) + "\n"


def _megatron(step: int) -> str:
    loss = "" if step == MG_MISSING_AT else f"lm loss: {'nan' if step == MG_NAN_AT else '2.1%05d' % step} | "
    line = (f" iteration {step:8d}/  500000 | consumed samples: {step * 256:12d} | elapsed time per iteration (ms): "
            f"28{step % 9}0.5 | learning rate: 3.000E-04 | global batch size:   256 | {loss}loss scale: 1.0 | grad norm: "
            f"0.3{step % 7} | number of skipped iterations:   0 | number of nan iterations:   0 |\n")
    if step == MG_WRAPPED_AT:        # pasted at a fixed width: one record over three physical lines
        line = line[:120] + "\n" + line[120:240] + "\n" + line[240:]
    return line


OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.82 GiB. GPU 0 has a total capacity of "
       "79.15 GiB of which 2.19 GiB is free.\n")


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("steady")
    ds = d / "rank0.log"
    ds.write_text("".join(_ds(s) for s in range(1, STEPS + 1)) + OOM)
    mg = d / "rank1.log"
    mg.write_text("".join(_megatron(s) for s in range(1, STEPS + 1)) + OOM)
    return [ds, mg]


def _read(path: Path, block: int, mode: str, monkeypatch=None):
    inp = Input(path.name, path, "log", None)
    m = scanner._triggers()
    saved = m.fast
    if mode == "line-by-line":
        m.fast = None
    try:
        return list(read_log(inp, sample=mode != "all", block_size=block))
    finally:
        m.fast = saved


def _unusual(events) -> set:
    """What must never be sampled away: non-finite values, skipped steps, errors."""
    out = set()
    for e in events:
        v = e.data.get("value")
        if isinstance(v, float) and not math.isfinite(v) or e.kind in ("overflow", "oom") \
                or (e.kind == "skipped" and e.data.get("per_interval")
                    and (e.data.get("nan_iters") or 0) + (e.data.get("skipped") or 0) > 0):
            out.add((e.kind, e.step, e.line, e.data.get("missing")))
    return out


def _findings(events) -> list:
    d = Diagnoser()
    d.feed_all(events)
    return [(f.rule, f.ranks, f.steps) for f in d.finish()]


@pytest.mark.parametrize("which", [0, 1])
def test_fast_path_keeps_every_unusual_line(logs, which):
    path = logs[which]
    every = _read(path, 8 << 20, "all")
    expected = _unusual(every)
    assert expected, "the log has unusual lines"
    for block in (8 << 20, 64 << 10, 9973):
        for mode in ("fast", "line-by-line"):
            got = _read(path, block, mode)
            assert _unusual(got) == expected, (mode, block)
            assert _findings(got) == _findings(every), (mode, block)
            oom = [e for e in got if e.kind == "oom"]
            assert oom and oom[0].step == STEPS, "the last steady line before the error is parsed"
            assert len(got) < 0.6 * len(every), "steady lines are sampled"


def test_first_lines_of_each_group_are_all_parsed(logs):
    got = _read(logs[0], 64 << 10, "fast")
    steps = sorted({e.step for e in got if e.kind == "throughput" and e.step is not None})
    assert steps[:STEADY_KEEP_ALL] == list(range(1, STEADY_KEEP_ALL + 1))


def test_wrapped_megatron_record_is_read_whole(logs):
    got = _read(logs[1], 9973, "fast")
    missing = [e for e in got if e.kind == "loss" and e.data.get("missing")]
    assert [e.step for e in missing] == [MG_MISSING_AT]
    nan = [e for e in got if e.kind == "loss" and e.step == MG_NAN_AT]
    assert nan and math.isnan(nan[0].data["value"])


def test_block_decisions_match_line_decisions():
    """kept_in (the fast path, a block at a time) keeps the same line numbers as admit."""
    names = scanner._triggers().names
    lit = scanner._triggers().index[b"SamplesPerSec="]
    one, many = SteadySampler(names, 10, per_doubling=3), SteadySampler(names, 10, per_doubling=3)
    line = b"epoch=0/micro_step=8/global_step=1, RunningAvgSamplesPerSec=1.5, CurrSamplesPerSec=1.5"
    kept_one = [n for n in range(1, 400) if one.admit((n, line, [lit])) is True]
    kept_many, seen = [], 0
    for size in (3, 1, 50, 7, 0, 200, 138):
        kept_many += [seen + 1 + k for k in many.kept_in("ds_throughput", size)]
        seen += size
    assert kept_one == kept_many
