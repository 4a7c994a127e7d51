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

pytestmark = pytest.mark.skipif(scanner.matcher().fast is None, reason="needs hyperscan (the fast path)")

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
    m = scanner.matcher()
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
    names = scanner.matcher().names
    lit = scanner.matcher().index[b"SamplesPerSec="]
    one, many = SteadySampler(names, 10, per_doubling=3), SteadySampler(names, 10, per_doubling=3)
    line = b"epoch=0/micro_step=8/global_step=1, RunningAvgSamplesPerSec=1.5, CurrSamplesPerSec=1.5"
    kept_one = [n for n in range(1, 400) if one.admit((n, line, [lit])) is True]
    kept_many, seen = [], 0
    for size in (3, 1, 50, 7, 0, 200, 138):
        kept_many += [seen + 1 + k for k in many.kept_in("ds_throughput", size)]
        seen += size
    assert kept_one == kept_many


# ------------------------------------------------------------------ mixed console capture
# What a DeepSpeed job's console really holds: the kinds above randomly interleaved, tqdm
# bars redrawn with carriage returns and the next record glued to the last frame, HF dicts
# written through tqdm.write (which clears the bar first), 4.x numbers and 5.x strings.
# Formats: deepspeed/runtime/engine.py (_report_progress), deepspeed/utils/timer.py
# (ThroughputTimer.stop, SynchronizedWallClockTimer.log), transformers/trainer_callback.py
# (ProgressCallback.on_log), tqdm/std.py (tqdm.display), Megatron training_log.
MIXED_LINES = 24000
MIXED_NAN_HF, MIXED_NAN_MG, MIXED_MISSING_MG, MIXED_OVERFLOW = 6100, 9400, 13300, 15500


def _mixed_log() -> str:
    import random
    rnd = random.Random(7)
    out, step, bar, frame = [], 0, 0, ""
    for i in range(MIXED_LINES):
        k = rnd.choices(range(7), (3, 3, 3, 3, 2, 3, 3))[0]
        ts = f"[2024-05-01 10:{step // 60 % 60:02d}:{step % 60:02d},{i % 1000:03d}]"
        if i == MIXED_OVERFLOW:
            out.append(f"{ts} [INFO] [loss_scaler.py:266:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. "
                       "Attempted loss scale: 65536, reducing to 32768\n")
        if k == 0:
            step += 1
            out.append(f"{ts} [INFO] [logging.py:123:log_dist] [Rank 0] step={step}, skipped={int(i > MIXED_OVERFLOW)}, "
                       f"lr=[0.00029{i % 97:02d}], mom=[(0.9, 0.999)]\n")
        elif k == 1:
            out.append(f"{ts} [INFO] [timer.py:264:stop] epoch=0/micro_step={step * 8}/global_step={step}, "
                       f"RunningAvgSamplesPerSec=90.{i % 89}1234, CurrSamplesPerSec=9{i % 7}.5, MemAllocated=31.42GB, "
                       "MaxMemAllocated=58.9GB\n")
        elif k == 2:
            out.append(f"[Rank 0] time (ms) | fwd_microstep: 11{i % 9}.21 | bwd_microstep: 23{i % 7}.50 | "
                       "bwd_inner_microstep: 201.00 | bwd_allreduce_microstep: 30.12 | step_microstep: 41.00\n")
        elif k == 3:
            out.append(f"[Rank 0] time (ms) | fwd: 11{i % 9}.21 | bwd: 23{i % 7}.50 | bwd_inner: 201.00 | "
                       "bwd_allreduce: 30.12 | step: 41.00\n")
        elif k == 4:
            nan = MIXED_NAN_HF <= i < MIXED_NAN_HF + 40 and "nan" not in "".join(out[-40:])
            loss = ("'nan'" if i % 2 else "nan") if nan else (f"'2.{i % 97:02d}'" if i % 2 else f"2.{i % 97:02d}31")
            clear = "\r" + " " * len(frame) + "\r" if frame else ""
            out.append(f"{clear}{{'loss': {loss}, 'grad_norm': 0.3{i % 9}, 'learning_rate': 0.0003, "
                       f"'epoch': 0.{i % 10}}}\n{frame}")
        elif k == 5:
            for _ in range(1 + i % 3):
                bar += 1
                frame = f"\r{bar * 100 // 90000:3d}%|{'█' * (bar * 10 // 90000):<10}| {bar}/90000 [1:02:03<4:05:06,  1.3{i % 10}it/s]"
                out.append(frame)
        else:
            mg_nan = MIXED_NAN_MG <= i < MIXED_NAN_MG + 40 and "lm loss: nan" not in "".join(out[-40:])
            missing = MIXED_MISSING_MG <= i < MIXED_MISSING_MG + 40 and "batch size:   256 | loss scale" not in "".join(out[-40:])
            loss = "" if missing else f"lm loss: {'nan' if mg_nan else '2.1%05dE+00' % i} | "
            out.append(f" [2024-05-01 10:00:00] iteration {step:8d}/  500000 | consumed samples: {step * 256:12d} | "
                       f"elapsed time per iteration (ms): 28{i % 9}0.5 | learning rate: 3.000000E-04 | global batch size:   256 | "
                       f"{loss}loss scale: {32768.0 if i > MIXED_OVERFLOW else 65536.0} | grad norm: 0.3{i % 7} | "
                       "number of skipped iterations:   0 | "
                       "number of nan iterations:   0 |\n")
    out.append("\n" + OOM)
    return "".join(out)


