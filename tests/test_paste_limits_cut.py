"""The paste limits left after part Z (gen-ak): cut pastes (a tail, the head gone) that came out wrong,
one test per mend. Wordings from real runs here (fixtures/excerpts/gen_ak_*) and the libraries' sources
named at each test."""
from __future__ import annotations

import sys
from pathlib import Path

from dsdoctor.api import analyze
from dsdoctor.detect.throughput import find_drop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from perturb_realworld import PERTURBATIONS  # noqa: E402  (the cuts perturb_fixtures.py pastes)


def _problems(path: Path) -> list:
    return [f for f in analyze(path).findings if f.severity != "info"]


def test_a_short_noisy_rate_series_is_no_drop_and_a_clean_step_still_is():
    # CurrSamplesPerSec of a real 1-rank CPU run here (deepspeed/utils/timer.py ThroughputTimer.stop) with
    # three host hiccups, pasted from its last lines (fewer than ten readings: the short-series tests): the
    # noise goes both ways, no reading stays down
    rates = [114.35, 185.18, 148.99, 161.93, 160.11, 129.37, 205.73, 195.48, 186.76, 47.56, 228.72, 129.46, 58.65, 72.05]
    for k in range(5, 10):
        assert find_drop(rates[-k:], True) is None, k
    # the structlog paste of gen-ad's healthy run (one low reading among the first three)
    assert find_drop([2431.62, 781.57, 2281.65, 798.51, 1071.85], True) is None
    # BLOOM-176B's slow GPU: 3 readings, then 2 lower ones that stay (detect/throughput.py docstring)
    assert find_drop([149.0, 149.5, 148.8, 141.0, 141.2], True) is not None


def test_a_stack_printed_without_an_exception_then_steps_is_not_a_failure(tmp_path):
    # traceback.print_stack() (frames, no 'Traceback' head, no exception line), then six more steps and the
    # DeepSpeed launcher's 'exits successfully': the run went on (a cut-off traceback is fed at its input's
    # end, but the steps printed below its frames count against it)
    assert not _problems(REPO / "fixtures/excerpts/gen_ak_healthy_print_stack_then_steps_tail12.log")
    # frames cut off at the end of a log (nothing after them) still say the run failed
    text = (REPO / "fixtures/excerpts/gen_ak_healthy_print_stack_then_steps_tail12.log").read_text().splitlines()
    log = tmp_path / "cut.log"
    log.write_text("step=9 loss=0.0091\nstep=10 loss=0.0539\n" + "\n".join(text[:3]) + "\n")
    assert [f.rule for f in _problems(log)] == ["failure-cut-off-traceback"]


def test_pybind11s_invoked_with_line_names_an_auto_argument_with_the_refusal_cut(tmp_path):
    # pybind11 cpp_function::dispatcher: '... incompatible function arguments. ...' then 'Invoked with: ...';
    # the last 15 lines of gen-d's real run keep the call (with 'auto' for lr) but not the refusal's first line
    text = (REPO / "fixtures/excerpts/gen_d_real_auto_optimizer_lr.log").read_text(encoding="utf-8")
    log = tmp_path / "tail15.log"
    log.write_text(PERTURBATIONS["tail15"](text), encoding="utf-8")
    assert "incompatible function arguments" not in log.read_text()
    top = _problems(log)[0]
    assert top.rule == "log-cfg-auto-left"


def test_a_headless_pydantic_report_puts_a_misspelt_extra_key_in_its_section():
    # deepspeed 0.19.8 + pydantic 2, run here: 'zero_quantized_gradient' (for zero_quantized_gradients) under a
    # cut header: the key is zero_optimization's, so the fix removes it there, not at the top level
    fs = _problems(REPO / "fixtures/excerpts/gen_ak_cfg_pydantic2_report_head_cut_misspelt_keys.log")
    named = [f for f in fs if "zero_quantized_gradient" in f.summary]
    assert named and named[0].key == "zero_optimization.zero_quantized_gradient"
    # pydantic 1's own wording (pydantic/v1 error_wrappers.py display_errors), its header cut: still a config error
    fs = _problems(REPO / "fixtures/excerpts/gen_ak_cfg_pydantic1_report_head_cut.log")
    assert fs and fs[0].category == "config_error"


def test_a_megatron_record_piece_whose_head_was_cut_still_shows_its_nan_grad_norm():
    # megatron/training/training.py training_log, broken at its bars (an issue paste), the paste beginning
    # at the piece with 'grad norm: nan' (its 'iteration N/M |' head cut off)
    top = _problems(REPO / "fixtures/excerpts/gen_ak_meg_record_pieces_head_cut_grad_norm_nan.log")[0]
    assert top.category == "nan_loss" and "grad norm: nan" in top.evidence[0].text
    # a record's last piece ('number of nan iterations: 0 |') holds the head's own literal: the next
    # record's head below it is read as that record's start, its nan grad norm with it
    top = _problems(REPO / "fixtures/excerpts/gen_ak_meg_record_last_piece_then_nan_records.log")[0]
    assert top.category == "nan_loss" and 7 in top.steps
