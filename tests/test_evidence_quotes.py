"""What a finding quotes: the message line, not the traceback's source line that holds the same
literal; a long line cut in its middle, so its start (the error) and its end (an exit code after a
launcher's whole command line) both stay."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dsdoctor.api import analyze
from dsdoctor.findings import clip

REPO = Path(__file__).resolve().parent.parent


def test_clip_keeps_the_start_and_the_end():
    line = "[ERROR] [launch.py:259:sigkill_handler] [" + ", ".join(f"'--arg{i}'" for i in range(80)) + \
           "] exits with return code = -9"
    out = clip(line, 240)
    assert out.startswith("[ERROR] [launch.py:259:sigkill_handler]") and out.endswith("exits with return code = -9")
    assert " … " in out and len(out) <= 243
    assert clip("short", 240) == "short"


# transformers 4.2-4.8 deepspeed.py deepspeed_init: `raise ValueError("ZeRO Offload can only work with
# DeepSpeed optimizers")`, printed by the traceback as its source line and then as the message
TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 541, in main
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
  File "/usr/lib/python3.8/site-packages/transformers/trainer.py", line 1118, in train
    deepspeed_engine, optimizer, lr_scheduler = deepspeed_init(
  File "/usr/lib/python3.8/site-packages/transformers/deepspeed.py", line 329, in deepspeed_init
    raise ValueError("ZeRO Offload can only work with DeepSpeed optimizers")
ValueError: ZeRO Offload can only work with DeepSpeed optimizers
"""


