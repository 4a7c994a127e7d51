"""Where a line's rank came from (sources/lines.py: Line.rank_from, Line.worn) and the detectors that
read it (detect/worn.py): a prefix a launcher's own line wears names no rank of that input."""
from dsdoctor.pipeline import diagnose
from dsdoctor.sources.lines import FROM_LABEL, FROM_MESSAGE, FROM_PREFIX, clean_line
from dsdoctor.sources.logs import events_from_text

LAUNCH = ("[2026-12-07 02:04:19,078] [INFO] [launch.py:158:main] nnodes=1, num_local_procs=2, node_rank=0\n"
          "[2026-12-07 02:04:30,116] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 14812\n"
          "[2026-12-07 02:04:30,117] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python3', '-u', 't.py', "
          "'--local_rank=1'] exits with return code = 1\n")
TRACE = ("Traceback (most recent call last):\n"
         '  File "/work/t.py", line 7, in <module>\n'
         "    deepspeed.init_distributed(dist_backend=a.backend)\n"
         "RuntimeError: Distributed package doesn't have XCCL built in\n")


def test_clean_line_says_where_the_rank_came_from():
    assert clean_line("[rank3]: hello")[1:] == (3, None, None, FROM_PREFIX, (FROM_PREFIX, 3, 1))
    assert clean_line("3: hello")[4:] == (FROM_LABEL, (FROM_LABEL, 3, 1))
    # srun's label, then the message's own rank: the message's wins, the label stays what the line wore
    assert clean_line("0: [Rank 1] step=3")[1] == 1
    assert clean_line("0: [Rank 1] step=3")[4:] == (FROM_MESSAGE, (FROM_LABEL, 0, 1))
    assert clean_line("0: [rank1]: x")[4:] == (FROM_PREFIX, (FROM_PREFIX, 1, 2))      # the innermost prefix, 2 deep
    assert clean_line("[Rank 2] x")[4:] == (FROM_MESSAGE, None)
    assert clean_line("plain")[1] is None and clean_line("plain")[4:] == (None, None)


def _prefixed(text: str, prefix: str) -> str:
    return "".join(prefix + ln + "\n" for ln in text.splitlines())


def test_a_launchers_line_behind_a_prefix_is_no_rank():
    evs = [e for e in events_from_text(_prefixed(LAUNCH, "[rank3]: "), "x.log") if e.kind == "process_exit"]
    assert evs and all(e.rank is None for e in evs)          # '--local_rank=1' is the last spawned: no rank
    assert all(e.worn == (FROM_PREFIX, 3, 1) for e in evs)


def test_a_paste_prefixed_throughout_ties_the_traceback_to_the_launchers_exit():
    for prefix in ("[rank3]: ", "[default2]:", "0: ", "1: "):
        text = _prefixed(TRACE + LAUNCH, prefix)
        top = diagnose(events_from_text(text, "x.log"))[0]
        assert top.rule == "env-torch-without-backend", (prefix, top.rule)
        assert top.ranks == [], (prefix, top.ranks)       # the prefix names no rank: every line wears it


def test_a_rank_prefix_under_a_label_stays_the_rank():
    text = "".join("0: " + ln + "\n" for ln in LAUNCH.splitlines()) + _prefixed(TRACE, "0: [rank1]: ")
    top = diagnose(events_from_text(text, "x.log"))[0]
    assert top.rule == "env-torch-without-backend" and top.ranks == [1]


def test_a_kernel_assert_once_per_input():
    line = ("../aten/src/ATen/native/cuda/Indexing.cu:1290: indexSelectLargeIndex: block: [211,0,0], "
            "thread: [{t},0,0] Assertion `srcIndex < srcSelectDimSize` failed.\n")
    evs = events_from_text("".join(line.format(t=t) for t in range(64, 70)), "x.log")
    assert [(e.kind, e.data.get("via")) for e in evs] == [("cuda_error", "kernel_assert")]
    # a host-side assert's text (glibc's '{prog}: {file}:{line}: {func}: Assertion `x' failed.') is no kernel's
    host = "python: fused.cpp:12: void f(): Assertion `n > 0' failed.\n"
    assert all(e.data.get("via") != "kernel_assert" for e in events_from_text(host, "x.log"))


def test_the_oom_title_names_the_device_as_the_allocator_did():
    npu = ("RuntimeError: NPU out of memory. Tried to allocate 2.00 GiB (NPU 3; 60.97 GiB total capacity; 54.02 GiB "
           "already allocated; 54.02 GiB current active; 3.21 GiB free; 56.88 GiB reserved in total by PyTorch)\n")
    cuda = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 2 has a total capacity of "
            "79.15 GiB of which 1.20 GiB is free. Including non-PyTorch memory, this process has 77.90 GiB memory in "
            "use. Of the allocated memory 75.00 GiB is allocated by PyTorch, and 1.90 GiB is reserved by PyTorch but "
            "unallocated.\n")
    assert any(f.title.endswith("(NPU 3)") for f in diagnose(events_from_text(npu, "x.log")))
    assert any(f.title.endswith("(GPU 2)") for f in diagnose(events_from_text(cuda, "x.log")))
