"""rich's boxed tracebacks (rich.traceback.install(), typer, accelerate with ACCELERATE_ENABLE_RICH=1)
read as CPython tracebacks (sources/rich_traceback.py). The texts are cut from real runs
(fixtures/excerpts/gen_p_rich_traceback_host_oom.log)."""
from __future__ import annotations

from pathlib import Path

from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.rich_traceback import unbox, unbox_lines

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "excerpts" / "gen_p_rich_traceback_host_oom.log"

BOX = """\
[rank0]: ╭───────────────────── Traceback (most recent call last) ──────────────────────╮
[rank0]: │ /work/venv/lib/python3.11/site-packages/torch/nn/modules/module.py:1884 in   │
[rank0]: │ _call_impl                                                                   │
[rank0]: │                                                                              │
[rank0]: │ ❱ 1884 │   │   │   return inner()                                            │
[rank0]: │                                                                              │
[rank0]: │ /work/wt/gen-p/scripts/make_fixtures.py:139 in forward                       │
[rank0]: │                                                                              │
[rank0]: │ ❱ 139 │   │   │   │   torch.empty(16 << 30, dtype=torch.uint8).fill_(1)      │
[rank0]: ╰──────────────────────────────────────────────────────────────────────────────╯
[rank0]: RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator:
[rank0]: can't allocate memory: you tried to allocate 17179869184 bytes. Error code 12 
[rank0]: (Cannot allocate memory)
"""


def test_the_box_becomes_a_cpython_traceback_and_the_wrapped_message_one_line():
    out = unbox_lines(BOX.split("\n"))
    assert len(out) == len(BOX.split("\n"))                     # line numbers stay the user's
    assert out[0] == "[rank0]: Traceback (most recent call last):"
    assert out[1] == '[rank0]:   File "/work/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1884, in _call_impl'
    assert out[6] == '[rank0]:   File "/work/wt/gen-p/scripts/make_fixtures.py", line 139, in forward'
    assert out[10] == ("[rank0]: RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                       "can't allocate memory: you tried to allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)")
    assert out[11] == out[12] == "[rank0]: "


def test_the_size_and_the_phase_are_read_through_the_box():
    oom = [e for e in events_from_text(unbox(BOX.encode()).decode()) if e.kind == "oom"]
    assert oom and oom[0].data["requested"] == 17179869184 and oom[0].data["phase"] == "forward"


def test_a_short_line_after_the_message_is_not_joined():
    text = BOX.replace("(Cannot allocate memory)\n", "(Cannot allocate memory)\n[rank0]: done\n")
    out = unbox_lines(text.split("\n"))
    assert out[13] == "[rank0]: done" and out[10].endswith("(Cannot allocate memory)")


def test_two_ranks_interleaved_line_by_line_stay_apart():
    a = BOX.rstrip("\n").split("\n")
    b = [ln.replace("[rank0]", "[rank1]") for ln in a]
    mixed = [x for pair in zip(a, b) for x in pair]
    out = unbox_lines(mixed)
    assert out[20].startswith("[rank0]: RuntimeError:") and out[20].endswith("(Cannot allocate memory)")
    assert out[21].startswith("[rank1]: RuntimeError:") and out[21].endswith("(Cannot allocate memory)")


def test_without_a_box_the_block_is_returned_as_it_is():
    block = b"[rank0]: RuntimeError: boom\n"
    assert unbox(block) is block


def test_the_real_capture_is_read_whole():
    text = FIXTURE.read_text()
    oom = [e for e in events_from_text(unbox(text.encode()).decode()) if e.kind == "oom"]
    assert oom[0].data["requested"] == 17179869184


def test_coloured_boxes_and_rich_logging_handlers_indent_are_read_too():
    # structlog's ConsoleRenderer colours the box into a file; rich.logging.RichHandler(rich_tracebacks=True)
    # indents it under its time and level columns and pads every line to the console width (real lines from
    # fixtures/excerpts/gen_p_structlog_console_rich_config.log and gen_p_rich_logging_handler_host_oom.log)
    pad = " " * 20
    handler = (f"{pad}╭────── Traceback (most recent call last) ───────╮          \n"
               f"{pad}│ /work/probes/gen-p/pw.py:127 in <module>       │          \n"
               f"{pad}╰────────────────────────────────────────────────╯          \n"
               f"{pad}RuntimeError: [enforce fail at alloc_cpu.cpp:127]           \n"
               f"{pad}err == 0. DefaultCPUAllocator: can't allocate               \n")
    out = unbox(handler.encode()).decode().split("\n")
    assert out[0] == "Traceback (most recent call last):"
    assert out[1] == '  File "/work/probes/gen-p/pw.py", line 127, in <module>'
    assert out[3] == "RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate"
    coloured = ("\x1b[31m╭─\x1b[0m\x1b[31m──────\x1b[0m\x1b[31m \x1b[0m\x1b[1;31mTraceback \x1b[0m\x1b[1;2;31m(most recent call "
                "last)\x1b[0m\x1b[31m ──────╮\x1b[0m\n\x1b[31m╰─────────────────────────────────────────╯\x1b[0m\n"
                "\x1b[1;91mAssertionError: \x1b[0mCheck batch related parameters. train_batch\n"
                "micro_batch_per_gpu * gradient_acc_step\n")
    out = unbox(coloured.encode()).decode().split("\n")
    assert out[0] == "Traceback (most recent call last):"
    assert out[2] == "AssertionError: Check batch related parameters. train_batch micro_batch_per_gpu * gradient_acc_step"
