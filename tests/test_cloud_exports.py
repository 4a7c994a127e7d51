"""Logs as cloud training services export them: AzureML's per-rank files, CloudWatch / Cloud
Logging lines behind ISO 8601 times, SageMaker's mpirun tags."""
from __future__ import annotations

from dsdoctor.sources.inputs import _rank_hint
from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.ungrep import ungrep_text

OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.00 GiB. GPU 3 has a total capacity of "
       "39.39 GiB of which 1.47 GiB is free.")


def test_azureml_names_each_rank_file_by_its_process():
    assert _rank_hint("std_log_process_2.txt") == 2
    assert _rank_hint("std_log_process_13.txt") == 13
    assert _rank_hint("preprocess_1.log") is None          # a word ending in 'process' is not the rank's
    assert _rank_hint("rank3.log") == 3 and _rank_hint("node2.log") is None
    assert _rank_hint("nproc_8.log") is None and _rank_hint("proc_3.log") == 3   # a limit named nproc is no rank


def test_iso_8601_times_are_not_grep_prefixes():
    # CloudWatch's export: '<ISO time> <message>'; grep -n would be '12:...' / '12-...'
    lines = [f"2026-12-05T10:00:{i:02d}.{i:03d}Z [1,mpirank:11,algo-2]<stderr>:line {i}" for i in range(20)]
    text = "\n".join(lines) + "\n"
    assert ungrep_text(text) == text


def test_a_cloudwatch_line_keeps_its_mpirun_rank():
    text = "\n".join([f"2026-12-05T10:00:0{i}.000Z [1,mpirank:11,algo-2]<stderr>:{ln}" for i, ln in enumerate(
        ["Traceback (most recent call last):", '  File "/opt/ml/code/train.py", line 130, in <module>', "    main()", OOM])]) + "\n"
    exc = [ev for ev in events_from_text(ungrep_text(text)) if ev.kind == "exception"]
    assert exc and exc[-1].rank == 11 and exc[-1].time is not None
