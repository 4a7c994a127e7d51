"""Logs as container runtimes store them (sources/container_logs.py, sources/lines.py)."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

from dsdoctor.sources import container_logs
from dsdoctor.sources.lines import clean

PRINTED = ['[2026-12-05 10:00:10,000] [INFO] [logging.py:107:log_dist] [Rank 0] step=10, skipped=0, lr=[0.0001]',
           '[rank0]: Traceback (most recent call last):',
           '[rank0]:   File "/work/train.py", line 41, in <module>',
           '[rank0]:     engine.backward(loss)',
           '[rank0]:   File "/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py", line 2243, in backward',
           '[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total '
           'capacity of 79.15 GiB of which 1.07 GiB is free.']


def docker(lines) -> str:
    # moby daemon/logger/jsonfilelog: one JSON object per line
    return "".join(json.dumps({"log": ln + "\n", "stream": "stderr", "time": f"2026-12-05T10:00:{i:02d}.123456789Z"},
                              separators=(",", ":")) + "\n" for i, ln in enumerate(lines))


def test_docker_json_lines_decode_to_the_printed_lines_behind_their_time():
    raw = docker(PRINTED).encode()
    assert container_logs.is_docker_json(raw)
    got = container_logs.decode(raw).decode().splitlines()
    assert [clean(ln)[0] for ln in got][1:] == [clean(ln)[0] for ln in PRINTED][1:]
    assert clean(got[2])[2] is not None                   # the json-file time is the line's time
    # blocks cut anywhere decode to the same lines
    for cut in (1, 17, 100, len(raw) // 2):
        pieces = b"".join(container_logs.decode_blocks([raw[:cut], raw[cut:]]))
        assert pieces == container_logs.decode(raw)


def test_a_cut_object_stays_as_it_is():
    raw = (docker(PRINTED[:2]) + '{"log":"[rank0]: torch.OutOf').encode()
    assert container_logs.decode(raw).decode().splitlines()[-1] == '{"log":"[rank0]: torch.OutOf'


def test_containerd_cri_head_is_stripped():
    text, rank, t, _ = clean("2026-12-05T10:00:01.123456789Z stderr F [rank1]: torch.OutOfMemoryError: CUDA out of memory.")
    assert text.startswith("torch.OutOfMemoryError") and rank == 1 and t is not None


def test_a_gzipped_docker_log_is_diagnosed_like_the_printed_one(tmp_path):
    p = tmp_path / "0123abcd-json.log.gz"
    p.write_bytes(gzip.compress(docker(PRINTED).encode()))
    out = subprocess.run([sys.executable, "-m", "dsdoctor", "analyze", "--json", str(p)], capture_output=True,
                         text=True, timeout=120)
    top = json.loads(out.stdout)["findings"][0]
    assert top["category"] == "oom" and top["ranks"] == [0], top
    assert any(e["line"] == 6 and "Tried to allocate 2.00 GiB" in e["text"] for e in top["evidence"]), top["evidence"]
