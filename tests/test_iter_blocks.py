"""iter_blocks on a plain file: blocks end at a line end (the end of each block is peeked at
before it is read), they join back to the file, and the events are those of an unaligned read
(a pipe), also with lines longer than the peek at a block's end."""
from __future__ import annotations

import io
import random

from dsdoctor.sources import inputs
from dsdoctor.sources.inputs import Input, iter_blocks
from dsdoctor.sources.logs import read_log


def _log(rnd: random.Random) -> bytes:
    out = []
    for step in range(1, 4000):
        out.append(f"[Rank 0] step={step}, skipped=0, lr=[0.0003], mom=[(0.9, 0.95)]")
        if rnd.random() < 0.01:          # lines longer than the peek, anywhere
            out.append("x" * rnd.randint(inputs.PEEK, 3 * inputs.PEEK))
        if rnd.random() < 0.01:
            out.append("[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768")
        if step % 700 == 0:
            out.append("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.82 GiB.")
    return ("\n".join(out) + "\nno newline at the end").encode()


def test_blocks_end_at_line_ends_and_join_to_the_file(tmp_path):
    data = _log(random.Random(7))
    p = tmp_path / "rank0.log"
    p.write_bytes(data)
    size = 3 * inputs.PEEK + 1234
    with open(p, "rb") as fh:
        blocks = list(iter_blocks(fh, size))
    assert b"".join(blocks) == data
    assert len(blocks) > 10
    # every block but the last ends at a line end, unless no line ends in its last PEEK bytes
    for b in blocks[:-1]:
        assert b.endswith(b"\n") or (len(b) == size and b"\n" not in b[-inputs.PEEK:])


def test_events_are_those_of_an_unaligned_read(tmp_path):
    data = _log(random.Random(11))
    p = tmp_path / "rank0.log"
    p.write_bytes(data)
    size = 2 * inputs.PEEK + 777
    aligned = list(read_log(Input(p.name, p, "log", 0), sample=False, block_size=size))
    piped = Input(p.name, None, "log", 0)
    piped.open = lambda: io.BufferedReader(io.BytesIO(data))         # not a file: no peek
    unaligned = list(read_log(piped, sample=False, block_size=size))
    key = lambda evs: [(e.kind, e.step, e.line, e.text) for e in evs]  # noqa: E731
    assert key(aligned) == key(unaligned)
    assert any(e.kind == "oom" for e in aligned) and any(e.kind == "overflow" for e in aligned)