def test_the_message_line_is_quoted_not_the_raise_statement(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(TRACEBACK)
    top = analyze(log).findings[0]
    assert top.rule == "log-cfg-client-optimizer-offload"
    quoted = [e.text for e in top.evidence]
    assert "ValueError: ZeRO Offload can only work with DeepSpeed optimizers" in quoted
    assert not any(q.lstrip().startswith("raise ") for q in quoted)


def _top(tmp_path, text: str):
    log = tmp_path / "build.log"
    log.write_text(text)
    return analyze(log).findings[0]


def test_an_op_build_quotes_the_compiler_error_first(tmp_path):
    """torch's cpp_extension runs `ninja -v`: the compiler's first error is the line that says why
    the op did not build; an excerpt may end at ninja's stop, before torch's 'Error building extension'."""
    top = _top(tmp_path, "[1/2] c++ -MMD -MF main.o.d -DTORCH_EXTENSION_NAME=cpu_adam -c main.cpp -o main.o\n"
                         "FAILED: [code=1] main.o\n"
                         "main.cpp:2:27: error: 'undefined_name' was not declared in this scope\n"
                         "ninja: build stopped: subcommand failed.\n")
    assert top.rule == "log-env-op-build" and "cpu_adam" in top.title
    assert top.evidence[0].text.startswith("main.cpp:2:27: error:") and top.evidence[0].line == 3
    assert "The compiler said" in top.summary
    top = _top(tmp_path, "nvcc fatal   : Unsupported gpu architecture 'compute_86'\n"
                         "ninja: build stopped: subcommand failed.\n")
    assert top.rule == "log-env-op-build" and top.evidence[0].line == 1
    assert "TORCH_CUDA_ARCH_LIST" in top.fixes[0].advice
    top = _top(tmp_path, "FAILED: cpu_adam.o\n/usr/bin/ld: cannot find -lcurand: No such file or directory\n"
                         "ninja: build stopped: subcommand failed.\n")
    assert top.evidence[0].text.startswith("/usr/bin/ld: cannot find -lcurand")
    assert "TORCH_CUDA_ARCH_LIST" not in top.fixes[0].advice


def test_an_argparse_error_is_no_compiler_error(tmp_path):
    """'{prog}: error: ...' (argparse) holds ': error: ' but no file position: not kept as a compiler's."""
    top = _top(tmp_path, "usage: train.py [-h]\ntrain.py: error: unrecognized arguments: --local_rank=0\n")
    assert top.rule != "log-env-op-build"
    assert not any("compiler" in k for k in top.summary.split())


def _megatron_record(it: int, loss: str | None, gnorm: str, skipped: int = 0) -> str:
    """Megatron-LM's training_log record (v2.x layout, log-formats.md section 7) on one line."""
    lm = f"lm loss: {loss} | " if loss is not None else ""
    return (f" iteration {it:8d}/{50:8d} | consumed samples: {it * 4096:12d} | elapsed time per iteration (ms): 21392.5 | "
            f"learning rate: 1.350E-04 | global batch size:  4096 | {lm}loss scale: 1.0 | grad norm: {gnorm} | "
            f"number of skipped iterations: {skipped:3d} | number of nan iterations:   0 |\n")


def _broken_at_bars(text: str, width: int) -> str:
    """Each line broken after a '| ' so that no piece is wider than `width` (an issue paste):
    scripts/perturb_realworld.py's bars perturbation."""
    return _perturbations().broken_at_bars(width)(text)


def _perturbations():
    spec = importlib.util.spec_from_file_location("perturb_realworld", REPO / "scripts" / "perturb_realworld.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


WIDTHS = (60, 80, 100)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_broken_megatron_record_quotes_the_piece_with_the_nan(tmp_path, width):
    text = "".join(_megatron_record(i, "2.113421E+00", "1.532") for i in range(1, 5)) + _megatron_record(5, "2.101234E+00", "nan")
    top = _top(tmp_path, _broken_at_bars(text, width))
    assert top.category == "nan_loss" and 5 in top.steps
    assert "grad norm: nan" in top.evidence[0].text


@pytest.mark.parametrize("width", WIDTHS)
def test_a_megatron_log_broken_at_its_bars_is_healthy_and_a_dropped_loss_still_shows(tmp_path, width):
    """Each piece of a record broken at its '|'s is read: the first piece has no loss yet, which is
    no dropped loss (it raised a false NaN before); a loss missing from every piece of a record,
    after the earlier records printed it, is (Megatron drops a loss whose average is NaN); the
    sampled reading reaches the first piece too (it holds no 'lm loss', the sampler's anchor)."""
    healthy = "".join(_megatron_record(i, "2.113421E+00", "1.532") for i in range(1, 8))
    log = tmp_path / "healthy.log"
    log.write_text(_broken_at_bars(healthy, width))
    report = analyze(log)
    assert not [f for f in report.findings if f.severity != "info"]
    assert report.log_end["last_step"] == 7
    after = _megatron_record(9, "2.101234E+00", "1.401")
    top = _top(tmp_path, _broken_at_bars(healthy + _megatron_record(8, None, "1.532") + after, width))
    assert top.category == "nan_loss" and 8 in top.steps
    log.write_text(_broken_at_bars(healthy + _megatron_record(8, None, "1.532", skipped=1) + after, width))
    assert all(f.category != "nan_loss" for f in analyze(log).findings)


# Exception classes whose names say neither Error nor Exception, in modules named for their
# exceptions (torch/_dynamo/exc.py Unsupported; requests/exceptions.py ConnectTimeout): the traceback's
# last line is still the exception quoted, not 'a traceback with no exception line'
@pytest.mark.parametrize("last", [
    "torch._dynamo.exc.Unsupported: Call to `torch._dynamo.graph_break()`",
    "torch._inductor.exc.InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx: (None, 'g++')",
    "requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='huggingface.co', port=443)",
])
def test_an_exception_named_by_its_module_is_quoted(tmp_path, last):
    log = tmp_path / "train.log"
    log.write_text("step=1 loss=2.30\nTraceback (most recent call last):\n"
                   '  File "/home/u/train.py", line 50, in main\n    out = model(x)\n' + last + "\n")
    top = analyze([str(log)]).findings[0]
    assert top.rule != "failure-cut-off-traceback"
    assert any(last[:40] in ev.text for ev in top.evidence)


def test_accelerate_fields_beside_a_ds_config_file_get_the_accelerate_fix():
    """accelerate's DeepSpeedPlugin refuses DeepSpeed fields in its own config file when a ds_config
    file is given (a real `accelerate launch --config_file`): the fix is in the accelerate config."""
    top = analyze([str(REPO / "fixtures/excerpts/lead15_accelerate_config_file_fields_with_ds_config_file.log")]).findings[0]
    assert top.category == "config_error"
    assert top.fixes[0].title.startswith("Keep only deepspeed_config_file in the accelerate config")
