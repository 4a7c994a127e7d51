"""`dsdoctor analyze` on good, odd and broken inputs.

Every case: a one-line message on stderr, exit code 2 when the input is unusable, never a
traceback; a usable input keeps every finding it holds (invalid bytes, giant lines, a cut
.gz). Runs the CLI in-process (typer's CliRunner) except where a real process matters.
"""
from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dsdoctor import cli
from dsdoctor.events import Event, EventWriter
from dsdoctor.sources.scanner import candidate_lines, matcher

if not cli.app.registered_commands:
    cli._register()

# A real torch >= 2.1 CUDA OOM message (c10/cuda/CUDACachingAllocator.cpp wording).
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of "
       "79.15 GiB of which 1.20 GiB is free. Including non-PyTorch memory, this process has 77.90 GiB memory in "
       "use. Of the allocated memory 75.00 GiB is allocated by PyTorch, and 1.90 GiB is reserved by PyTorch but "
       "unallocated. If reserved but unallocated memory is large try setting "
       "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")

# DeepSpeed 0.19.8 INFO/print lines of a healthy run (log_level info, steps_per_print 1,
# wall_clock_breakdown on), as a 2-rank ZeRO-2 bf16 CPU run prints them.
HEALTHY = """\
[2026-11-22 07:30:01,123] [INFO] [real_accelerator.py:260:get_accelerator] Setting ds_accelerator to cpu (override)
[2026-11-22 07:30:02,001] [INFO] [logging.py:123:log_dist] [Rank 0] DeepSpeed info: version=0.19.8, git-hash=unknown, git-branch=unknown
[2026-11-22 07:30:02,050] [INFO] [logging.py:123:log_dist] [Rank 0] Creating torch.bfloat16 ZeRO stage 2 optimizer
[2026-11-22 07:30:02,311] [INFO] [logging.py:123:log_dist] [Rank 0] DeepSpeed Final Optimizer = DeepSpeedZeroOptimizer
[2026-11-22 07:30:02,312] [INFO] [logging.py:123:log_dist] [Rank 0] step=0, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]
[Rank 0] time (ms) | fwd_microstep: 2.96 | bwd_microstep: 17.78 | bwd_inner_microstep: 15.33 | bwd_allreduce_microstep: 2.40 | step_microstep: 45.57
[Rank 0] time (ms) | fwd: 2.96 | bwd: 17.78 | bwd_inner: 15.33 | bwd_allreduce: 2.40 | step: 45.57
[2026-11-22 07:30:02,400] [INFO] [logging.py:123:log_dist] [Rank 0] step=1, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]
[Rank 0] time (ms) | fwd_microstep: 2.91 | bwd_microstep: 17.02 | bwd_inner_microstep: 15.10 | bwd_allreduce_microstep: 2.31 | step_microstep: 44.80
[Rank 0] time (ms) | fwd: 2.91 | bwd: 17.02 | bwd_inner: 15.10 | bwd_allreduce: 2.31 | step: 44.80
[2026-11-22 07:30:02,480] [INFO] [logging.py:123:log_dist] [Rank 0] step=2, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]
[2026-11-22 07:30:02,481] [INFO] [timer.py:264:stop] epoch=0/micro_step=3/global_step=3, RunningAvgSamplesPerSec=689.56, CurrSamplesPerSec=689.45, MemAllocated=0.33GB, MaxMemAllocated=0.33GB
step 3 loss 2.3012
"""

runner = CliRunner()


def run(*args: str, input: bytes | None = None):
    res = runner.invoke(cli.app, ["analyze", *args], input=input)
    assert "Traceback" not in res.output and "Traceback" not in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def run_json(*args: str, input: bytes | None = None) -> tuple[int, dict, str]:
    res = run("--json", *args, input=input)
    doc = json.loads(res.stdout)        # exactly one JSON document, nothing else on stdout
    assert doc["schema"] == "dsdoctor.report/1"
    return res.exit_code, doc, res.stderr


def assert_one_line_error(res, *words: str) -> None:
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert err.startswith("dsdoctor: error: "), err
    assert "\n" not in err, err
    for w in words:
        assert w in err, err
    assert res.stdout == ""


def categories(doc: dict) -> list[str]:
    return [f["category"] for f in doc["findings"]]


