"""scaled_dot_product_attention's reasons for refusing a kernel (sources/formats/sdpa.py) and the cause they give
the 'No available kernel' failure (detect/sdpa_refusal.py). Texts: real CPU runs here (torch 2.13 sdp_utils_cpp.h /
.cpp) and the CUDA wheel's (cuda/sdp_utils.cpp, fixtures/excerpts/lead18_sdpa_no_kernel_torch213.log)."""
from dsdoctor.detect.sdpa_refusal import refusal_facts
from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text

W = "/w/attn.py:16: UserWarning: {} (Triggered internally at /__w/pytorch/pytorch/aten/src/ATen/native/transformers/{})\n"
HEAD = W.format("Flash attention kernel not used because:", "sdp_utils_cpp.cpp:99.")
TRACE = ("Traceback (most recent call last):\n  File \"/w/attn.py\", line 16, in forward\n"
         "    y = F.scaled_dot_product_attention(q, k, v)\nRuntimeError: No available kernel.  Aborting execution.\n")
REASONS = {
    "dtype": "Expected query, key and value to all be of dtype: {Float, Double, BFloat16, Half}. Got Query dtype: "
             "long int, Key dtype: long int, and Value dtype: long int instead.",
    "dropout": "Both fused kernels do not support non-zero dropout.",
    "dims": "All fused kernels requires query, key and value to be 4 dimensional, but got Query dim: 3, Key dim: 3, "
            "Value dim: 3 instead.",
    "head_dim": "Flash attention requires q,k,v to have the same last dimension. Got Query.size(-1): 16, "
                "Key.size(-1): 16, Value.size(-1): 32 instead.",
    "stride": "All fused kernels require the last dimension of the input to have stride 1. Got Query.stride(-1): 8, "
              "Key.stride(-1): 8, Value.stride(-1): 8",
    "gqa": "The number of heads in key/value must divide number of heads in query.Got input Key sizes(): 3, "
           "Value sizes(): 3, Query sizes(): 4 instead.",
    "gpu_arch": "Flash attention only supports gpu architectures in the range [sm80, sm121]. Attempting to run on a "
                "sm 7.5 gpu.",
}


def test_each_reason_is_an_event_with_its_kernel():
    for cause, text in REASONS.items():
        evs = [e for e in events_from_text(HEAD + W.format(text, "sdp_utils_cpp.h:1."), "x.log")
               if e.kind == "sdpa_refusal"]
        assert [(e.data["cause"], e.data["kernel"]) for e in evs] == [(cause, "flash")], cause
        assert evs[0].data["reason"] == text
    arch = next(e for e in events_from_text(W.format(REASONS["gpu_arch"], "cuda/sdp_utils.cpp:604."), "x.log"))
    assert arch.data["sm"] == "7.5"


def test_the_failure_names_the_cause_and_its_rule():
    for cause, rule in [("dropout", "failure-sdpa-inputs-refused"), ("gpu_arch", "failure-sdpa-gpu-too-old")]:
        top = diagnose(events_from_text(HEAD + W.format(REASONS[cause], "x:1.") + TRACE, "x.log"))[0]
        assert top.rule == rule, (cause, top.rule)
    # no reason printed (a cut paste): the generic finding, as before
    assert diagnose(events_from_text(TRACE, "x.log"))[0].rule == "failure-gpu-library-call"


def test_a_gpu_too_old_for_one_kernel_is_not_the_cause_when_another_refused_the_inputs():
    evs = [e for e in events_from_text(
        W.format(REASONS["gpu_arch"], "a:1.") + W.format("Memory efficient kernel not used because:", "a:2.")
        + W.format(REASONS["dropout"], "a:3."), "x.log") if e.kind == "sdpa_refusal"]
    facts = refusal_facts(evs)
    assert (facts["sdpa_cause"], facts["sdpa_sm"]) == ("dropout", "7.5")
    assert facts["sdpa_causes"] == ["dropout", "gpu_arch"]
