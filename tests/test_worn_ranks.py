"""A prefix every line of a paste wears is not the rank of every detector's finding (detect/worn.py, part AN):
the message's own rank wins over a prefix or a label (sources/lines.py Line.event), and a rank only a prefix the
launcher's own lines wore too gave is dropped from any symptom (pipeline.Diagnoser.findings). Real 2-rank runs
pasted (fixtures/excerpts/gen_an_*)."""
from pathlib import Path

import pytest

from dsdoctor.pipeline import diagnose
from dsdoctor.sources.lines import FROM_MESSAGE, FROM_PREFIX, Line
from dsdoctor.sources.logs import events_from_text

EXCERPTS = Path(__file__).resolve().parent.parent / "fixtures" / "excerpts"


def _findings(name: str) -> dict[str, list[int]]:
    text = (EXCERPTS / name).read_text()
    return {f.rule: f.ranks for f in diagnose(events_from_text(text, name))}


@pytest.mark.parametrize("name", ["gen_an_nan_rank1_real_pasted_rank3.log", "gen_an_nan_rank1_real_srun1.log"])
def test_a_nan_run_pasted_behind_a_prefix_keeps_its_ranks(name):
    # rank 1's own 'rank=1 step=5 loss: nan'; DeepSpeed's '[Rank 0] OVERFLOW!' (log_dist prints on rank 0)
    found = _findings(name)
    assert found["nan-loss"] == [1] and found["bf16-nonfinite-grads"] == [0], found


def test_a_loss_scale_collapse_behind_a_launcher_worn_prefix_names_no_rank():
    # every line wears '[default2]:', torchrun's failure records too: the 2 is no rank (unpasted: no rank either)
    assert _findings("gen_an_fp16_collapse_real_pasted_default2.log")["loss-scale-collapse"] == []


def test_the_prefix_under_the_paste_still_names_the_rank():
    assert _findings("gen_an_gloo_timeout_real_pasted_rank3.log")["comm-timeout"] == [0]
    assert _findings("gen_an_host_oom_rank1_real_tee_srun0.log")["host-oom-allocator"] == [1]


def test_an_event_takes_the_messages_rank_over_a_prefix():
    line = Line("rank=1 step=5 loss: nan", "x.log", 3, 3, None, None, FROM_PREFIX, (FROM_PREFIX, 3, 1))
    ev = line.event("loss", step=5)
    assert (ev.rank, ev.rank_from, ev.worn) == (1, FROM_MESSAGE, (FROM_PREFIX, 3, 1))
    plain = Line("step=5 loss: nan", "x.log", 3, 3, None, None, FROM_PREFIX, (FROM_PREFIX, 3, 1)).event("loss")
    assert (plain.rank, plain.rank_from) == (3, FROM_PREFIX)      # nothing said: the prefix stays