# ---------------------------------------------------------------- unusable inputs
def test_missing_file(tmp_path):
    assert_one_line_error(run(str(tmp_path / "nope.log")), "nope.log", "no such file")


def test_folder_without_logs(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x00" * 10)
    assert_one_line_error(run(str(tmp_path)), "no log files")


def test_empty_file(tmp_path):
    p = tmp_path / "train.log"
    p.write_bytes(b"")
    assert_one_line_error(run(str(p)), "train.log", "empty")


def test_binary_file(tmp_path):
    p = tmp_path / "ckpt.log"
    p.write_bytes(random.Random(0).randbytes(64 << 10))
    assert_one_line_error(run(str(p)), "ckpt.log", "binary")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_log_with_its_byte_order_mark_is_read(tmp_path, encoding):
    # Windows PowerShell's `>` / Tee-Object write UTF-16 with a BOM; the other two get one written here
    text = HEALTHY + "Traceback (most recent call last):\n" + OOM + "\n"
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding]
    p = tmp_path / "train.log"
    p.write_bytes(bom + text.encode(encoding))
    for path in (p, _gz(p)):
        code, doc, _ = run_json(str(path))
        assert code == 1 and doc["findings"][0]["category"] == "oom", doc
        assert doc["findings"][0]["evidence"][0]["line"] == text.splitlines().index(OOM) + 1


def _gz(p):
    out = p.with_name(p.name + ".gz")
    out.write_bytes(gzip.compress(p.read_bytes()))
    return out


def test_a_log_truncated_under_its_writer_starts_with_nul_bytes_and_is_read(tmp_path):
    # logrotate's copytruncate (or `> train.log` while the job runs): the writer goes on at its old
    # offset, so the file starts with a hole that reads as zeros, then the text
    p = tmp_path / "train.log"
    p.write_bytes(b"\x00" * (3 << 20) + (HEALTHY + OOM + "\n").encode())
    code, doc, _ = run_json(str(p))
    assert code == 1 and doc["findings"][0]["category"] == "oom", doc


def test_a_log_of_nothing_but_nul_bytes(tmp_path):
    p = tmp_path / "train.log"
    p.write_bytes(b"\x00" * 100_000)
    assert_one_line_error(run(str(p)), "train.log", "only NUL bytes")


def test_binary_file_among_good_logs_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "rank0.log").write_bytes(random.Random(1).randbytes(4096))
    (tmp_path / "rank1.log").write_text(OOM + "\n")
    code, doc, err = run_json(str(tmp_path))
    assert code == 1 and categories(doc)[0] == "oom"
    assert "rank0.log" in err and "skipped" in err


def test_an_empty_stack_file_of_a_run_folder_is_no_warning(tmp_path):
    """The live watchdog makes DIR/stacks-rank<N>.txt at attach (the file `kill -USR1` writes to);
    it stays empty when no stall came, which is nothing to warn about. Any other empty log is."""
    (tmp_path / "stacks-rank1.txt").write_text("")
    (tmp_path / "rank1.log").write_text(OOM + "\n")
    code, doc, err = run_json(str(tmp_path))
    assert code == 1 and categories(doc)[0] == "oom" and "stacks-rank1.txt" not in err
    (tmp_path / "rank2.log").write_text("")
    assert "rank2.log" in run_json(str(tmp_path))[2]


# ---------------------------------------------------------------- never lose data
def test_invalid_utf8_keeps_the_finding(tmp_path):
    p = tmp_path / "train.log"
    p.write_bytes(b"\xff\xfe\xfd garbage \xc3(\n" + HEALTHY.encode() + b"\x80\x81 step 4 \xe2\x82\n"
                  + b"\xc3\x28 " + OOM.encode() + b" \xff\n" + b"tail \xfe\n")
    code, doc, _ = run_json(str(p))
    assert code == 1
    assert categories(doc)[0] == "oom"
    assert doc["findings"][0]["evidence"][0]["line"] == 16


def test_50mb_single_line_then_error(tmp_path):
    p = tmp_path / "train.log"
    with open(p, "wb") as fh:
        fh.write(b"#" * (50 << 20))          # one line, no newline, across several 8 MiB blocks
        fh.write(b"\n" + OOM.encode() + b"\n")
    code, doc, _ = run_json(str(p))
    assert code == 1 and categories(doc)[0] == "oom"
    assert doc["findings"][0]["evidence"][0]["line"] == 2


