"""torch.compile failing: the toolchain missing (the machine) vs the model not traceable (the code).

The golden fixtures lead12_compile_*.log are real captures (torch 2.13 here); these check the
families the failure detector gives their exceptions, and that an error merely raised from
compiled code keeps its own family.
"""
from dsdoctor.detect.families import classify

_INDUCTOR = "/venv/lib/python3.11/site-packages/torch/_inductor/cpp_builder.py:cpp_compiler_search"
_DYNAMO = "/venv/lib/python3.11/site-packages/torch/_dynamo/eval_frame.py:compile_wrapper"


def test_no_cxx_compiler_for_inductor_is_the_machine():
    fam = classify("torch._inductor.exc.InductorError",
                   "InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx: ('g++',)",
                   _INDUCTOR)
    assert (fam.name, fam.category) == ("compile_toolchain", "environment")


def test_triton_missing_is_the_machine():
    fam = classify("torch._dynamo.exc.BackendCompilerFailed",
                   "backend='inductor' raised:\nRuntimeError: Cannot find a working triton installation.", _DYNAMO)
    assert fam.name == "compile_toolchain"


def test_dynamo_refusing_the_code_is_the_compile_family():
    fam = classify("torch._dynamo.exc.UserError",
                   "Could not guard on data-dependent expression u0 > 0 (unhinted: u0 > 0).", _DYNAMO)
    assert (fam.name, fam.category) == ("compile", "config_error")
    assert classify("torch._dynamo.exc.BackendCompilerFailed", "backend='inductor' raised:", None).name == "compile"


def test_an_oom_raised_from_compiled_code_stays_an_oom():
    fam = classify("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB", _INDUCTOR)
    assert fam.category == "oom"


def test_a_user_error_outside_dynamo_is_not_compile():
    assert classify("UserError", "bad input", "/home/u/train.py:main").name != "compile"


def test_recompile_limit_is_read_from_its_three_lines():
    from dsdoctor.sources.formats.torch_compile import (recompile_limit_function, recompile_limit_hit,
                                                         recompile_limit_reason)
    from dsdoctor.sources.lines import Line, StreamState
    st = StreamState("x.log", None)
    head = "W1206 11:05:23.060000 22731 torch/_dynamo/convert_frame.py:1994] [0/8] "
    assert recompile_limit_hit(Line(head + "torch._dynamo hit config.cache_size_limit (8)", "x.log", 10, 0, None), st) is None
    recompile_limit_function(Line(head + "   function: 'forward' (/m.py:60)", "x.log", 11, 0, None), st)
    ev = recompile_limit_reason(Line(head + "   last reason: 0/7: tensor 'x' size mismatch at index 1. expected 23, "
                                     "actual 24", "x.log", 12, 0, None), st)
    assert ev.kind == "env_error" and ev.data["error"] == "recompile_limit"
    assert (ev.data["limit_type"], ev.data["limit"], ev.data["function"]) == ("cache_size_limit", 8, "'forward' (/m.py:60)")
    # a 'last reason' line with no limit line before it (TORCH_LOGS=recompiles prints reasons) is not the limit
    assert recompile_limit_reason(Line(head + "   last reason: 0/1: x", "x.log", 40, 0, None), st) is None
