"""A log inside an issue body (scripts/issue_wrappings.py, the `issue_*` pastes of
scripts/perturb_realworld.py and perturb_fixtures.py): the recognisers of what the wrapping is
(a fence or a 'here is the log:' line opens a pasted block, a line of code is no prose), the
failure detector's reading of a cut-off traceback above an 'EDIT:', the wrap width of a fenced
block, and a sample of golden fixtures wrapped the five ways, judged as perturb_fixtures judges."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from cli_invoke import invoke_cli
from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.unwrap import fenced_widths, rejoin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from issue_wrappings import ISSUE_WRAPPINGS  # noqa: E402
from perturb_fixtures import judge  # noqa: E402


def _kinds(text: str, kind: str):
    return [e for e in events_from_text(text) if e.kind == kind]


def _top(text: str):
    found = [f for f in diagnose(events_from_text(text)) if f.severity in ("critical", "error", "warning")]
    return found[0] if found else None


# ---------------------------------------------------------------- what the wrapping is
def test_a_fence_opens_a_pasted_block_and_the_next_one_closes_it():
    text = "Here it is\n```text\nstep 1 loss 2.0\n```\n\n> ```\n> step 2\n> ```\n"
    assert [e.data["first_line"] for e in _kinds(text, "paste_block")] == [3, 7]
    assert _kinds("a = '```python is how you fence'\n", "paste_block") == []


def test_a_line_that_introduces_a_bare_paste_opens_a_block():
    for intro in ("Here is the log:", "Full output below:", "I get this error:", "**Log:**", "### Full log:", "The output below:"):
        assert [e.data["first_line"] for e in _kinds(f"Hi.\n{intro}\nstep 1\n", "paste_block")] == [3], intro
    for line in ("RuntimeError: CUDA error:", "torch._dynamo.exc.Unsupported: error:",
                 "srun: error: node-1: task 3: Exited with exit code 1 error:", "    print('log:')",
                 "[2024-01-01 10:00:00] ERROR log:", "  File \"x.py\", line 3, in <module> log:"):
        assert _kinds(f"{line}\n", "paste_block") == [], line


def test_the_literals_of_the_paste_recognisers_hide_no_other_recognisers_literal():
    # the scanner keeps one literal per position: 'Error:' hid traceback.py's 'Error' on every
    # exception line ('FileNotFoundError: ...' came out as a traceback without its exception line)
    from dsdoctor.sources.formats import paste
    from dsdoctor.sources.recogniser import declarations
    from dsdoctor.sources.registry import HANDLERS
    # (one-character literals are other recognisers' continuations, looked for only after their own line)
    ours = {t for fn in (paste.paste_fence, paste.paste_intro) for d in declarations(fn) for t in d.triggers}
    clashes = {(t, s) for t in ours for s in HANDLERS
               if s != t and len(s) > 1 and (t.startswith(s) or s.startswith(t))}
    assert not clashes
    tb = 'Traceback (most recent call last):\n  File "a.py", line 7, in train\nFileNotFoundError: [Errno 2] No such file\n'
    assert [e.data["type"] for e in _kinds(tb, "exception")] == ["FileNotFoundError"]


def test_a_line_of_the_pasted_script_is_no_prose():
    # dsdoctor/demo/train.py's own lines, pasted below a log: no hang report, no second attempt
    code = ('print(f"[rank {rank}] hanging with the GIL held before backward at step {step}", flush=True)\n'
            'logger.info("training gets stuck after the first epoch, retrying")\n'
            'msg = "after I changed the batch size I now get"\n')
    assert _kinds(code, "hang_said") == [] and _kinds(code, "rerun") == []
    assert _kinds("It hangs at step 3 every time.\n", "hang_said")           # prose still is
    assert _kinds("After I changed the batch size I now get:\n", "rerun")


def test_a_cut_off_traceback_above_an_edit_belongs_to_the_attempt_above_it():
    # the traceback printed after the OOM has no exception line; the EDIT that follows the log is
    # prose about a later try with no failure of its own: the OOM stays the answer
    log = ("Traceback (most recent call last):\n"
           '  File "train.py", line 40, in <module>\n'
           "    engine.step()\n"
           "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
           "of 79.15 GiB of which 1.02 GiB is free.\n"
           "Traceback (most recent call last):\n"
           '  File "train.py", line 40, in <module>\n')
    body = f"It fails:\n```\n{log}```\n\nEDIT: I also tried zero3 with a smaller batch: same result.\n"
    assert _top(body).category == "oom"
    # a real second attempt below the prose still decides
    second = body + "```\nValueError: Duplicate keys in DeepSpeed config: ['zero_optimization']\n```\n"
    assert _top(second).category != "oom"


def test_a_timeout_burst_at_the_start_of_a_fenced_block_is_no_silent_rank():
    burst = "".join(
        f"{r}: [E1205 10:41:{10 + r}.920951719 ProcessGroupNCCL.cpp:632] [PG ID 0 PG GUID 0(default_pg) Rank {r}] "
        "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=4410, OpType=_ALLGATHER_BASE, "
        "NumelIn=262144000, NumelOut=262144000, Timeout(ms)=1800000) ran for 1800082 milliseconds before timing out.\n"
        for r in range(2, 8))
    for body in (burst, f"**Describe the bug**\nIt stops.\n\n```\n{burst}```\n", f"It stops. Here is the log:\n\n{burst}"):
        assert _top(body).rule == "comm-timeout-all-stuck"
    # far from any block's start the missing ranks are still named
    assert _top("step 1\n" * 8 + burst).rule == "comm-timeout-silent-rank"


def test_a_headless_traceback_at_the_start_of_a_fenced_block_is_read():
    frames = ('  File "/venv/lib/python3.10/site-packages/deepspeed/runtime/engine.py", line 2100, in step\n'
              "    self._take_model_step(lr_kwargs)\n")
    assert _top("Hi, it crashed.\n" * 7 + f"```\n{frames}```\n").category == "other"
    assert _top("Hi, it crashed.\n" * 7 + frames) is None         # a stack printed mid-log is no failure


def test_a_fenced_blocks_cut_line_is_joined_inside_an_issue_body():
    line = ("AssertionError: Check batch related parameters. train_batch_size is not equal to "
            "micro_batch_per_gpu * gradient_acc_step * world_size 16 != 2 * 4 * 4")
    log = "Traceback (most recent call last):\n" \
          '  File "/venv/lib/python3.10/site-packages/deepspeed/runtime/config.py", line 900, in _batch_assertion\n' \
          f"{line[:120]}\n{line[120:]}\n"
    body = ISSUE_WRAPPINGS["issue_hf"](log)
    assert (120, False) in fenced_widths(body)
    joined = rejoin(body.encode(), events_from_text).decode()
    assert line in joined.splitlines() and joined.count("\n") == body.count("\n")
    assert fenced_widths("no fence here\n" * 20) == []


# ---------------------------------------------------------------- the five wrappings on a sample
# fixtures that each wrapping once broke (the prose, the code, an EDIT after a cut-off traceback, a
# timeout burst at a block's start, a cut line) and a few plain ones; ~60 analyses, ~20 s
SAMPLE = ("healthy.log", "nan.log", "rank_killed.log", "excerpts/gen_d_cs_srun_label_last30.log",
          "excerpts/gen_a_oom_truncated_mid_message_mpi.log", "excerpts/gen_i_gcp_logging_json_host_oom.log",
          "excerpts/gen_v_lr_warmup_longer_than_run_python.log", "excerpts/gen_e_cfg_wrapped_batch_assert.log",
          "excerpts/gen_b_torchrun_socket_noise_healthy.log", "excerpts/lead11_rdzv_connect_timed_out.log",
          "excerpts/gen_f_multirun_ecc_then_excluded_healthy.log", "excerpts/gen_p_tmux_capture_pane_host_oom.log")
EXPECTED = {e["file"]: e for e in yaml.safe_load((REPO / "fixtures" / "expected.yaml").read_text(encoding="utf-8"))}


@pytest.mark.parametrize("name", SAMPLE)
def test_a_fixture_inside_an_issue_body(name, tmp_path):
    exp = EXPECTED[name]
    text = (REPO / "fixtures" / name).read_text(encoding="utf-8", errors="replace")
    for how, wrap in ISSUE_WRAPPINGS.items():
        path = tmp_path / f"{how}.log"
        path.write_text(wrap(text), encoding="utf-8")
        res = invoke_cli(["analyze", "--json", str(path)])
        doc = json.loads(res.stdout)
        assert judge(exp, res.exit_code, doc) == "", (how, doc["findings"][:1])
        if "evidence" in exp:
            assert exp["evidence"].lower() in " ".join(e["text"] or "" for e in doc["findings"][0]["evidence"]).lower(), how