def test_good_gz(tmp_path):
    p = tmp_path / "train.log.gz"
    p.write_bytes(gzip.compress((HEALTHY + OOM + "\n").encode()))
    code, doc, _ = run_json(str(p))
    assert code == 1 and categories(doc) [0] == "oom"


def test_truncated_gz_analyses_the_part_before_the_cut(tmp_path):
    filler = b"epoch 3 batch 17 tokens 16384 data_wait_ms 1.2\n"
    text = HEALTHY.encode() + OOM.encode() + b"\n" + filler * ((12 << 20) // len(filler))   # > one 8 MiB block
    data = gzip.compress(text, compresslevel=1)
    p = tmp_path / "train.log.gz"
    p.write_bytes(data[: len(data) // 2])
    code, doc, err = run_json(str(p))
    assert code == 1 and categories(doc)[0] == "oom"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "truncated" in lines[0] and "train.log.gz" in lines[0]
    assert any("truncated" in w for w in doc["warnings"])


def test_truncated_tiny_gz(tmp_path):
    data = gzip.compress((OOM + "\n").encode())
    p = tmp_path / "train.log.gz"
    p.write_bytes(data[: len(data) - 12])   # the CRC/size trailer and a few bytes are missing
    code, doc, err = run_json(str(p))
    assert code == 1 and categories(doc)[0] == "oom"    # the unterminated last line is kept
    assert "truncated" in err


def test_stdin():
    code, doc, _ = run_json("-", input=(HEALTHY + OOM + "\n").encode())
    assert code == 1 and categories(doc)[0] == "oom"
    assert doc["findings"][0]["evidence"][0]["source"] == "-"


def test_empty_stdin():
    assert_one_line_error(run("-", input=b""), "stdin", "empty")


def test_stdin_in_a_real_process():
    p = subprocess.run([sys.executable, "-m", "dsdoctor", "analyze", "--json", "-"],
                       input=(HEALTHY + OOM + "\n").encode(), capture_output=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["findings"][0]["category"] == "oom"
    assert b"Traceback" not in p.stderr


def test_folder_one_log_per_rank(tmp_path):
    for r in range(4):
        (tmp_path / f"rank{r}.log").write_text(HEALTHY + (OOM + "\n" if r == 3 else ""))
    code, doc, _ = run_json(str(tmp_path))
    assert code == 1
    top = doc["findings"][0]
    assert top["category"] == "oom" and top["ranks"] == [3]
    assert top["evidence"][0]["source"].endswith("rank3.log")


def test_same_oom_on_many_ranks_is_one_finding(tmp_path):
    for r in range(8):
        (tmp_path / f"rank{r}.log").write_text(OOM + "\n")
    code, doc, _ = run_json(str(tmp_path))
    ooms = [f for f in doc["findings"] if f["category"] == "oom"]
    assert len(ooms) == 1 and ooms[0]["ranks"] == list(range(8))


def test_dsdoctor_events_jsonl(tmp_path):
    w = EventWriter(tmp_path / "events-rank2.jsonl")
    w.write(Event("loss", rank=2, step=1, data={"value": float("nan"), "name": "loss"}))
    w.write(Event("oom", rank=2, step=7, data={"device": "cuda", "phase": "backward", "requested": 1 << 30,
                                              "total": 80 << 30, "free": 1 << 20}, text=OOM))
    w.close()
    with open(tmp_path / "events-rank2.jsonl", "a") as fh:
        fh.write('{"kind": "step", "rank": 2, "st')        # cut by a SIGKILL: skipped, not fatal
    code, doc, _ = run_json(str(tmp_path))
    assert code == 1
    oom = next(f for f in doc["findings"] if f["category"] == "oom")
    assert oom["ranks"] == [2] and oom["steps"] == [7]


def test_healthy_log_has_nothing_above_info(tmp_path):
    p = tmp_path / "train.log"
    p.write_text(HEALTHY)
    code, doc, _ = run_json(str(p))
    assert code == 0
    assert all(f["severity"] == "info" for f in doc["findings"])
    res = run(str(p))                      # the human report too
    assert res.exit_code == 0


# ---------------------------------------------------------------- rules and config
def test_malformed_rule_file(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.yaml").write_text("rules:\n  - id: x\n    title: ok\n\tsummary: tab\n")
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    assert_one_line_error(run("--rules", str(rules), str(log)), "broken.yaml:4")


def test_malformed_config(tmp_path):
    cfg = tmp_path / "ds.json"
    cfg.write_text('{"train_micro_batch_size_per_gpu": 4,\n "zero_optimization": {"stage": 2}\n')
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    assert_one_line_error(run("--config", str(cfg), str(log)), "ds.json", "JSON")


@pytest.mark.parametrize("what", ["missing", "directory", "empty", "not-an-object"])
def test_unusable_config(tmp_path, what):
    cfg = tmp_path / "ds.json"
    if what == "directory":
        cfg.mkdir()
    elif what == "empty":
        cfg.write_text("")
    elif what == "not-an-object":
        cfg.write_text("[1, 2]")
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    assert_one_line_error(run("--config", str(cfg), str(log)), "ds.json")


def test_write_config_needs_config(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    assert_one_line_error(run("--write-config", str(tmp_path / "out.json"), str(log)), "--config")
    assert not (tmp_path / "out.json").exists()


def test_write_config_writes_a_new_file_and_keeps_the_input(tmp_path):
    cfg = tmp_path / "ds.json"
    original = ('{\n  "train_micro_batch_size_per_gpu": 8,\n  "gradient_accumulation_steps": 1,\n'
                '  "zero_optimization": {"stage": 2}\n}\n')
    cfg.write_text(original)
    log = tmp_path / "train.log"
    log.write_text(OOM + "\n")
    out = tmp_path / "ds.fixed.json"
    code, doc, _ = run_json("--config", str(cfg), "--write-config", str(out), str(log))
    assert code == 1
    assert cfg.read_text() == original
    patched = json.loads(out.read_text())
    assert patched != json.loads(original)
    assert doc["written_config"] == str(out)
    # a folder, or a path in a folder that does not exist: one line, exit 2
    for bad in (tmp_path, tmp_path / "no" / "such" / "dir.json"):
        assert_one_line_error(run("--config", str(cfg), "--write-config", str(bad), str(log)), "cannot write")
    # refusing to write over the input
    res = run("--config", str(cfg), "--write-config", str(cfg), str(log))
    assert_one_line_error(res, "refusing to overwrite")
    assert cfg.read_text() == original


# ---------------------------------------------------------------- the block scanner itself
@pytest.mark.parametrize("backend", ["default", "re"])
def test_candidate_lines_match_a_line_by_line_scan(monkeypatch, backend):
    """Block boundaries anywhere (mid-line, mid-trigger, right after a newline) change
    nothing: same lines, same line numbers as a naive per-line search. With hyperscan
    (when installed) and with the `re` fallback."""
    rx = matcher()
    if backend == "re":
        monkeypatch.setattr(rx, "hs", None)
    rnd = random.Random(7)
    words = [b"hello", b"step=3", b"CUDA out of memory", b"x" * 300, b"\r", b"\xff", b"", b"loss: nan",
             b"Watchdog caught collective operation timeout", b"OVERFLOW!"]
    lines = [b" ".join(rnd.choice(words) for _ in range(rnd.randint(0, 6))) for _ in range(3000)]
    data = b"\n".join(lines)             # no final newline: the last line must still be seen
    expected = [(i + 1, ln) for i, ln in enumerate(lines) if rx.rx.search(ln)]
    for trial in range(20):
        cuts = sorted(rnd.sample(range(1, len(data)), rnd.randint(1, 40)))
        blocks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        assert list(candidate_lines(blocks)) == expected, trial


def test_per_line_trigger_lookup_gives_the_same_events(monkeypatch):
    """parse_line asks hyperscan which literals a line holds; without it, every literal is
    tried. Both must give the same events."""
    from dsdoctor.sources.logs import events_from_text
    text = (HEALTHY + "\r 45%|####      | 450/1000 [00:10<00:12]\r[Rank 0] time (ms) | fwd: 1.00 | bwd: 2.00\n"
            + "\x1b[31m[rank1]:" + OOM + "\x1b[0m\n" + " iteration      100/  500000 | lm loss: 2.1E+00 |\n"
            + "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768\n")
    def key(evs):
        return [(e.kind, e.rank, e.step, e.line, sorted(map(str, e.data.items()))) for e in evs]
    with_hs = key(events_from_text(text))
    monkeypatch.setattr(matcher(), "hs", None)
    assert key(events_from_text(text)) == with_hs
    assert with_hs


def test_rank_from_file_name_but_not_from_a_node_name(tmp_path):
    """rank3.log is rank 3; node2.log holds every rank of node 2, so its number is no rank."""
    from dsdoctor.sources.inputs import expand
    for name in ("rank3.log", "node2.log", "worker-5.log", "train.log"):
        (tmp_path / name).write_text("hello\n")
    hints = {p.path.name: p.rank_hint for p in expand([str(tmp_path)])}
    assert hints == {"rank3.log": 3, "node2.log": None, "worker-5.log": 5, "train.log": None}


def test_a_report_without_problems_says_how_far_the_logs_got(tmp_path):
    """'No problems found' is not 'healthy': the note (and --json's log_end) says whether the run
    printed its own normal end, or where the logs stop with neither an error nor an end."""
    steps = "".join(f"[2026-12-05 10:00:{i:02d},000] [INFO] [logging.py:107:log_dist] [Rank 0] step={i}, skipped=0, "
                    f"lr=[0.0001], mom=[(0.9, 0.999)]\n" for i in range(1, 6))
    cut = tmp_path / "cut.log"
    cut.write_text(steps)
    code, doc, _ = run_json(str(cut))
    assert code == 0 and doc["findings"] == []
    assert doc["log_end"]["last_step"] == 5 and doc["log_end"]["normal_end"] is False
    assert doc["log_end"]["at"].endswith("cut.log:5")
    text = run(str(cut)).stdout
    assert "no error and no normal end" in " ".join(text.split())
    done = tmp_path / "done.log"
    done.write_text(steps + "{'train_runtime': 12.5, 'train_samples_per_second': 3.2, 'train_steps_per_second': 0.4, "
                            "'train_loss': 1.5, 'epoch': 1.0}\n")
    code, doc, _ = run_json(str(done))
    assert code == 0 and doc["log_end"]["normal_end"] is True and doc["log_end"]["at"].endswith("done.log:6")
    assert "its own normal end" in " ".join(run(str(done)).stdout.split())
    start = tmp_path / "start.log"
    start.write_text("[2026-12-05 10:00:00,000] [INFO] [comm.py:700:init_distributed] Initializing TorchBackend in "
                     "DeepSpeed with backend nccl\n")
    code, doc, _ = run_json(str(start))
    assert doc["log_end"]["phase"] == "dist_init" and doc["log_end"]["last_step"] is None
    assert "during start-up" in " ".join(run(str(start)).stdout.split())


def test_every_process_the_deepspeed_launcher_started_returning_0_is_a_normal_end(tmp_path):
    """A script that prints no end of its own, run by the deepspeed launcher (the usual way): the
    launcher's 'Process N exits successfully.' for every process it spawned is the run's normal
    end, not 'no error and no normal end' (lines from a real 2-rank run, DeepSpeed 0.19.8)."""
    spawned = "".join(f"[2026-12-06 16:57:24,161] [INFO] [launch.py:245:main] process {1861 + r} spawned with command: "
                      f"['/work/venv/bin/python3', '-u', 'train.py', '--local_rank={r}', '/tmp/ck']\n" for r in (0, 1))
    steps = "".join(f"step={i} loss=0.0{i + 1}63\n" for i in range(4) for _ in (0, 1))
    done = "".join(f"[2026-12-06 16:57:31,170] [INFO] [launch.py:285:main] Process {1861 + r} exits successfully.\n"
                   for r in (0, 1))
    both = tmp_path / "both.log"
    both.write_text(spawned + steps + done)
    code, doc, _ = run_json(str(both))
    assert code == 0 and doc["findings"] == []
    assert doc["log_end"]["normal_end"] is True and doc["log_end"]["at"].endswith("both.log:12")
    one = tmp_path / "one.log"                 # one process done, the log cut: no end yet
    one.write_text(spawned + steps + done.splitlines(keepends=True)[0])
    code, doc, _ = run_json(str(one))
    assert doc["log_end"]["normal_end"] is False
    again = tmp_path / "again.log"             # both done, then a later run's steps: its end is not seen
    again.write_text(spawned + steps + done + steps)
    code, doc, _ = run_json(str(again))
    assert doc["log_end"]["normal_end"] is False
