"""The loggers users print through (docs/probes.md: Generalisation probes, part AD): a rank a logging format
puts in every record ('[rank 1]'), and rich.logging.RichHandler's word-wrapped records
(sources/rich_log.py). The lines are RichHandler's own rendering of DeepSpeed 0.19's messages
(rich 15.0, Console(width=80) into a file), from the probe's runs."""
from __future__ import annotations

from pathlib import Path

from dsdoctor.sources import lines as L
from dsdoctor.sources.rich_log import join_lines, join_records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "excerpts"

# deepspeed/runtime/fp16/loss_scaler.py's overflow message through RichHandler at 80 columns
_OVERFLOW = [
    "[23:04:47] INFO     [deepspeed] OVERFLOW! Rank 0 Skipping     loss_scaler.py:266",
    "                    step. Attempted loss scale: 16, reducing                    ",
    "                    to 8                                                        ",
    "           INFO     [Rank 0] step=9, skipped=4, lr=[0.001],       logging.py:123",
    "                    mom=[(0.9, 0.999)]                                          ",
]
# deepspeed/runtime/config.py print_user_config: a message with line breaks of its own
_JSON = [
    "           INFO     json = {".ljust(67) + "config.py:664",
    '                      "train_micro_batch_size_per_gpu": 8,'.ljust(80),
    '                      "steps_per_print": 1,'.ljust(80),
    "                    }".ljust(80),
]


def test_rank_in_a_logging_format():
    for raw, rank in (("2026-12-06 22:45:56,643 [rank 1] INFO train: step 5/12 loss=nan", 1),
                      ("[RANK 3] 2026-12-06 22:45:56,643 | INFO     | train:98 - step 5/12", 3),
                      ("2026-12-06 22:45:56,643 [rank: 2] INFO x", 2),
                      ("2026-12-06 22:45:56,643 INFO frank 1] x", None),
                      ("2026-12-06 22:45:56,643 INFO RANKING 1 x", None)):
        assert L.clean(raw)[1] == rank, raw


def test_richhandler_wrapped_record_joined():
    ls = list(_OVERFLOW)
    assert join_lines(ls)
    assert ls[0] == "[23:04:47] INFO     [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 16, reducing to 8"
    assert ls[1] == ls[2] == "" and ls[4] == ""         # line numbers kept: the pieces leave empty lines
    assert ls[3].endswith("lr=[0.001], mom=[(0.9, 0.999)]")


def test_richhandler_message_line_breaks_kept():
    ls = list(_JSON)
    join_lines(ls)
    assert ls[0] == "           INFO     json = {"   # the path column goes, the dump's own lines stay
    assert ls[1:] == _JSON[1:]


def test_not_richhandler_untouched():
    block = b"[2026-12-06 22:45:56,643] [INFO] [logging.py:123:log_dist] [Rank 0] step=5\n    INFO x\n"
    assert join_records(block) is block
    plain = ["2026-12-06 22:45:56,643 - train - INFO - step 5/12 loss=1.17", "    continued"]
    assert not join_lines(plain)


def test_richhandler_log_reads_the_collapse():
    from dsdoctor.cli import main
    import io
    import json
    from contextlib import redirect_stdout
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            main(["analyze", "--json", str(FIXTURES / "gen_ad_rich_fp16_loss_scale_collapse.log")])
        except SystemExit as e:                 # 1: a finding
            assert e.code == 1
    top = json.loads(out.getvalue())["findings"][0]
    assert top["category"] == "loss_scale_collapse" and top["steps"][0] in (4, 5)


def test_mmengine_time_without_a_year():
    # mmengine/logging/logger.py MMFormatter(datefmt='%m/%d %H:%M:%S'), from the probe's run
    text, rank, t, _ = L.clean("12/06 23:11:54 - mmengine - INFO - step 5/12 loss=nan lr=1.000e-03", 2026)
    assert text.startswith("mmengine - INFO - step 5/12") and t == L.utc_seconds("2026-12-06 23:11:54")
    assert L.clean("12/06 23:11:55 - mmengine - INFO - x")[2] - L.clean("12/06 23:11:54 - mmengine - INFO - x")[2] == 1
    assert L.clean("12/06/2026 23:11:54 - INFO - x")[2] == L.utc_seconds("2026-12-06 23:11:54")


def test_structlog_sorted_keys_step_after_loss():
    from dsdoctor.sources.formats.script_steps import script_step
    st = L.StreamState("x", None)
    line = L.Line("[info     ] train_step                     loss=1.3666 lr=0.001 step=4", "x", 1, None, None)
    evs = script_step(line, st)
    assert [(e.kind, e.step, e.data["value"]) for e in evs] == [("loss", 4, 1.3666), ("lr", 4, 0.001)]
    nostep = L.Line("[info     ] eval                     loss=1.3666 lr=0.001 substep=4", "x", 1, None, None)
    assert script_step(nostep, st) is None
    # a variable in a rich traceback's locals panel (structlog's ConsoleRenderer, show_locals) is no step line
    local = L.Line("│ │    msg = 'step 11/30 loss=1.6553 lr=1.000e-03 samples/sec=1683.7'        │ │", "x", 1, None, None)
    assert script_step(local, st) is None
