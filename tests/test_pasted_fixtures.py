"""What scripts/perturb_fixtures.py found when every golden fixture was pasted the sixteen ways of
scripts/perturb_realworld.py, one test per fix (the golden fixtures themselves are in test_golden.py)."""
from __future__ import annotations

import json

from dsdoctor.sources import container_logs
from dsdoctor.sources.lines import clean
from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.ungrep import ungrep
from dsdoctor.sources.unwrap import _read_score, one_cut_line_width, rejoin

DATED = "[2024-03-02 01:04:30,366] [INFO] [logging.py:107:log_dist] step=300, skipped=0, lr=[2e-05], mom=[(0.9, 0.999)]"


def test_a_coloured_log_is_no_grep_output():
    # '\x1b[32m[2024-03-' read as grep's 'FILE-03-' took the date off every line (and with it the time)
    block = "".join(f"\x1b[32m{DATED.replace('01:04', f'01:0{i}')}\x1b[0m\n" for i in range(5)).encode()
    assert ungrep(block) == block
    assert ungrep(b"train.log-12-x\ntrain.log:13:Traceback (most recent call last):\n") \
        == b"x\nTraceback (most recent call last):\n"        # grep's own shape still read


def test_the_innermost_rank_prefix_wins():
    # srun --label's '0: ' is the task (a node's torchrun); the '[rank5]: ' behind it the process's own
    assert clean("0: [rank5]: torch.OutOfMemoryError: CUDA out of memory.")[1] == 5
    assert clean("[rank3]: 1: RuntimeError: x")[1] == 1
    assert clean("0: RuntimeError: x")[1] == 0


def test_megatron_times_across_ranks_without_their_indentation():
    body = ["times across ranks (ms):", "forward-compute:"] + [f"rank  {r}: {640.2 + r:.2f}" for r in range(4)]
    for text in ("\n".join(body), "\n".join(("2026-12-05T10:00:00Z " + ln) for ln in body)):
        evs = [e for e in events_from_text(text + "\n") if e.kind == "timers"]
        assert [(e.rank, e.data) for e in evs] == [(r, {"forward-compute": 640.2 + r}) for r in range(4)]


def _docker(lines, stamps) -> bytes:
    return "".join(json.dumps({"log": ln + "\n", "stream": "stderr", "time": t}) + "\n"
                   for ln, t in zip(lines, stamps)).encode()


def test_docker_times_that_never_advance_give_way_to_the_programs_own():
    lines = [DATED.replace("01:04", f"01:0{i}") for i in range(6)]
    same = container_logs.decode(_docker(lines, ["2026-12-05T10:00:00Z"] * 6)).decode().splitlines()
    assert same == lines and clean(same[5])[2] != clean(same[0])[2]
    moving = container_logs.decode(_docker(lines, [f"2026-12-05T10:00:0{i}.5Z" for i in range(6)])).decode()
    assert moving.splitlines()[0].startswith("2026-12-05T10:00:00.5Z ")       # a real log keeps Docker's


def test_two_lines_cut_at_one_width_in_a_longer_paste_are_joined():
    bar = [f"  {i}%|          | {i * 10}/4000 [00:0{i}:21<02:19:39,  2.10s/it]" for i in range(14)]
    head = "[2024-06-08 09:00:00,189] [INFO] [comm.py:637:init_distributed] Initializing TorchBackend in DeepSpeed with backend nccl"
    tail = "[2024-06-08 15:00:00,208] [INFO] [launch.py:319:sigkill_handler] Main process received SIGTERM, exiting"
    cut = [head[:80], head[80:], *bar, tail[:80], tail[80:]]
    text = "\n".join(cut) + "\n"
    assert one_cut_line_width(text) == 80
    joined = rejoin(text.encode(), events_from_text).decode()
    assert tail in joined.splitlines() and head in joined.splitlines()
    assert joined.count("\n") == text.count("\n")                 # the paste's line numbers stay


