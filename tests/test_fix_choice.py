"""The one rule by which `doctor --fix` and `analyze --write-config` apply fixes
(fixes.chosen_patches), and the doctor's application layer (checkup.check_config)."""
from dsdoctor.findings import Finding, Fix
from dsdoctor.fixes import chosen_patches, fixed_config


def _finding(rule, *patches, consequence_of=None):
    return Finding(rule=rule, category="config_error", severity="error", title=rule, summary="",
                   fixes=[Fix(title="t", config_patch=p) for p in patches], consequence_of=consequence_of)


def test_first_fix_of_every_root_cause_in_order_and_conflicts_left_out():
    a = _finding("a", {"zero_optimization": {"stage": 3}}, {"zero_optimization": {"stage": 2}})
    b = _finding("b", {"bf16": {"enabled": True}})
    c = _finding("c", {"zero_optimization": {"stage": 1}})            # conflicts with a: left out
    d = _finding("d", {"zero_optimization": {"stage": 3, "overlap_comm": True}})  # agrees with a
    e = _finding("e", {"comms_logger": {"enabled": True}}, consequence_of="a")
    got = chosen_patches([a, b, c, d, e])
    assert got == [{"zero_optimization": {"stage": 3}}, {"bf16": {"enabled": True}},
                   {"zero_optimization": {"stage": 3, "overlap_comm": True}}]
    assert chosen_patches([a, b, c, d, e], skip=b) == [got[0], got[2]]
    cfg = {"zero_optimization": {"stage": 0}}
    assert fixed_config(cfg, [a, b, c, d, e]) == {"zero_optimization": {"stage": 3, "overlap_comm": True},
                                                  "bf16": {"enabled": True}}
    assert cfg == {"zero_optimization": {"stage": 0}}


def test_check_config_goes_through_the_pipeline():
    import dsdoctor.api as api
    cfg = {"train_batch_size": 7, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
           "fp16": {"enabled": True}, "bf16": {"enabled": True}}
    facts = {"python": "3.11", "gpu_count": 0, "cpu_count": 2}
    checkup = api.check_config(cfg, world_size=2, facts=facts)
    rules = [f.rule for f in checkup.findings]
    assert "cfg-batch-mismatch" in rules and "cfg-fp16-and-bf16" in rules and checkup.world_size == 2
    assert checkup.extra["deepspeed_validation"]["accepted"] is False
