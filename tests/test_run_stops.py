"""`dsdoctor run` stopped from outside: the stop it passes on is the post-mortem's evidence.

Found for real (part AY): `dsdoctor run -- deepspeed ...` under GNU `timeout`, SIGINT sent to that
process group. timeout forwards the signal to its group too, so dsdoctor run got the same SIGINT
twice within milliseconds, took the second for a person's second Ctrl-C, SIGKILLed the training
(exit code 137), and the post-mortem read its own SIGKILL as the host's OOM killer. Now a repeat
within supervise.SAME_STOP_S is the same stop, and the exit event says which signal dsdoctor run
passed on, so a run it stopped is `failure-stopped-from-outside` whatever code it ended with.
Real processes (a Python child that handles SIGINT as a training script's KeyboardInterrupt would),
no DeepSpeed: ~2-4 s each.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from dsdoctor.supervise import exit_text
from dsdoctor_run_child import dsdoctor_run
# a script that prints its progress and, at SIGINT, says so and ends 0.5 s later (a KeyboardInterrupt's
# cleanup); with 'ignore' it ignores SIGINT, as a launcher waiting on its ranks can seem to
CHILD = (
    "import signal, sys, time\n"
    "ignore = sys.argv[1] == 'ignore'\n"
    "def stop(*a):\n"
    "    print('stopping', flush=True); time.sleep(0.5); sys.exit(130)\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN if ignore else stop)\n"
    "for s in range(600):\n"
    "    print(f'step {s} loss 1.0', flush=True); time.sleep(0.1)\n"
)


def _run_and_interrupt(tmp_path: Path, mode: str, gaps: list[float]) -> tuple[int, str]:
    """dsdoctor run of CHILD; once it trains, SIGINT to dsdoctor run after each gap (seconds)."""
    def interrupt(p) -> None:
        for gap in gaps:
            time.sleep(gap)
            os.kill(p.pid, signal.SIGINT)
    return dsdoctor_run(tmp_path, [sys.executable, "-c", CHILD, mode], "step 3 ", interrupt)


@pytest.mark.timeout(90)
def test_the_same_sigint_twice_is_one_stop_and_the_run_ends_its_own_way(tmp_path):
    rc, text = _run_and_interrupt(tmp_path, "handle", [0.0, 0.005])
    assert rc == 130, text                      # the script's own exit code, not our SIGKILL's 137
    assert "stopping" in text
    assert "(failure-stopped-from-outside, other)" in text and "host-oom" not in text
    assert "Traceback" not in text


@pytest.mark.timeout(90)
def test_a_second_ctrl_c_kills_and_is_still_a_stop_from_outside_not_an_oom(tmp_path):
    rc, text = _run_and_interrupt(tmp_path, "ignore", [0.0, 1.5])
    assert rc == 128 + signal.SIGKILL, text
    assert "(failure-stopped-from-outside, other)" in text and "host-oom" not in text
    evidence = (tmp_path / "run" / "events-run.jsonl").read_text()
    assert "after dsdoctor run passed on SIGINT and, at a second one, SIGKILLed the command" in evidence


def test_exit_text_names_the_stop_passed_on():
    assert exit_text(130, ["python", "train.py"], {"signal": 2, "forwarded": 1, "escalated": False}) == (
        "dsdoctor run: `python train.py` exited with code 130 (killed by SIGINT) after dsdoctor run passed on SIGINT")
    assert exit_text(0, ["python", "train.py"]) == "dsdoctor run: `python train.py` exited with code 0"
