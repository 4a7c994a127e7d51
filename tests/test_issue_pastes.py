"""Logs pasted into an issue body: grep -n excerpts (sources/ungrep.py), two attempts in one paste
(sources/formats/paste.py, pipeline.last_attempt_first, detect/failure.py), a pydantic report
without its header and a C++ CapturedTraceback without its 'Exception raised from' head
(sources/formats/deepspeed.py, traceback.py), one line cut in two (sources/unwrap.py)."""
from __future__ import annotations

from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.ungrep import ungrep_text
from dsdoctor.sources.unwrap import one_cut_line_width, rejoin, wrap_width


def _top(text: str):
    found = [f for f in diagnose(events_from_text(text)) if f.severity in ("critical", "error", "warning")]
    return found[0] if found else None


# ---------------------------------------------------------------- grep -n
GREP = """Here is the grep (`grep -n -B3 -A1 Error train.log`):
1042-Traceback (most recent call last):
1043-  File "/workspace/train.py", line 98, in <module>
1044-    model_engine, optimizer, _, _ = deepspeed.initialize(args=args, model=model)
1045-  File "/venv/lib/python3.10/site-packages/deepspeed/runtime/config_utils.py", line 211, in dict_raise_error_on_duplicate_keys
1046-    raise ValueError("Duplicate keys in DeepSpeed config: {}".format(keys))
1047:ValueError: Duplicate keys in DeepSpeed config: ['zero_optimization']
--
1090:[2024-07-02 10:13:21,410] [ERROR] [launch.py:325:sigkill_handler] ['python', '-u', 'train.py'] exits with return code = 1
"""


def test_grep_prefixes_are_taken_off_and_the_line_count_kept():
    out = ungrep_text(GREP)
    assert out.count("\n") == GREP.count("\n")
    lines = out.splitlines()
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[6] == "ValueError: Duplicate keys in DeepSpeed config: ['zero_optimization']"
    assert lines[7] == ""                     # grep's group separator
    top = _top(ungrep_text(GREP))
    assert top.category == "config_error" and top.evidence[0].text.startswith("ValueError: Duplicate keys")


def test_grep_with_file_names_and_srun_labels_behind_them():
    text = ("run1.log:57:Traceback (most recent call last):\n"
            'run1.log-58-  File "/workspace/train.py", line 640, in <module>\n'
            "4414:3: ValueError: something\n"
            "4415-3: - ds gradient_accumulation_steps=4 vs hf gradient_accumulation_steps=8\n")
    out = ungrep_text(text).splitlines()
    assert out[0] == "Traceback (most recent call last):"
    assert out[1].startswith('  File "/workspace/train.py"')
    assert out[2] == "3: ValueError: something"          # srun --label's rank stays
    quoted = ungrep_text("".join(f"> {ln}\n" for ln in text.splitlines())).splitlines()
    assert quoted[0] == "> Traceback (most recent call last):"


def test_logs_that_only_look_like_grep_output_are_left_alone():
    srun = "0: [2024-07-02 10:00:00,001] [INFO] step=1\n1: [2024-07-02 10:00:00,002] [INFO] step=1\n2: hello\n3: bye\n"
    timed = "10:13:10 | INFO | step 1\n10:13:11 | INFO | step 2\n10:13:12 | ERROR | boom\n"
    dated = "2024-07-02 10:13:10 INFO step 1\n2024-07-02 10:13:11 INFO step 2\n"
    for text in (srun, timed, dated, "12:[INFO] only one grep-shaped line\n"):
        assert ungrep_text(text) == text


# ---------------------------------------------------------------- two attempts in one paste
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB "
       "of which 1.12 GiB is free. Including non-PyTorch memory, this process has 78.02 GiB memory in use. Of the allocated "
       "memory 74.60 GiB is allocated by PyTorch, and 2.88 GiB is reserved by PyTorch but unallocated.")
