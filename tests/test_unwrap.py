"""Logs copied out of a terminal, hard-wrapped at the pane's width (sources/unwrap.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.unwrap import rejoin as _rejoin, wrap_width


def rejoin(block: bytes) -> bytes:
    return _rejoin(block, events_from_text)

LOG = """[2026-12-05 10:00:00,100] [INFO] [real_accelerator.py:239:get_accelerator] Setting ds_accelerator to cuda (auto detect)
[2026-12-05 10:00:02,000] [INFO] [logging.py:107:log_dist] [Rank 0] DeepSpeed info: version=0.19.8, git-hash=unknown, git-branch=unknown
[2026-12-05 10:00:10,000] [INFO] [logging.py:107:log_dist] [Rank 0] step=10, skipped=0, lr=[0.0001], mom=[(0.9, 0.999)]
[2026-12-05 10:00:20,000] [INFO] [logging.py:107:log_dist] [Rank 0] step=20, skipped=0, lr=[0.0001], mom=[(0.9, 0.999)]
[rank0]: Traceback (most recent call last):
[rank0]:   File "/work/train.py", line 41, in <module>
[rank0]:     engine.backward(loss)
[rank0]:   File "/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py", line 2243, in backward
[rank0]:     self.optimizer.backward(loss, retain_graph=retain_graph)
[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.07 GiB is free. Including non-PyTorch memory, this process has 78.07 GiB memory in use. Of the allocated memory 74.12 GiB is allocated by PyTorch, and 2.31 GiB is reserved by PyTorch but unallocated.
"""


def wrapped(text: str, width: int) -> str:
    out = []
    for ln in text.splitlines():
        while len(ln) > width:
            out.append(ln[:width])
            ln = ln[width:]
        out.append(ln)
    return "\n".join(out) + "\n"


def test_the_width_is_found_and_the_pieces_are_joined_with_the_line_count_kept():
    w = wrapped(LOG, 80)
    assert wrap_width(w) == 80
    back = rejoin(w.encode()).decode()
    assert back.count("\n") == w.count("\n")
    assert [ln for ln in back.splitlines() if ln] == LOG.splitlines()


def test_an_unwrapped_log_is_left_as_it_is():
    assert wrap_width(LOG) is None
    assert rejoin(LOG.encode()) is not None and rejoin(LOG.encode()) == LOG.encode()
    # rules of one character, the longest lines of torchelastic's error table: not a wrap
    table = "\n".join(["=" * 60, "/work/train.py FAILED", "-" * 60, "Failures:", "  <NO_OTHER_FAILURES>", "-" * 60,
                       "Root Cause (first observed failure):", "=" * 60]) + "\n"
    assert wrap_width(table) is None and rejoin(table.encode()) == table.encode()


def test_a_terminal_copy_of_an_oom_is_diagnosed_as_the_original(tmp_path):
    for name, text in (("orig.log", LOG), ("pane.log", wrapped(LOG, 80)), ("crlf.log", wrapped(LOG, 100).replace("\n", "\r\n"))):
        (tmp_path / name).write_text(text)
        p = subprocess.run([sys.executable, "-m", "dsdoctor", "analyze", "--json", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=120)
        top = json.loads(p.stdout)["findings"][0]
        assert top["category"] == "oom" and top["ranks"] == [0], (name, top)
        # the evidence points at the line where the OOM starts in the file the user has
        oom_line = next(i for i, ln in enumerate(text.splitlines(), 1) if "torch.OutOfMemoryError" in ln)
        assert any(e["line"] == oom_line and "Tried to allocate 2.00 GiB" in e["text"] for e in top["evidence"]), \
            (name, top["evidence"])


def test_records_printed_at_a_fixed_width_are_not_a_wrap():
    # megatron/training.py training_log: ' iteration %8d/%8d | consumed samples: %12d | ...' — every
    # record is as long as the longest
    mg = "".join(f" iteration {s:8d}/  500000 | consumed samples: {s * 256:12d} | elapsed time per iteration (ms): "
                 f"28{s % 9}0.5 | learning rate: 3.000E-04 | lm loss: 2.1{s:04d} |\n" for s in range(1, 200))
    assert wrap_width(mg) is None and rejoin(mg.encode()) == mg.encode()
    assert wrap_width(wrapped(mg, 90)) == 90
    # per-rank timer lines of one length, each starting with its own rank
    timers = "".join(f"[Rank {r}] time (ms) | fwd_microstep: {30 + r}.10 | bwd_microstep: 60.20 | step_microstep: 5.00\n"
                     for r in range(4))
    assert wrap_width(timers) is None and rejoin(timers.encode()) == timers.encode()


def test_a_short_paste_with_one_line_cut_several_times_is_joined():
    # one fp16 overflow line pasted from an 80-column pane: three pieces, two of them full width
    line = ("[2021-06-01 05:04:21,527] [INFO] [stage2.py:1357:step] [deepscale] OVERFLOW! Rank 0 Skipping step. "
            "Attempted loss scale: 0.0, reducing to 0.0")
    text = "1622513061366 localhost info " + line + "\n"
    w = wrapped(text, 80)
    assert w.count("\n") == 3 and wrap_width(w) is None
    assert rejoin(w.encode()).decode().splitlines()[0] == text.rstrip("\n")


def test_a_long_record_split_in_pieces_under_a_wrap_is_joined_even_when_read_the_same():
    # a Megatron record is read across its pieces line by line, but the sampled reading decides on whole
    # lines: the pieces are joined when the spike says the text was wrapped
    rec = (" iteration       10/     100 | consumed samples:           10 | elapsed time per iteration (ms): 2208.9 | "
           "learning rate: 3.000E-04 | global batch size:     1 | lm loss: 1.461212E+01 | loss scale: 1.0 | grad norm: "
           "nan | number of skipped iterations:   0 | number of nan iterations:   0")
    text = "\n".join(["x" * 50 + f" tensor row {i} " + "y" * 40 for i in range(4)] + [rec]) + "\n"
    w = wrapped(text, 80)
    assert wrap_width(w) == 80
    assert rec in rejoin(w.encode()).decode()