@pytest.fixture(scope="module")
def mixed_log(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("mixed") / "rank0.log"
    p.write_text(_mixed_log(), encoding="utf-8")
    return p


def test_mixed_console_same_findings_on_every_path(mixed_log):
    """Randomly interleaved real formats with tqdm redraws: the fast path and the line-by-line
    path keep every non-finite value, missing loss, overflow and error of --all-lines, find the
    same, and the error's step is exact."""
    every = _read(mixed_log, 8 << 20, "all")
    expected = _unusual(every)
    kinds = {k for k, *_ in expected}
    assert {"loss", "overflow", "oom"} <= kinds, expected
    assert any(m for k, _s, _l, m in expected if k == "loss"), "the missing Megatron loss is among them"
    last_step = max(e.step for e in every if e.kind == "loss" and e.step is not None)
    for block in (8 << 20, 64 << 10, 9973):
        for mode in ("fast", "line-by-line"):
            got = _read(mixed_log, block, mode)
            assert _unusual(got) == expected, (mode, block)
            assert _findings(got) == _findings(every), (mode, block)
            oom = [e for e in got if e.kind == "oom"]
            assert oom and oom[0].step == last_step, (mode, block)
            assert len(got) < 0.5 * len(every), "steady lines are sampled"


# ------------------------------------------------------------------ one budget per run
def test_rank_logs_after_the_first_are_sampled_thinner_and_keep_what_matters(logs, tmp_path):
    """A run's rank logs share one steady-line budget (sources/sampler.py RunSampling): the
    first log with steady lines at full density, the others thinner; every unusual line, the
    step of the error and the findings stay those of reading every line."""
    from dsdoctor.api import plain_events
    from dsdoctor.sources.sampler import OTHER_RANKS_KEEP_ALL, RunSampling
    ranks = []
    for r in range(3):                    # three rank logs of the same DeepSpeed run
        p = tmp_path / f"rank{r}.log"
        p.write_bytes(logs[0].read_bytes())
        ranks.append(Input(p.name, p, "log", r))
    every = list(plain_events(ranks, [], False))
    got = list(plain_events(ranks, [], RunSampling()))
    alone = list(plain_events(ranks, [], True))          # each log sampled on its own (the old budget)
    per_source = lambda evs: [sum(e.source == i.name for e in evs) for i in ranks]   # noqa: E731
    first, *others = per_source(got)
    assert first == per_source(alone)[0], "the first rank log is sampled as on its own"
    assert all(n < 0.6 * first for n in others), "the other rank logs are sampled thinner"
    assert _unusual(got) == _unusual(every)
    assert _findings(got) == _findings(every)
    for i in ranks:                       # the step of each rank's error is exact
        oom = [e for e in got if e.kind == "oom" and e.source == i.name]
        assert oom and oom[0].step == STEPS
        steps = sorted({e.step for e in got if e.source == i.name and e.kind == "throughput"})
        assert steps[:OTHER_RANKS_KEEP_ALL] == list(range(1, OTHER_RANKS_KEEP_ALL + 1))