BUSY = ["Traceback (most recent call last):", '  File "train.py", line 77, in <module>', "    model.to(device)",
        "RuntimeError: CUDA error: CUDA-capable device(s) is/are busy or unavailable"]


def test_the_last_attempt_of_a_paste_is_diagnosed_first():
    text = "\n".join(["first attempt:", "```", OOM, "```", "", "Attempt 2 (batch size 1):", "```", *BUSY, "```"])
    top = _top(text)
    assert top.category == "environment" and "busy or unavailable" in top.evidence[0].text
    # the same two failures with no prose between them: one run, the first failure is the cause
    assert _top("\n".join([OOM, *BUSY])).category == "oom"


def test_other_wordings_of_a_later_attempt():
    for prose in ("EDIT: setting the micro batch to 1 gives a different error:", "修改之后：", "Now:"):
        text = "\n".join(["```", OOM, "```", prose, "```", *BUSY, "```"])
        assert _top(text).category == "environment", prose


def test_prose_before_every_failure_or_after_the_last_changes_nothing():
    before = "\n".join(["After I changed the batch size I now get:", OOM, *BUSY])
    after = "\n".join([OOM, *BUSY, "", "After I set offload_optimizer to cpu it works now."])
    assert _top(before).category == "oom" and _top(after).category == "oom"
    events = events_from_text("\n".join(["[2024-07-02 10:00:00,001] [INFO] after setting up the model, now I get 3 ranks"]))
    assert not [e for e in events if e.kind == "rerun"]      # a log line, not prose


# ---------------------------------------------------------------- headless reports
def test_a_pydantic_report_without_its_header():
    text = ("offload_param.pin_memroy\n"
            "  Extra inputs are not permitted [type=extra_forbidden, input_value=True, input_type=bool]\n"
            "    For further information visit https://errors.pydantic.dev/2.6/v/extra_forbidden\n")
    ev = [e for e in events_from_text(text) if e.kind == "config_error"]
    assert len(ev) == 1 and ev[0].data["key"] == "zero_optimization.offload_param.pin_memroy"
    assert ev[0].data["real_key"] == "zero_optimization.offload_param.pin_memory"
    top = _top(text)
    assert top.category == "config_error" and top.fixes[0].config_patch == {
        "zero_optimization": {"offload_param": {"pin_memroy": None, "pin_memory": True}}}


def test_a_model_validator_error_has_no_field_line_and_gets_its_own_advice():
    text = ("pydantic_core._pydantic_core.ValidationError: 1 validation error for DeepSpeedZeroConfig\n"
            "  Value error, compute_grad_norm=false is supported only with ZeRO Stage 1 or 2 [type=value_error, "
            "input_value=DeepSpeedZeroConfig(stage...s=[], name_suffixes=[])), input_type=DeepSpeedZeroConfig]\n")
    top = _top(text)
    assert top.rule == "log-cfg-compute-grad-norm-stage"
    assert top.fixes[0].config_patch == {"zero_optimization": {"compute_grad_norm": None}}


# torch 2.13 with TORCH_SHOW_CPP_STACKTRACES=1 (provoked here: a shape mismatch in torch.mm)
CAPTURED = """Traceback (most recent call last):
  File "<string>", line 3, in <module>
RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)
Exception raised from meta at /__w/pytorch/pytorch/aten/src/ATen/native/LinearAlgebra.cpp:204 (most recent call first):
C++ CapturedTraceback:
#4 std::_Function_handler<std::shared_ptr<c10::LazyValue<std::string> const> (), c10::SetStackTraceFetcher(std::function<std::string ()>)::{lambda()#1}>::_M_invoke(std::_Any_data const&) from Logging.cpp:0
#5 c10::Error::Error(c10::SourceLocation, std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >) from ??:0
#6 c10::detail::torchCheckFail(char const*, char const*, unsigned int, std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > const&) from ??:0
#7 at::meta::structured_mm::meta(at::Tensor const&, at::Tensor const&) from ??:0
#8 at::_ops::mm::call(at::Tensor const&, at::Tensor const&) from ??:0
"""


