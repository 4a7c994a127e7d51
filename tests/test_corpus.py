"""Every bad input kept in tests/corpus/ (events, LR-range, ds_config, Hugging Face config,
rule files, option values) through the real CLI, in-process: it works (exit 0/1) or is a
one-line error with exit 2; never a traceback, never more than TIME_LIMIT_S. Add a file to
the folder of its kind and it is tested (tests/corpus/fuzz/ is replayed by test_fuzz.py)."""
from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path

import pytest

from cli_invoke import invoke_cli    # the app's click command built once

CORPUS = Path(__file__).resolve().parent / "corpus"
TIME_LIMIT_S = 20.0
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of "
       "79.15 GiB of which 1.20 GiB is free. Including non-PyTorch memory, this process has 77.90 GiB memory in "
       "use. Of the allocated memory 75.00 GiB is allocated by PyTorch, and 1.90 GiB is reserved by PyTorch but "
       "unallocated.")


def _cases() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    files = lambda kind: sorted(p for p in (CORPUS / kind).iterdir() if not p.name.startswith("."))  # noqa: E731
    out += [(f"events/{f.name}", ["analyze", str(f)]) for f in files("events")]
    out += [(f"lr/{f.name}", ["lr-range", str(f)]) for f in files("lr")]
    out += [(f"config/{f.name}", ["analyze", "{log}", "--config", str(f)]) for f in files("config")]
    out += [(f"hf/{f.name}", ["estimate", "--params", str(f), "--gpu-memory", "80GiB"]) for f in files("hf")]
    out += [(f"rules/{f.name}", ["analyze", "{log}", "--rules", str(f)]) for f in files("rules")]
    for line in (CORPUS / "options" / "values.txt").read_text().splitlines():
        if line.strip():
            out.append((f"options: {line[:50]}", shlex.split(line.replace("CORPUS", str(CORPUS)))))
    return out


CASES = _cases()


class _Slow(Exception):
    pass


@pytest.mark.parametrize("args", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_corpus_input(tmp_path, args):
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    args = [a.replace("{log}", str(log)) for a in args]

    def on_alarm(*_):
        raise _Slow()
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(TIME_LIMIT_S))
    t0 = time.monotonic()
    try:
        res = invoke_cli(args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert not isinstance(res.exception, _Slow), f"more than {TIME_LIMIT_S} s"
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in (0, 1, 2), res.exit_code
    if res.exit_code == 2:
        err = res.stderr.strip()
        one_line = err.startswith("dsdoctor: error: ") and "\n" not in err
        usage = "Usage:" in err and "Error:" in err           # click's own (main() makes it one line)
        assert one_line or usage, err
    assert time.monotonic() - t0 < TIME_LIMIT_S