def test_a_piece_that_begins_inside_an_exception_name_is_joined():
    rec = json.dumps({"event": "training failed", "level": "error", "exception": [
        {"exc_type": "FileNotFoundError", "exc_value": "[Errno 2] No such file or directory: '/data/x.arrow'"}]})
    cut_at = rec.index("ileNotFoundError")
    pieces = [rec[i:i + cut_at] for i in range(0, len(rec), cut_at)]
    steps = [json.dumps({"event": f"step {i} loss 2.5", "level": "info"}) for i in range(3)]
    text = "\n".join(steps + pieces) + "\n"
    joined = rejoin(text.encode(), events_from_text).decode()
    assert rec in joined.splitlines()


def test_a_repeated_observation_counts_once_when_joined_and_cut_text_are_weighed():
    stop = "slurmstepd: error: *** {} 2200417 ON gpu-a100-031 CANCELLED AT 2024-06-08T09:20:01 DUE TO TIME LIMIT ***"
    cut = "".join(f"{stop.format(w)[:80]}\n{stop.format(w)[80:]}\n" for w in ("STEP", "JOB"))
    whole = "".join(f"{stop.format(w)}\n" for w in ("STEP", "JOB"))
    assert _read_score(whole.encode(), events_from_text) > _read_score(cut.encode(), events_from_text)


def test_the_last_lines_of_rays_memory_monitor_report():
    for line in ("Ray killed 7 worker(s) based on the killing policy",
                 "Refer to the documentation on how to address the out of memory issue: "
                 "https://docs.ray.io/en/latest/ray-observability/user-guides/debug-apps/debug-memory.html. "
                 "Consider provisioning more memory on this node or reducing task parallelism."):
        evs = [e for e in events_from_text(line + "\n") if e.kind == "killed"]
        assert evs and evs[0].data["who"] == "ray_memory_monitor", line
    assert not [e for e in events_from_text("Ray killed 0 worker(s) based on the killing policy\n")
                if e.kind == "killed"]


# a real torch 2.13 backtrace (fixtures/excerpts/lead11_rdzv_retry_interrupted_torch213.log)
_C10 = ["Exception raised from delay at /__w/pytorch/pytorch/torch/csrc/distributed/c10d/socket.cpp:113 (most recent call first):",
        "frame #0: c10::Error::Error(c10::SourceLocation, std::__cxx11::basic_string<char, std::char_traits<char>, "
        "std::allocator<char> >) + 0x9d (0x7f753f77ab8d in /work/venv/lib/python3.11/site-packages/torch/lib/libc10.so)",
        "frame #1: c10::DistError::DistError(c10::SourceLocation, std::__cxx11::basic_string<char, std::char_traits<char>, "
        "std::allocator<char> >) + 0x72 (0x7f753f77bb62 in /work/venv/lib/python3.11/site-packages/torch/lib/libc10.so)",
        "frame #2: c10::DistNetworkError::DistNetworkError(c10::SourceLocation, std::__cxx11::basic_string<char, "
        "std::char_traits<char>, std::allocator<char> >) + 0x72 (0x7f753f77c022 in /work/venv/lib/python3.11/site-packages/torch/lib/libc10.so)",
        "frame #3: <unknown function> + 0x163c31e (0x7f752a83c31e in /work/venv/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so)"]


def test_a_c10_backtrace_cut_past_its_first_frames_still_names_the_error():
    evs = [e for e in events_from_text("\n".join(_C10[3:]) + "\n") if e.kind == "exception"]
    assert [e.data["name"] for e in evs] == ["DistNetworkError"]
    for whole in (_C10, _C10[1:]):          # with its head, or its first frames: read as before, once
        evs = [e for e in events_from_text("\n".join(whole) + "\n") if e.kind == "exception"]
        assert len(evs) <= 1 and all(e.data["name"] != "DistNetworkError" for e in evs)
