"""Part AB: tracebacks of every shape, raised for real by this machine's Python (3.11+) in a subprocess
and read back: the exception line is found whatever its class is called, exception groups' boxes are
read, and a handled exception in a run that goes on stays no failure."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dsdoctor.api import analyze
from dsdoctor.sources.logs import events_from_text


def _run(tmp_path, code: str, name: str = "train.py") -> str:
    """The output of a real Python run of `code` (stdout and stderr, as a user's log holds them)."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    out = subprocess.run([sys.executable, "-u", "-W", "ignore::DeprecationWarning", str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=60, cwd=tmp_path)
    return out.stdout


def _top(tmp_path, text: str):
    log = tmp_path / "run.log"
    log.write_text(text)
    return analyze(log).findings


def _exceptions(text: str) -> list[dict]:
    return [ev.data for ev in events_from_text(text) if ev.kind == "exception"]


PY311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups, notes and markers are Python 3.11's")

STEPS = """
import sys
for step in range(1, 3):
    print(f"step={step} loss={2.0 / step:.3f}", flush=True)
"""


@pytest.mark.parametrize("raise_it, quoted", [
    # a script's own class, named neither ...Error nor ...Exception
    ("class TrainingDiverged(Exception):\n    pass\n\ndef check(loss):\n    raise TrainingDiverged(f'loss {loss} above the limit')\n\ncheck(3e4)\n",
     "TrainingDiverged: loss 30000.0 above the limit"),
    # the standard library's and installed packages' own (zipfile.py _RealGetContents, subprocess.run)
    ("import zipfile\nopen('shard.zip', 'wb').write(b'not a zip' * 4)\nzipfile.ZipFile('shard.zip')\n",
     "zipfile.BadZipFile: File is not a zip file"),
    ("import subprocess\nsubprocess.run(['sleep', '3'], timeout=0.1)\n", "subprocess.TimeoutExpired: Command"),
    ("from packaging.version import Version\nVersion('2.x')\n", "packaging.version.InvalidVersion: Invalid version: '2.x'"),
    # raised with no message: the class alone
    ("class ShardMissing(Exception):\n    pass\n\nraise ShardMissing\n", "ShardMissing"),
])
def test_the_exception_line_after_the_last_frame_whatever_its_name(tmp_path, raise_it, quoted):
    text = _run(tmp_path, STEPS + raise_it)
    assert text.rstrip().splitlines()[-1].startswith(quoted)
    top = _top(tmp_path, text)[0]
    assert top.rule == "unexplained-failure", top.rule
    assert top.evidence[0].text.startswith(quoted)


def test_a_filelock_timeout_of_another_process(tmp_path):
    pytest.importorskip("filelock")
    text = _run(tmp_path, """
        import filelock, subprocess, sys
        holder = subprocess.Popen([sys.executable, "-c", "import filelock, time; l = filelock.FileLock('cache.lock'); "
                                   "l.acquire(); print('held', flush=True); time.sleep(5)"], stdout=subprocess.PIPE)
        holder.stdout.readline()
        try:
            with filelock.FileLock("cache.lock", timeout=0.5):
                pass
        finally:
            holder.kill()
    """)
    assert "._error.Timeout: The file lock" in text or "._errors.Timeout: The file lock" in text   # (by version)
    top = _top(tmp_path, text)[0]
    assert top.evidence[0].text.startswith("filelock.") and ".Timeout: The file lock" in top.evidence[0].text


@PY311
def test_an_exception_line_under_311_markers_and_through_a_chain(tmp_path):
    text = _run(tmp_path, """
        import zipfile
        class ShardUnreadable(Exception):
            pass
        def load(i):
            try:
                return zipfile.ZipFile(open("shard.zip", "wb+"))
            except zipfile.BadZipFile as e:
                raise ShardUnreadable(f"shard {i}") from e
        batches = {"a": [load(i) for i in range(2)]}
    """)
    assert "^^^^" in text and "The above exception was the direct cause" in text
    excs = _exceptions(text)
    assert [e["type"] for e in excs] == ["zipfile.BadZipFile", "ShardUnreadable"]
    assert excs[1]["chained"] == "cause"


@PY311
def test_an_exception_group_quotes_its_first_sub_exception(tmp_path):
    text = _run(tmp_path, """
        import asyncio
        class ShardCorrupt(Exception):
            pass
        async def fetch(i):
            await asyncio.sleep(0.01 * i)
            if i == 1:
                raise ShardCorrupt(f"shard {i}: checksum mismatch")
        async def prefetch():
            async with asyncio.TaskGroup() as tg:
                for i in range(3):
                    tg.create_task(fetch(i))
        asyncio.run(prefetch())
    """)
    assert "| ExceptionGroup: unhandled errors in a TaskGroup" in text
    top = _top(tmp_path, text)[0]
    assert top.rule == "unexplained-failure"
    assert "ShardCorrupt: shard 1: checksum mismatch" in top.evidence[0].text


@PY311
def test_a_nested_group_of_exceptions_never_raised(tmp_path):
    # sub-exceptions the group was built with have no traceback: their lines follow the box's separators
    text = _run(tmp_path, """
        class RankCheckFailed(Exception):
            pass
        raise ExceptionGroup("rank checks failed", [RankCheckFailed("rank 1: weights differ"),
                             ExceptionGroup("io", [OSError(5, "Input/output error"), RankCheckFailed("rank 0")])])
    """)
    excs = _exceptions(text)
    assert [e["type"] for e in excs] == ["ExceptionGroup", "RankCheckFailed", "ExceptionGroup", "OSError", "RankCheckFailed"]
    assert all(e["chained"] == "group" for e in excs[1:])
    assert "RankCheckFailed: rank 1: weights differ" in _top(tmp_path, text)[0].evidence[0].text


def test_a_handled_exception_in_a_run_that_goes_on_is_no_failure(tmp_path):
    text = _run(tmp_path, """
        import logging, zipfile, traceback, warnings
        logging.basicConfig(level=logging.INFO)
        log = logging.getLogger("data")
        class ShardSkipped(Exception):
            pass
        for step in range(1, 6):
            if step == 2:
                try:
                    zipfile.ZipFile(open("shard.zip", "wb+"))
                except zipfile.BadZipFile:
                    log.exception("shard unreadable, skipping it")
                try:
                    raise ShardSkipped("shard 2")
                except ShardSkipped:
                    log.exception("going on without it")
                warnings.warn("slow path taken:\\n" + "".join(traceback.format_stack(limit=3)))
            print(f"step={step} loss={2.0 / step:.3f}", flush=True)
        print("{'train_runtime': 12.5, 'train_samples_per_second': 3.2, 'train_loss': 0.9, 'epoch': 1.0}")
    """)
    assert "zipfile.BadZipFile" in text and "ShardSkipped: shard 2" in text
    assert not [f for f in _top(tmp_path, text) if f.severity == "error"]


def test_a_line_after_a_frame_is_no_exception_unless_it_looks_like_one():
    # another process's line between a frame and its exception line, a print_stack() with no exception
    text = ("Traceback (most recent call last):\n"
            '  File "/w/train.py", line 3, in <module>\n'
            "    main()\n"
            "Loss: 2.31\n")
    assert [e["type"] for e in _exceptions(text)] == ["(traceback without its exception line)"]
    stack = ('  File "/w/train.py", line 3, in <module>\n    main()\n' * 3)
    assert not _exceptions("step=5 loss=2.0\n" * 10 + stack + "ShardStats: 3 files\n")


def test_ctrl_c_while_handling_an_error_leaves_the_error_decisive(tmp_path):
    text = _run(tmp_path, STEPS + """
import os, signal, time
class ShardUnreadable(Exception):
    pass
try:
    raise ShardUnreadable("shard 4 of /data/train")
except ShardUnreadable:
    os.kill(os.getpid(), signal.SIGINT)      # Ctrl-C while the cleanup waits
    time.sleep(5)
""")
    assert "During handling of the above exception" in text and text.rstrip().endswith("KeyboardInterrupt")
    assert "ShardUnreadable: shard 4 of /data/train" in _top(tmp_path, text)[0].evidence[0].text


def test_two_processes_printing_one_exception_line_at_once():
    # CPython's printer writes the name, ': ' and the message apart: two ranks at once interleave them
    text = ("Traceback (most recent call last):\nTraceback (most recent call last):\n"
            '  File "/w/train.py", line 3, in <module>\n  File "/w/train.py", line 3, in <module>\n'
            "        check(loss)check(loss)\n\n"
            "zipfile.BadZipFilezipfile.BadZipFile: : File is not a zip fileFile is not a zip file\n")
    (exc,) = _exceptions(text)
    assert (exc["type"], exc["name"]) == ("zipfile.BadZipFile", "BadZipFile")


def test_a_script_that_does_not_compile_says_where(tmp_path):
    text = _run(tmp_path, 'cfg = {"train_micro_batch_size_per_gpu": 2,\nprint(cfg)\n')
    assert "SyntaxError" in text and "Traceback" not in text
    (exc,) = _exceptions(text)
    assert exc["type"] == "SyntaxError" and exc["raise_site"].endswith("train.py:1")


def test_a_paste_whose_lines_lost_their_indent(tmp_path):
    # the code line is found by its 'raise ' when its indent is gone
    text = _run(tmp_path, STEPS + "class ShardMissing(Exception):\n    pass\n\nraise ShardMissing('shard 7')\n")
    stripped = "\n".join(ln.lstrip() for ln in text.splitlines()) + "\n"
    assert "\nraise ShardMissing('shard 7')\nShardMissing: shard 7" in stripped
    assert _top(tmp_path, stripped)[0].evidence[0].text == "ShardMissing: shard 7"
