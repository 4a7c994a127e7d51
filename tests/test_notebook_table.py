"""The HF Trainer's notebook table as users paste it (part AZ): transformers/utils/notebook.py draws
'Step | Training Loss | Validation Loss | <metrics>' (or 'Epoch' first), floats as '{:.6f}', 'No log'
where a row has no value, and the bar '[n/total elapsed < remaining, rate it/s, Epoch e/E]'. A browser
copies the table with tabs, an editor or a terminal turns them into spaces; `cat -n` numbers must still
come off every other line.

Fast: text in, no DeepSpeed needed.
"""
from __future__ import annotations

from diagnose_text import events, top
from dsdoctor.sources.lines import clean


def _table(head: str, rows: list[list[str]]) -> str:
    return head + "\n" + "".join("\t".join(r) + "\n" for r in rows)


def _f6(x: float) -> str:
    return "nan" if x != x else f"{x:.6f}"


def test_tab_rows_are_training_and_validation_losses_at_their_steps():
    text = _table("Step\tTraining Loss\tValidation Loss\tAccuracy",
                  [["500", "No log", "2.104511", "0.410000"], ["1000", "1.911200", "1.804511", "0.450000"]])
    got = [(e.step, e.data["name"], e.data["value"]) for e in events(text, "loss")]
    assert got == [(500, "eval_loss", 2.104511), (1000, "loss", 1.9112), (1000, "eval_loss", 1.804511)]


def test_rows_with_tabs_expanded_to_spaces_are_read_too():
    text = _table("Step\tTraining Loss\tValidation Loss", [["100", "2.287000", "2.195520"], ["12345", "2.1", "No log"]])
    spaced = "".join(ln.expandtabs() + "\n" for ln in text.splitlines())
    assert [(e.step, e.data["name"]) for e in events(spaced, "loss")] == [(100, "loss"), (100, "eval_loss"), (12345, "loss")]


def test_an_epoch_table_counts_epochs_not_steps():
    text = _table("Epoch\tTraining Loss\tValidation Loss\tF1", [["1", "No log", "0.5", "0.8"], ["2", "0.41", "0.39", "0.84"]])
    losses = events(text, "loss")
    assert [e.step for e in losses] == [None] * 3 and [e.data["epoch"] for e in losses] == [1.0, 2.0, 2.0]


def test_no_table_without_its_header_or_after_a_break():
    assert events("500\t2.311200\t2.104511\n1000\tnan\tnan\n", "loss") == []
    text = "Step\tTraining Loss\n10\t2.3\n\nsome prose\n20\tnan\n"
    assert len(events(text, "loss")) == 1
    # a header whose rows hold words is not the Trainer's
    assert events("Step\tTraining Loss\tModel\n10\t2.3\tbase\n", "loss") == []


def test_cat_n_numbers_come_off_but_a_rows_first_column_stays():
    assert clean("     4\t200\t1.900000\t1.800000")[0] == "200\t1.900000\t1.800000"
    assert clean("200\t1.900000\tNo log")[0] == "200\t1.900000\tNo log"
    assert clean("     3\tStep\tTraining Loss")[0] == "Step\tTraining Loss"
    assert clean("12\t[2026-12-01 10:00:01,123] [INFO] hello")[0] == "[INFO] hello"
    assert clean("    12\tnan")[0] == "nan"          # cat -n of a line that is a number alone


def test_cat_n_of_a_table_keeps_its_steps():
    body = _table("Step\tTraining Loss\tValidation Loss",
                  [[str(s), _f6(float("nan") if s >= 600 else 2.0 - s / 1000), "1.5"] for s in range(200, 1001, 200)])
    numbered = "".join(f"{n:6d}\t{ln}\n" for n, ln in enumerate(body.splitlines(), 1))
    f = top(numbered)
    assert f is not None and f.category == "nan_loss" and 600 in f.steps


def test_notebook_bar_is_a_progress_reading():
    (e,) = events(" [1500/3000 12:34 < 12:34, 2.00 it/s, Epoch 1/2]\n", "throughput")
    assert e.step == 1500 and e.data["iter_ms"] == 500.0 and e.data["elapsed_s"] == 754
    assert events("[  5/300 : < :, Epoch 0.02/1]\n", "throughput") == []      # no rate yet


def test_a_nan_table_is_a_nan_loss_and_a_healthy_one_is_healthy():
    nan = float("nan")
    rows = [[str(s), _f6(nan if s >= 1500 else 2.4 - s / 2000), _f6(nan if s >= 1500 else 2.3 - s / 2000)]
            for s in range(250, 3001, 250)]
    f = top(_table("Step\tTraining Loss\tValidation Loss", rows))
    assert f.category == "nan_loss" and f.steps[0] == 1500 and "1500\tnan" in f.evidence[0].text
    healthy = [[str(s), _f6(3.1 * 0.93 ** i)] for i, s in enumerate(range(100, 2001, 100))]
    assert top(" [2000/2000 15:10, Epoch 1/1]\n" + _table("Step\tTraining Loss", healthy)) is None