def test_a_captured_traceback_without_its_head_still_shows_an_error_and_where():
    headless = CAPTURED[CAPTURED.index("C++ CapturedTraceback:"):]
    exc = [e for e in events_from_text(headless) if e.kind == "exception"]
    assert len(exc) == 1 and exc[0].data["raise_site"] == "??:0:at::meta::structured_mm::meta"
    assert exc[0].text.startswith("#7 at::meta::structured_mm::meta")
    # with its head the frames add nothing: the c10 error was read from 'Exception raised from'
    with_head = [e for e in events_from_text(CAPTURED) if e.kind == "exception"]
    assert not [e for e in with_head if "thrown in" in e.data["message"]]


def test_a_captured_traceback_names_the_class_of_the_error():
    text = ("C++ CapturedTraceback:\n#5 c10::Error::Error(c10::SourceLocation, std::string) from ??:0\n"
            "#6 c10d::DistBackendError::DistBackendError(c10::SourceLocation, std::string) from ??:0\n"
            "#7 c10d::NCCLComm::create(int, int, ncclUniqueId, signed char, ncclConfig_v21700&) from ??:0\n")
    top = _top(text)
    assert top.category == "nccl_error" and top.evidence[0].text.startswith("#7 c10d::NCCLComm::create")


# ---------------------------------------------------------------- one line cut in two
def test_one_line_of_a_short_paste_cut_in_two_is_joined():
    line = ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:317, "
            "unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5")
    text = f"got this right after init:\n{line[:104]}\n{line[104:]}\n"
    assert wrap_width(text) is None and one_cut_line_width(text) == 104
    assert rejoin(text.encode(), events_from_text).decode().splitlines()[1] == line
    assert _top(text).category == "nccl_error"
    # two natural lines of a short paste are not glued together (the recognisers read no more)
    plain = "the loss is fine, a question about speed: is 6.5 s/it expected on 8 A100 with ZeRO-3 and offload?\nthanks\n"
    assert rejoin(plain.encode(), events_from_text) == plain.encode()


def test_a_traceback_code_line_is_not_the_message():
    text = ('  File "/venv/lib/python3.10/site-packages/deepspeed/runtime/config.py", line 800, in _do_error_check\n'
            "    assert not (self.fp16_enabled and self.bfloat16_enabled), 'bfloat16 and fp16 modes cannot be simultaneously enabled'\n"
            "AssertionError: bfloat16 and fp16 modes cannot be simultaneously enabled\n")
    cfg = [e for e in events_from_text(text) if e.kind == "config_error"]
    assert len(cfg) == 1 and cfg[0].line == 3


def test_an_exception_message_that_reads_like_prose_is_not_a_second_attempt():
    """ray.train's TrainingFailedError says 'After fixing the issue ... restart the run': an exception
    line, not the user's prose, so the NCCL error above it stays the cause."""
    text = """step 3 loss 2.0
Traceback (most recent call last):
  File "/opt/conda/lib/python3.10/site-packages/torch/distributed/distributed_c10d.py", line 2501, in all_reduce
    work = group.allreduce([tensor], opts)
torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/NCCLUtils.hpp:317, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5
ray.train.base_trainer.TrainingFailedError: The Ray Train run failed. Please inspect the previous error messages for a cause. After fixing the issue, you can restart the run from scratch or continue this run.
"""
    assert not [e for e in events_from_text(text) if e.kind == "rerun"]
    assert _top(text).category == "nccl_error"


def test_nccl_debug_lines_are_not_grep_output():
    """NCCL's 'host:pid:tid [dev] NCCL INFO' head reads like grep's 'file:123:': it stays as printed."""
    text = "".join(f"node-a1:2101:{2101 + i} [1] NCCL INFO Channel 0{i}/02 : 0[1] -> 1[1] via P2P/IPC\n" for i in range(5))
    assert ungrep_text(text) == text
