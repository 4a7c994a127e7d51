"""The block scanner: hyperscan and `re` find the same lines, wherever blocks are cut;
giant lines cost no memory and keep their evidence."""
from __future__ import annotations

import random

import pytest

import dsdoctor.sources.scanner as scanner
from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.scanner import MAX_LINE, Matcher, candidate_lines, matcher

PARTS = [b"Traceback (most recent call last)", b'  File "x.py", line 3, in forward', b"CUDA error: bad",
         b"noise noise", b"DefaultCPUAllocator: can't allocate memory", b"\r", b"\xff\xfe",
         b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"]


def _lines(data: bytes, cut: int, use_hs: bool):
    m = matcher()
    alt = Matcher(m.literals)
    if not use_hs:
        alt.hs = None
    saved, scanner._matcher = scanner._matcher, alt
    try:
        return list(candidate_lines([data[:cut], data[cut:]]))
    finally:
        scanner._matcher = saved


def test_matchers_agree_at_any_block_cut():
    rnd = random.Random(7)
    for _ in range(100):
        data = b"".join(rnd.choice(PARTS) + rnd.choice([b"", b"\n", b" "]) for _ in range(40))
        cut = rnd.randrange(len(data))
        expected = _lines(data, 0, use_hs=False)
        assert _lines(data, cut, use_hs=False) == expected
        if matcher().hs is not None:
            assert _lines(data, cut, use_hs=True) == expected


def test_giant_line_keeps_the_error_at_its_end():
    bar = b"\r 45%|####      | 450/1000 " * (3 * 1024 * 1024 // 26)     # ~3 MB, no newline
    oom = b"\rtorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8.00 GiB of which 1.00 MiB is free.\n"
    data = b"first line\n" + bar + oom + b"after\n"
    blocks = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    got = list(candidate_lines(blocks))
    assert len(got) == 1 and got[0][0] == 2
    assert b"CUDA out of memory" in got[0][1] and len(got[0][1]) <= MAX_LINE


@pytest.mark.parametrize("prefix", ["[rank3]:", "[default3]:", "3: ", "node-17: [rank3]:", "(RayTrainWorker pid=77, ip=10.0.0.2) [rank3]:",
                                    "\x1b[31m[rank3]:", "[rank3]:[2024-05-01 10:00:00,123] "])
def test_decorations_are_stripped_and_rank_read(prefix):
    evs = events_from_text(f"{prefix}torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
                           "GPU 3 has a total capacity of 79.15 GiB of which 1.00 GiB is free.\n")
    assert [e.kind for e in evs if e.kind != "exception"] == ["oom"]      # + the generic exception event
    assert evs[0].rank == 3
    assert evs[0].data["requested"] == 2 << 30


WRAPPED = (
    "[default7]: iteration   42783/ 115311 | consumed samples:    71461808 | elapsed time per iteration (s): 110.17 | learning\n"
    " rate: 4.475E-05 | global batch size: 2048 | lm loss: 2.124820E+00 | grad norm: 0.135 | num zeros: 0.0 | number of skipped iterations:  0 | number of nan\n"
    "iterations:  0 | samples per second: 18.589 | TFLOPs: 142.32 |\n"
    "unrelated line\n"
)


def test_wrapped_record_is_joined_wherever_the_block_is_cut():
    """Continuation pieces (a Megatron line wrapped over three physical lines) are looked for
    only right after their record's first line, also across a block boundary."""
    from dsdoctor.sources.inputs import Input
    from dsdoctor.sources.logs import read_log
    import io

    data = WRAPPED.encode()

    def events(cut: int):
        inp = Input("wrapped.log", None, "log", None)
        blocks = [data[:cut], data[cut:]] if cut else [data]
        inp.open = lambda: io.BytesIO(b"".join(blocks))    # noqa: E731
        import dsdoctor.sources.inputs as inputs_mod
        saved = inputs_mod.iter_blocks
        inputs_mod.iter_blocks = lambda fh, size=0: iter(blocks)
        import dsdoctor.sources.logs as logs_mod
        saved_l = logs_mod.iter_blocks
        logs_mod.iter_blocks = inputs_mod.iter_blocks
        try:
            return [(e.kind, e.step, sorted(e.data.items(), key=str)) for e in read_log(inp)]
        finally:
            inputs_mod.iter_blocks = saved
            logs_mod.iter_blocks = saved_l

    whole = events(0)
    assert any(k == "loss" and s == 42783 for k, s, _ in whole)
    assert any(k == "throughput" for k, _, _ in whole)
    for cut in range(1, len(data)):
        assert events(cut) == whole, cut
