"""Lightning's RichProgressBar (formats/progress.py rich_progress_bar); lines from real runs
(fixtures/excerpts/gen_p_lightning_*.log)."""
from __future__ import annotations

from dsdoctor.sources.logs import events_from_text

BAR = "Epoch 0/-2 ━━━━━━━╸           5/12 0:00:00 • 0:00:01 69.67it/s train_loss: 0.959\n"


def test_the_bar_is_a_progress_point():
    ev = [e for e in events_from_text(BAR) if e.kind == "throughput"]
    assert len(ev) == 1 and ev[0].step == 5 and ev[0].data["series"] == "Epoch 0/-2|12"
    assert abs(ev[0].data["iter_ms"] - 1000 / 69.67) < 0.01 and ev[0].data["elapsed_s"] == 0


def test_the_bar_printed_after_the_fit_loop_stopped_keeps_the_run_ended():
    text = ("`Trainer.fit` stopped: `max_steps=12` reached.\n"
            "Epoch 0/-2 ━━━━━━━━━━━━━━━━━ 12/12 0:00:00 • 0:00:00 56.79it/s train_loss: 1.754\n")
    assert [e.kind for e in events_from_text(text)] == ["run_end", "throughput", "run_end"]


def test_an_unknown_total_and_other_bullets_are_not_progress():
    assert not events_from_text("Epoch 0 ━━━━━━━━━━ 5/-- 0:00:01 • -:--:-- 3.10it/s\n")
    assert not events_from_text("Notes • step 5 • see above\n")
