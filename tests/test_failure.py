"""A failed run is never reported healthy (detect/failure.py, the failure-* rules, rules/host_oom.yaml).

The texts come from real processes run here: Python's own tracebacks, torch's cpp_extension
ninja build, DeepSpeed's config parser, torchrun's ChildFailedError summary, bash's crash
report, and `dsdoctor run` over the demo script killed by SIGKILL or raising; the launcher
and Slurm line formats are the installed sources' templates (cited in launcher.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dsdoctor.detect.families import classify
from dsdoctor.live.oom_counter import read_oom_counts
from dsdoctor.pipeline import Diagnoser
from dsdoctor.sources.logs import events_from_text
import run_ahead

ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SITE = Path(__import__("torch").__file__).resolve().parent.parent


def diagnose(text: str):
    d = Diagnoser()
    d.feed_all(events_from_text(text, "run.log"))
    return d.finish()


def top(text: str):
    fs = [f for f in diagnose(text) if f.severity != "info"]
    assert fs, "reported healthy"
    return fs[0]


def output_of(code: str, timeout: float = 120, cmd: list[str] | None = None) -> str:
    """Run a real Python process; its stdout+stderr, as a log would hold them (the same process
    started one test ahead when the module listed it with `ahead`)."""
    args = cmd or [sys.executable, "-c", code]
    early = run_ahead.registered(("output_of", tuple(args), timeout))
    p = early.run() if early else subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert p.returncode != 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def ahead(code: str, timeout: float = 120, cmd: list[str] | None = None) -> str:
    """`code`, after listing `output_of(code, timeout, cmd)` to start one test ahead (tests/run_ahead.py):
    for the processes that import torch or DeepSpeed (2-12 s of CPU each), in the order the tests read them."""
    args = cmd or [sys.executable, "-c", code]
    run_ahead.register(("output_of", tuple(args), timeout), args, timeout=timeout, env=ENV)
    return code


# ---------------------------------------------------------------- Python tracebacks, real ones
def test_any_exception_type_is_a_failure_with_type_line_and_triage():
    log = "step 1 loss 2.0\n" + output_of("import json\njson.loads('{not json')")
    f = top(log)
    assert f.rule == "unexplained-failure" and f.category == "other" and f.severity == "error"
    assert "JSONDecodeError" in f.title and "run.log:" in f.summary
    assert f.evidence[0].text.startswith("json.decoder.JSONDecodeError: Expecting property name")
    assert f.fixes and "traceback" in f.fixes[0].advice


SAVE_TO_FULL_DISK = ahead("import torch; torch.save({'w': torch.zeros(1000)}, '/dev/full')")


def test_a_full_disk_under_torch_save_is_storage():
    """torch.save onto a device that is full (/dev/full: every write fails with ENOSPC), for real."""
    log = "step 7 loss 1.0\n" + output_of(SAVE_TO_FULL_DISK)
    f = top(log)
    assert (f.rule, f.category) == ("failure-storage-full", "environment"), (f.rule, f.title)
    log = output_of("open('/dev/full', 'wb').write(b'x' * 65536)")
    assert "No space left on device" in log and top(log).rule == "failure-storage-full"


WORKER_SEGFAULT = ahead("import os, signal, torch\n"
                        "from torch.utils.data import DataLoader, Dataset\n"
                        "class D(Dataset):\n"
                        "    def __len__(self): return 8\n"
                        "    def __getitem__(self, i):\n"
                        "        if i == 3: os.kill(os.getpid(), signal.SIGSEGV)\n"
                        "        return torch.zeros(2)\n"
                        "for b in DataLoader(D(), num_workers=1, batch_size=1): pass\n")


def test_a_dataloader_worker_segfault_is_a_crash():
    """A real DataLoader worker killed by SIGSEGV: torch's worker handler prints 'Unexpected
    segmentation fault encountered in worker', the main process then fails on its lost pipe."""
    f = top(output_of(WORKER_SEGFAULT))
    assert f.rule == "failure-crash-signal" and "SIGSEGV" in f.title and "DataLoader worker" in f.summary
    # how the main process may report it instead (libtorch_python 'DataLoader worker (pid {}) is
    # killed by signal: {}. ', torch/utils/data/dataloader.py 'DataLoader worker (pid(s) {}) exited
    # unexpectedly'): a report of the worker's death, not a cause of its own
    for end in ("RuntimeError: DataLoader worker (pid 4242) is killed by signal: Segmentation fault. \n",
                "ERROR: Unexpected segmentation fault encountered in worker.\nTraceback (most recent call last):\n"
                '  File "train.py", line 9, in <module>\n'
                "RuntimeError: DataLoader worker (pid(s) 4242) exited unexpectedly\n",
                # seen in one run of ~4: the main process first loses its pipe to the worker
                "ERROR: Unexpected segmentation fault encountered in worker.\n Traceback (most recent call last):\n"
                '  File "/usr/lib/python3.11/multiprocessing/connection.py", line 430, in _recv_bytes\n'
                "    buf = self._recv(4)\nEOFError\n\n"
                "During handling of the above exception, another exception occurred:\n\n"
                "Traceback (most recent call last):\n"
                '  File "train.py", line 9, in <module>\n'
                "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Segmentation fault. \n"):
        f = top("step 3 loss 1.0\n" + end)
        assert f.rule == "failure-crash-signal" and "SIGSEGV" in f.title, (f.rule, f.title)


def test_during_handling_keeps_the_first_exception():
    log = output_of("d = {}\ntry:\n    d['model']\nexcept KeyError:\n    raise ValueError('cleanup failed')")
    assert "During handling of the above exception" in log
    f = top(log)
    assert "KeyError" in f.title
    assert any("ValueError: cleanup failed" in e.text for e in f.evidence)


NINJA_BUILD_IN_EMPTY_FOLDER = ahead("import tempfile\nfrom torch.utils import cpp_extension\n"
                                    "cpp_extension._run_ninja_build(tempfile.mkdtemp(), False, "
                                    "error_prefix=\"Error building extension 'demo_op'\")")


def test_raise_from_of_a_real_ninja_build_is_environment():
    if not any((Path(p) / "ninja").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("ninja not installed")
    log = output_of(NINJA_BUILD_IN_EMPTY_FOLDER)
    assert "The above exception was the direct cause" in log
    assert top(log).category == "environment"
    # without the specific 'Error building extension' line: the chain's ninja CalledProcessError says it
    cut = log.split("The above exception was the direct cause")[0]
    f = top(cut)
    assert (f.rule, f.category) == ("failure-environment-exception", "environment")


BUILD_MISSING_HEADER = ahead("import tempfile\nfrom torch.utils.cpp_extension import load_inline\n"
                             "load_inline(name='demo_missing_header', cpp_sources=['#include <demo_no_such_header.h>\\nint f() "
                             "{ return 1; }'], functions=['f'], build_directory=tempfile.mkdtemp(), verbose=True)", timeout=300)


def test_a_real_op_build_missing_a_header_names_the_header():
    """torch's JIT build (the path DeepSpeed's op_builder takes) of a source that includes a
    header this machine lacks: the compiler's 'fatal error' line is the cause, the build
    error its consequence."""
    if not any((Path(p) / "ninja").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("ninja not installed")
    log = output_of(BUILD_MISSING_HEADER, timeout=300)
    fs = [f for f in diagnose(log) if f.severity != "info"]
    assert fs[0].rule == "log-env-missing-header" and "demo_no_such_header.h" in fs[0].title
    assert fs[1].rule == "log-env-op-build" and fs[1].consequence_of == "log-env-missing-header"


GCC_FAILS = ("import os, subprocess, tempfile\nd = tempfile.mkdtemp()\nsrc = os.path.join(d, 'main.c')\n"
             "open(src, 'w').write('int main( {')\n"
             "subprocess.run(['gcc', src, '-O3', '-shared', '-fPIC', '-o', os.path.join(d, 'cuda_utils.so')], check=True)")


def test_a_real_compiler_run_that_fails_is_environment():
    """A C compiler the process starts itself (Triton's driver module, Inductor's kernels) and that fails:
    subprocess's CalledProcessError of a gcc command is the machine's toolchain, not a launcher's wrapper."""
    if not any((Path(p) / "gcc").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("gcc not installed")
    log = output_of(GCC_FAILS)
    exc = [ln for ln in log.splitlines() if ln.startswith("subprocess.CalledProcessError: Command '['gcc'")]
    assert exc, log
    f = top(exc[0] + "\n")
    assert (f.rule, f.category) == ("failure-compiler-run", "environment"), (f.rule, log)
    assert classify("CalledProcessError", "Command '['/usr/bin/python', 'train.py']' returned non-zero exit status 1.").name \
        == "wrapper"


def test_missing_module_is_environment():
    f = top(output_of("import dsdoctor_no_such_module_xyz"))
    assert (f.rule, f.category) == ("env-missing-module", "environment")


def test_memory_error_is_host_memory():
    f = top(output_of("b = bytearray(1 << 60)"))
    assert f.category == "host_oom"


def test_the_open_files_limit_is_environment():
    """A real EMFILE: the process's open-files limit lowered, then more files opened."""
    f = top(output_of("import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))\n"
                      "fs = [open('/dev/null') for _ in range(100)]"))
    assert (f.rule, f.category) == ("failure-open-files-limit", "environment") and "[Errno 24]" in f.summary


DS_CONFIG_BATCH_ERROR = ahead("from deepspeed.runtime.config import DeepSpeedConfig\n"
                              "DeepSpeedConfig({'train_batch_size': 3, 'train_micro_batch_size_per_gpu': 2,"
                              " 'gradient_accumulation_steps': 1})")


def test_real_deepspeed_config_error_is_config_error():
    pytest.importorskip("deepspeed")
    log = output_of(DS_CONFIG_BATCH_ERROR)
    assert top(log).category == "config_error"


def test_exception_ignored_in_del_is_not_a_failure():
    p = subprocess.run([sys.executable, "-c", "class A:\n    def __del__(self):\n        raise AttributeError('gone')\n"
                        "a = A()\ndel a\nprint('step 3 loss 1.0')"], capture_output=True, text=True, env=ENV,
                       timeout=120)
    assert p.returncode == 0 and "Exception ignored in" in p.stderr
    assert [f for f in diagnose(p.stderr + p.stdout) if f.severity != "info"] == []


def test_traceback_cut_off_before_its_exception_line():
    log = output_of("def f():\n    raise IndexError('x')\nf()")
    cut = log.rsplit("IndexError", 1)[0]
    assert top(cut).rule == "failure-cut-off-traceback"


def test_quoted_error_words_in_a_healthy_log_are_not_failures():
    log = ("[INFO] checking ValueError handling in the data pipeline\n"
           "  RuntimeError: would be raised if the file were missing\n"
           "Epoch: 1 | loss: 2.0\n")
    assert [f for f in diagnose(log) if f.severity != "info"] == []


# ---------------------------------------------------------------- ranks: cause before consequence
def test_the_rank_that_raised_beats_the_ranks_that_lost_their_peer():
    log = ("[rank1]:Traceback (most recent call last):\n"
           '[rank1]:  File "train.py", line 9, in <module>\n'
           "[rank1]:KeyError: 'input_ids'\n"
           "[rank0]:torch.distributed.DistBackendError: [2] is setting up NCCL communicator and retrieving ncclUniqueId from [0] via c10d key-value store by key '0:1', but store->get('0:1') got error: Connection reset by peer\n")
    f = top(log)
    assert "KeyError" in f.title and f.ranks == [1]


# ---------------------------------------------------------------- torchrun, bash, faulthandler: real
@pytest.mark.slow
def test_torchrun_child_exit_without_traceback_names_rank_and_code(tmp_path):
    script = tmp_path / "die.py"
    script.write_text("import os\nos._exit(3)\n")
    log = output_of("", cmd=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                             str(script)])
    assert "Root Cause (first observed failure)" in log
    f = top(log)
    assert f.rule == "unexplained-failure" and "exit code 3" in f.title and f.ranks == [0]
    assert any("exitcode" in e.text for e in f.evidence)


@pytest.mark.slow
def test_torchrun_child_exception_is_decisive_not_child_failed_error(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("raise LookupError('no such shard: 7')\n")
    log = output_of("", cmd=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                             str(script)])
    assert "ChildFailedError" in log
    f = top(log)
    assert "LookupError" in f.title and "ChildFailedError" not in f.title


def test_segfault_reported_by_bash_and_by_faulthandler():
    # a command followed by another, so bash forks it and reports how it ended
    out = subprocess.run(["bash", "-c", f"{sys.executable} -c 'import ctypes; ctypes.string_at(0)'; echo rc=$?"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert "Segmentation fault" in out.stderr and f"rc={128 + signal.SIGSEGV}" in out.stdout
    f = top(out.stderr)
    assert (f.rule, f.category) == ("failure-crash-signal", "other") and "SIGSEGV" in f.title
    fh = output_of("import ctypes; ctypes.string_at(0)", cmd=[sys.executable, "-X", "faulthandler", "-c",
                                                              "import ctypes; ctypes.string_at(0)"])
    assert top(fh).rule == "failure-crash-signal"


# ---------------------------------------------------------------- launcher lines (installed templates)
def test_launcher_stop_from_outside_is_a_warning():
    # deepspeed/launcher/launch.py sigkill_handler after SIGTERM
    f = top("[2024-05-01 10:00:00,000] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 101\n"
            "[2024-05-01 10:00:00,001] [INFO] [launch.py:263:sigkill_handler] Main process received SIGTERM, exiting\n")
    assert (f.rule, f.severity) == ("failure-stopped-from-outside", "warning")


@pytest.mark.parametrize("line,sig,code", [
    ("srun: error: node12: task 3: Exited with exit code 2", None, 2),
    ("srun: error: node12: tasks 0-7: Killed", 9, None),
    ("srun: error: node12: task 1: Segmentation fault", 11, None),
])
def test_srun_task_lines(line, sig, code):
    ev = next(e for e in events_from_text(line + "\n") if e.kind == "process_exit")
    assert (ev.data["signal"], ev.data["exitcode"], ev.data["node"]) == (sig, code, "node12")


def test_silent_death_during_offload_partitioning_is_a_host_oom_suspect():
    # engine.py 'Creating ZeRO Offload', runtime/utils.py see_memory_usage, launch.py sigkill_handler
    log = ("[2024-05-01 10:00:00,000] [INFO] [logging.py:107:log_dist] [Rank 0] Creating ZeRO Offload\n"
           "CPU Virtual Memory:  used = 230.5 GB, percent = 91.6%\n"
           "[2024-05-01 10:01:00,000] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 101\n"
           "[2024-05-01 10:01:00,000] [INFO] [launch.py:253:sigkill_handler] Killing subprocess 102\n")
    f = top(log)
    assert (f.rule, f.category) == ("host-oom-suspect", "host_oom")
    assert "How sure that this is the host running out of RAM: high" in f.summary and "91.6%" in f.summary
    assert "ZeRO partitions" in f.title


def test_sigkill_while_loading_zero_checkpoints_is_sure():
    log = ("[2024-05-01 10:00:00,000] [INFO] [engine.py:4770:_load_zero_checkpoint] loading 8 zero partition checkpoints for rank 3\n"
           "[2024-05-01 10:00:09,000] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python', '-u', 'train.py', '--local_rank=3'] exits with return code = -9\n")
    f = top(log)
    assert f.rule == "host-oom-killed" and "How sure: high" in f.summary and "loading a checkpoint" in f.summary


def test_sigkill_alone_is_medium():
    f = top("[2024-05-01 10:00:09,000] [ERROR] [launch.py:259:sigkill_handler] ['python', 'train.py', '--local_rank=0'] exits with return code = -9\n")
    assert f.rule == "host-oom-killed" and "How sure: medium" in f.summary


RAISE_CUDA_OOM = ahead("import torch\nraise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 "
                       "has a total capacity of 8.00 GiB of which 1.00 MiB is free. Of the allocated memory 7.00 GiB is "
                       "allocated by PyTorch, and 100.00 MiB is reserved by PyTorch but unallocated.')")


def test_specific_rule_hides_the_fallback():
    log = output_of(RAISE_CUDA_OOM)
    fs = diagnose(log)
    assert fs[0].category == "oom" and not any(f.rule.startswith(("unexplained", "failure-")) for f in fs)


# ---------------------------------------------------------------- families from the installed raise sites
def _installed(rel: str, text: str) -> str:
    src = (SITE / rel).read_text()
    assert text in src, f"{text!r} is no longer in {rel}"
    return text


@pytest.mark.parametrize("rel,type_,text,family", [
    ("deepspeed/ops/op_builder/builder.py", "deepspeed.ops.op_builder.builder.MissingCUDAException",
     "CUDA_HOME does not exist, unable to compile CUDA op(s)", "environment"),
    ("torch/utils/cpp_extension.py", "RuntimeError", "Ninja is required to load C++ extensions", "environment"),
    ("torch/cuda/__init__.py", "AssertionError", "Torch not compiled with CUDA enabled", "environment"),
    ("deepspeed/runtime/engine.py", "deepspeed.runtime.zero.utils.ZeRORuntimeException",
     "You are using ZeRO-Offload with a client provided optimizer", "config"),
    ("deepspeed/launcher/runner.py", "RuntimeError", "Unable to proceed, no GPU resources available", "launcher"),
    ("transformers/integrations/deepspeed.py", "ValueError",
     "ZeRO inference only makes sense with ZeRO Stage 3 - please adjust your config", "config"),
])
def test_families_of_installed_messages(rel, type_, text, family):
    pytest.importorskip(rel.split("/")[0])
    assert classify(type_, _installed(rel, text)).name == family


def test_families_of_runtime_errors():
    assert classify("RuntimeError", "CUDA error: an illegal memory access was encountered").name == "hardware"
    assert classify("torch.distributed.DistBackendError", "NCCL error in: x, remote process exited").weight < 3
    assert classify("c10::DistBackendError", "").name == "comm"
    assert classify("torch.distributed.elastic.multiprocessing.errors.ChildFailedError", "").weight == 0
    assert classify("KeyError", "'labels'").name == "other"


# ---------------------------------------------------------------- dsdoctor run: real runs
TRAIN = str(Path(__file__).resolve().parent.parent / "dsdoctor" / "demo" / "train.py")


def _dsdoctor_run(out: Path, cmd: list[str], timeout: float = 180) -> tuple[int, str]:
    from multinode_helpers import kill_marked
    p = subprocess.Popen([sys.executable, "-m", "dsdoctor", "run", "--out", str(out), "--", *cmd],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**ENV, "DSDOCTOR_TEST_MARK": str(out)}, start_new_session=True)
    try:
        text, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        kill_marked(str(out))           # ranks a launcher started in sessions of their own
    return p.returncode, text


def _dsdoctor_run_ahead(cmd, timeout: float = 180) -> tuple[run_ahead.Ahead, Path]:
    """`_dsdoctor_run(out, cmd(), timeout)` listed to start one test ahead (tests/run_ahead.py), into a
    folder of its own: (the process, that run folder). `cmd` is called when it starts."""
    from multinode_helpers import kill_marked
    out = Path(run_ahead.scratch("dsdoctor-run")) / "run"
    a = run_ahead.register(("dsdoctor run", str(out)),
                           lambda: [sys.executable, "-m", "dsdoctor", "run", "--out", str(out), "--", *cmd()],
                           timeout=timeout, env={**ENV, "DSDOCTOR_TEST_MARK": str(out)}, merge=True,
                           cleanup=lambda: kill_marked(str(out)))
    return a, out


def _post_mortem(out: Path):
    """What `dsdoctor analyze DIR` finds in a run folder (the report `dsdoctor run` printed)."""
    from dsdoctor.sources.inputs import expand
    from dsdoctor.sources.logs import read_log
    d = Diagnoser()
    for inp in expand([str(out)]):
        d.feed_all(read_log(inp, []))
    return [f for f in d.finish() if f.severity != "info"]


# a SIGKILL the kernel's OOM-kill counters did not see (live/oom_counter.py); where none can be read, as before
_SIGKILL_RULE = "killed-from-outside" if read_oom_counts().readable() else "host-oom-killed"
KILLED_RUN = _dsdoctor_run_ahead(lambda: [sys.executable, TRAIN, "--steps", "20", "--fault", "sigkill", "--fault-step", "5"])


@pytest.mark.slow
def test_run_killed_by_sigkill_says_killed_signal_and_last_step():
    pytest.importorskip("deepspeed")
    p, out = KILLED_RUN[0].run(), KILLED_RUN[1]
    rc, text = p.returncode, p.stdout
    assert rc == 128 + signal.SIGKILL
    assert "No problems found" not in text
    assert "killed by SIGKILL" in text and "exit code 137" in text
    f = _post_mortem(out)[0]
    # the script SIGKILLs itself: not the OOM killer, as the kernel's counters tell (part BA) where they can be read
    assert f.rule == _SIGKILL_RULE and "killed by SIGKILL (dsdoctor run, exit code 137) at training step 4" in f.summary


RAISING_RUN = _dsdoctor_run_ahead(lambda: [sys.executable, TRAIN, "--steps", "20", "--fault", "raise", "--fault-step", "3"])


@pytest.mark.slow
def test_run_with_an_arbitrary_exception_is_an_unexplained_failure():
    pytest.importorskip("deepspeed")
    p = RAISING_RUN[0].run()
    rc, text = p.returncode, p.stdout
    assert rc == 1 and "No problems found" not in text
    assert "Unexplained failure: LookupError" in text and "console.log:" in text


@pytest.mark.slow
def test_run_hostfile_with_unreachable_host(tmp_path):
    pytest.importorskip("deepspeed")
    import shutil
    if not (shutil.which("deepspeed") or Path(sys.executable).with_name("deepspeed").exists()) or not shutil.which("ssh"):
        pytest.skip("needs the deepspeed runner and an ssh client")
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("127.0.0.3 slots=1\n127.0.0.4 slots=1\n")     # loopback: nothing listens on port 22
    ds = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
    rc, text = _dsdoctor_run(tmp_path / "run", [ds, "--hostfile", str(hostfile), TRAIN, "--steps", "2"], timeout=120)
    assert rc != 0 and "No problems found" not in text
    assert "launcher-ssh-unreachable" in text


def test_script_refusing_the_launchers_local_rank(tmp_path):
    # the deepspeed launcher passes --local_rank=N (launch.py); argparse refuses it and exits 2
    script = tmp_path / "train.py"
    script.write_text("import argparse\np = argparse.ArgumentParser()\np.add_argument('--steps', type=int)\np.parse_args()\n")
    log = output_of("", cmd=[sys.executable, str(script), "--local_rank=0", "--steps", "3"])
    f = top(log)
    assert (f.rule, f.category) == ("failure-environment-exception", "environment")
    assert any("--no_local_rank" in (fx.advice or "") for fx in f.fixes)


def _launcher_killed_rank_cmd() -> list[str]:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [_DS_RUNNER, "--num_gpus", "1", "--master_port", str(port), TRAIN, "--steps", "20", "--fault", "sigkill",
            "--fault-step", "5"]


_DS_RUNNER = __import__("shutil").which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
LAUNCHER_KILLED_RUN = _dsdoctor_run_ahead(_launcher_killed_rank_cmd) if Path(_DS_RUNNER).exists() else None


@pytest.mark.slow
def test_deepspeed_launcher_rank_killed_by_sigkill():
    pytest.importorskip("deepspeed")
    if LAUNCHER_KILLED_RUN is None:
        pytest.skip("needs the deepspeed runner")
    p, out = LAUNCHER_KILLED_RUN[0].run(), LAUNCHER_KILLED_RUN[1]
    rc, text = p.returncode, p.stdout
    assert rc != 0 and "exits with return code = -9" in text
    f = _post_mortem(out)[0]
    assert f.rule == _SIGKILL_RULE and "killed by SIGKILL (launcher, exit code -9) at training step" in f.summary


def test_a_caught_exception_the_run_survived_is_not_a_failure():
    # a real traceback printed by traceback.print_exc(), then training goes on (DeepSpeed's step line format)
    p = subprocess.run([sys.executable, "-c",
                        "import traceback\ntry:\n    {}['shard']\nexcept KeyError:\n    traceback.print_exc()\n"
                        "for s in range(1, 8):\n    print(f'[2024-05-01 10:00:0{s},000] [INFO] [logging.py:128:log_dist] [Rank 0] "
                        "step={s}, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]', flush=True)"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0 and "KeyError: 'shard'" in p.stderr
    assert [f for f in diagnose(p.stderr + p.stdout) if f.severity != "info"] == []
    # the same traceback as the last thing the run printed is a failure
    assert top(p.stdout + p.stderr).rule == "unexplained-failure"


def test_run_command_exiting_non_zero_without_traceback(tmp_path):
    rc, text = _dsdoctor_run(tmp_path / "run", [sys.executable, "-c", "import sys; print('step 1'); sys.exit(3)"], timeout=60)
    assert rc == 3 and "No problems found" not in text
    f = _post_mortem(tmp_path / "run")[0]
    assert f.rule == "unexplained-failure" and "exit code 3" in f.title and "The command exited with code 3" in f.summary


def test_a_cxx_exception_reaching_terminate_is_reported_with_its_what_message(tmp_path):
    # a real libstdc++ terminate: the C++ exception's type on one line, its what() on the next,
    # then bash's report of the SIGABRT that terminate ends the process with
    src = tmp_path / "boom.cpp"
    src.write_text('#include <stdexcept>\nint main() { throw std::runtime_error("Failed to open shared memory '
                   'segment /torch_42"); }\n')
    try:
        subprocess.run(["g++", "-o", str(tmp_path / "boom"), str(src)], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"no C++ compiler: {e}")
    text = output_of("", cmd=["bash", "-c", f"{tmp_path / 'boom'}; exit 1"])
    assert "what():" in text and "Aborted" in text, text
    f = top(text)
    assert f.rule == "unexplained-failure" and "Failed to open shared memory segment" in f.summary, f
    assert not any(g.rule == "failure-crash-signal" for g in diagnose(text))


# torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp (CUDA builds only): the watchdog's timeout is
# thrown as c10::DistBackendError from the watchdog thread, which std::terminate()s the process;
# faulthandler then reports the SIGABRT and torchrun the exit code -6.
NCCL_WATCHDOG_ABORT = """\
[rank1]:[E1205 10:00:00.000000 1234 ProcessGroupNCCL.cpp:1595] [PG ID 0 PG GUID 0(default_pg) Rank 1] Process group watchdog thread terminated with exception: [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600001 milliseconds before timing out.
terminate called after throwing an instance of 'c10::DistBackendError'
  what():  [PG ID 0 PG GUID 0(default_pg) Rank 1] Process group watchdog thread terminated with exception: [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600001 milliseconds before timing out.
Fatal Python error: Aborted
[2026-12-05 10:00:05,000] torch.distributed.elastic.multiprocessing.api: [ERROR] failed (exitcode: -6) local_rank: 1 (pid: 1234) of binary: /usr/bin/python
"""


def test_the_nccl_watchdogs_abort_is_a_communication_timeout_not_a_native_crash():
    f = top(NCCL_WATCHDOG_ABORT)
    assert f.category == "comm_stall", f
    assert not any(g.rule == "failure-crash-signal" for g in diagnose(NCCL_WATCHDOG_ABORT))


# torch 2.0-2.2 (ProcessGroupNCCL.cpp: the watchdog's timeout thrown as std::runtime_error), in a log
# whose file name gives it rank 0 while the what() names rank 3: still one chain, the watchdog's
NCCL_WATCHDOG_ABORT_2_1 = """\
[E ProcessGroupNCCL.cpp:475] [Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=8421, OpType=_ALLGATHER_BASE, NumelIn=4194304, NumelOut=33554432, Timeout(ms)=1800000) ran for 1800212 milliseconds before timing out.
[E ProcessGroupNCCL.cpp:489] Some NCCL operations have failed or timed out. Due to the asynchronous nature of CUDA kernels, subsequent GPU operations might run on corrupted/incomplete data.
[E ProcessGroupNCCL.cpp:495] To avoid data inconsistency, we are taking the entire process down.
terminate called after throwing an instance of 'std::runtime_error'
  what():  [Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=8421, OpType=_ALLGATHER_BASE, NumelIn=4194304, NumelOut=33554432, Timeout(ms)=1800000) ran for 1800212 milliseconds before timing out.
"""


def test_the_watchdogs_what_joins_its_terminate_line_whatever_rank_the_file_name_gave(tmp_path):
    from dsdoctor.api import diagnose_inputs, usable_inputs
    for name in ("run.log", "train_rank0.log"):
        (tmp_path / name).write_text(NCCL_WATCHDOG_ABORT_2_1)
        inputs, warnings = usable_inputs([str(tmp_path / name)])
        fs = [f for f in diagnose_inputs(inputs, warnings).findings if f.severity != "info"]
        assert fs and fs[0].category == "comm_stall", (name, fs)
        assert not any(f.rule == "unexplained-failure" for f in fs), (name, fs)
        (tmp_path / name).unlink()


# Open MPI help-mpi-api.txt [mpi-abort]
MPI_ABORT = """\
--------------------------------------------------------------------------
MPI_ABORT was invoked on rank 3 in communicator MPI_COMM_WORLD
with errorcode 1.

NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.
--------------------------------------------------------------------------
"""
TRACEBACK = """\
Traceback (most recent call last):
  File "train.py", line 30, in <module>
    main()
ValueError: the tokenizer has no pad token
"""


def test_mpi_abort_names_the_rank_that_called_it():
    f = top(MPI_ABORT)
    assert f.rule == "mpi-rank-exited-first" and f.ranks == [3], f


def test_the_exception_is_the_cause_and_the_launchers_first_exit_its_echo():
    fs = [f for f in diagnose(TRACEBACK + MPI_ABORT) if f.severity != "info"]
    assert fs[0].rule == "unexplained-failure" and "pad token" in fs[0].summary, fs
    mpi = next(f for f in fs if f.rule == "mpi-rank-exited-first")
    assert mpi.consequence_of == "unexplained-failure"


@pytest.mark.parametrize("text", [
    "    State:          Terminated\n      Reason:       OOMKilled\n      Exit Code:    137\n",     # kubectl describe pod
    "NAME              READY   STATUS      RESTARTS   AGE\ntrainer-3         0/1     OOMKilled   2          14m\n",
    '        "OOMKilled": true,\n        "Dead": false,\n',                                   # docker inspect
])
def test_a_container_killed_at_its_memory_limit(text):
    f = top(text)
    assert f.rule == "host-oom-killed-cgroup", f


def test_docker_saying_the_container_was_not_oom_killed_is_not_a_failure():
    assert not [f for f in diagnose('        "OOMKilled": false,\n        "ExitCode": 0,\n') if f.severity != "info"]


def _one_torchrun_rank(tmp_path: Path, source: str, timeout: float = 240) -> str:
    """`source` run as one rank under torchrun (real DeepSpeed on the CPU); its output. torchrun
    starts its rank in a session of its own: at a timeout the rank is found by its script's path
    and killed too (it was left behind, waiting, when only torchrun was killed). A source listed
    with `_one_torchrun_rank_ahead` was started one test ahead, the same way."""
    from multinode_helpers import kill_marked
    early = run_ahead.registered(("torchrun rank", source, timeout))
    if early is not None:
        try:
            p = early.run()
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"torchrun task.py did not end within {timeout} s:\n{(e.output or '')[-3000:]}")
        assert p.returncode != 0, p.stdout
        return p.stdout
    script = tmp_path / "task.py"
    script.write_text(source)
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                          str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**ENV, "DSDOCTOR_TEST_MARK": str(script)}, start_new_session=True)
    try:
        text, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        text = p.communicate()[0]
        pytest.fail(f"torchrun {script.name} did not end within {timeout} s:\n{text[-3000:]}")
    finally:
        kill_marked(str(script))
    assert p.returncode != 0, text
    return text


def _one_torchrun_rank_ahead(source: str, timeout: float = 240) -> str:
    """`source`, after listing `_one_torchrun_rank(_, source, timeout)` to start one test ahead
    (tests/run_ahead.py), its script in a folder of its own."""
    from multinode_helpers import kill_marked
    script = Path(run_ahead.scratch("torchrun")) / "task.py"
    run_ahead.register(("torchrun rank", source, timeout),
                       [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", str(script)],
                       timeout=timeout, env={**ENV, "DSDOCTOR_TEST_MARK": str(script)}, merge=True,
                       setup=lambda: script.write_text(source), cleanup=lambda: kill_marked(str(script)))
    return source


# The scripts below train with DeepSpeed's basic optimizer on torch's AdamW ("torch_adam": True):
# its FusedAdam would first JIT-compile a C++ op on the CPU (minutes on 2 cores, under each test's
# time limit), and the failures they provoke are the engine's, not the optimizer's.
ZERO3_DIRECT_USE = """
import sys, torch, deepspeed
import torch.nn.functional as F
deepspeed.init_distributed(dist_backend="gloo")
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(64, 16)
        self.lin = torch.nn.Linear(16, 16)
    def forward(self, ids):
        return self.lin(self.embed(ids)).sum()
m = M()
cfg = {"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
       "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}
engine, _, _, _ = deepspeed.initialize(model=m, model_parameters=m.parameters(), config=cfg)
ids = torch.randint(0, 64, (2, 4))
loss = engine(ids); engine.backward(loss); engine.step()
F.embedding(ids, engine.module.embed.weight)      # outside the engine: the weight is partitioned
"""
_one_torchrun_rank_ahead(ZERO3_DIRECT_USE)


@pytest.mark.timeout(300)
def test_a_zero3_weight_read_outside_the_engine(tmp_path):
    text = _one_torchrun_rank(tmp_path, ZERO3_DIRECT_USE)
    assert "'weight' must be 2-D" in text, text[-3000:]
    f = top(text)
    assert f.rule == "zero3-partitioned-param-used" and f.ranks == [0], f


@pytest.mark.parametrize("message", [
    "RuntimeError: CUDA error: invalid device ordinal",
    "RuntimeError: CUDA error: all CUDA-capable devices are busy or unavailable",
    "RuntimeError: Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before calling "
    "NumCudaDevices() that might have already set an error? Error 804: forward compatibility was attempted on non "
    "supported HW",
])
def test_a_gpu_the_process_cannot_use_is_an_environment_problem(message):
    assert classify("RuntimeError", message.split(": ", 1)[1]).category == "environment"
    # a busy GPU and a missing ordinal have their own rules (compute mode; one rank per visible GPU)
    own = {"busy": "env-cuda-devices-busy", "ordinal": "env-invalid-device-ordinal"}
    assert top(message + "\n").rule == next((r for w, r in own.items() if w in message), "failure-environment-exception")


ZERO2_REENTRANT_SHARED = """
import torch, deepspeed
from torch.utils.checkpoint import checkpoint
deepspeed.init_distributed(dist_backend="gloo")
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 1)
    def forward(self, x):          # one module in two reentrant checkpointed segments
        x = checkpoint(self.shared, x, use_reentrant=True)
        x = checkpoint(self.shared, x, use_reentrant=True)
        return self.head(x).sum()
m = M()
cfg = {"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
       "zero_optimization": {"stage": 2}}
engine, _, _, _ = deepspeed.initialize(model=m, model_parameters=m.parameters(), config=cfg)
loss = engine(torch.randn(2, 16, requires_grad=True)); engine.backward(loss); engine.step()
"""
_one_torchrun_rank_ahead(ZERO2_REENTRANT_SHARED)


@pytest.mark.timeout(300)
def test_zero2_gradient_reduced_twice_under_reentrant_checkpointing(tmp_path):
    text = _one_torchrun_rank(tmp_path, ZERO2_REENTRANT_SHARED)
    assert "has already been reduced" in text, text[-3000:]
    f = top(text)
    assert f.rule == "log-cfg-grad-reduced-twice" and "shared." in f.title, f
    assert any("use_reentrant" in (fx.advice or "") for fx in f.fixes)


BF16_FLOAT_BATCH = """
import torch, deepspeed
deepspeed.init_distributed(dist_backend="gloo")
m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 1))
cfg = {"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
       "bf16": {"enabled": True}, "zero_optimization": {"stage": 1}}
engine, _, _, _ = deepspeed.initialize(model=m, model_parameters=m.parameters(), config=cfg)
loss = engine(torch.randn(2, 16)).sum()      # a float32 batch into the bf16 engine
"""
_one_torchrun_rank_ahead(BF16_FLOAT_BATCH)


@pytest.mark.timeout(300)
def test_a_float32_batch_into_a_bf16_engine(tmp_path):
    text = _one_torchrun_rank(tmp_path, BF16_FLOAT_BATCH)
    assert "must have the same dtype" in text, text[-3000:]
    f = top(text)
    assert f.rule == "failure-dtype-mismatch" and f.category == "config_error", f


# ---------------------------------------------------------------- re-raised worker errors, meta weights, AMP, glibc (real processes)
WORKER_KEY_ERROR = ahead("import torch\nfrom torch.utils.data import DataLoader\n"
                         "class D(torch.utils.data.Dataset):\n    def __len__(self): return 4\n"
                         "    def __getitem__(self, i): return {}['input_ids']\n"
                         "for b in DataLoader(D(), num_workers=1): pass\n")


def test_a_dataloader_worker_exception_quotes_the_workers_own_error():
    """torch/_utils.py ExceptionWrapper: 'Caught KeyError in DataLoader worker process 0.' wraps the
    worker's traceback; its exception is the cause and the evidence quotes it."""
    log = "step 3 loss 2.0\n" + output_of(WORKER_KEY_ERROR)
    assert "Caught KeyError in DataLoader worker process 0" in log
    f = top(log)
    assert f.evidence[0].text == "KeyError: 'input_ids'", f.evidence
    assert classify("KeyError", "Caught KeyError in DataLoader worker process 0.").name == "wrapper"


META_WEIGHTS_TO_CPU = ahead("import torch\ntorch.nn.Linear(4, 4, device='meta').to('cpu')")


def test_weights_left_on_the_meta_device_are_named():
    log = output_of(META_WEIGHTS_TO_CPU)
    f = top(log)
    assert (f.rule, f.category) == ("meta-tensor-not-loaded", "config_error"), (f.rule, f.title)
    assert "Cannot copy out of meta tensor" in f.evidence[0].text


AMP_FP16_WEIGHTS = ahead("import torch\nm = torch.nn.Linear(4, 4).half()\nopt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
                         "s = torch.amp.GradScaler('cpu')\ns.scale(m(torch.randn(2, 4).half()).sum()).backward()\n"
                         "s.unscale_(opt)\n")


def test_amp_refusing_fp16_weights_is_a_config_error():
    log = "step 1 loss 2.0\n" + output_of(AMP_FP16_WEIGHTS)
    f = top(log)
    assert (f.rule, f.category) == ("amp-fp16-trainable-weights", "config_error"), (f.rule, f.title)


def test_glibc_heap_corruption_is_a_native_crash():
    """glibc's malloc check prints its message and abort()s: often the only line a log keeps."""
    log = "step 5 loss 2.0\n" + output_of(
        "import ctypes\nlibc = ctypes.CDLL('libc.so.6')\nlibc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\np = libc.malloc(32)\nlibc.free(p); libc.free(p)\n")
    assert "double free" in log
    f = top(log)
    assert f.rule == "failure-crash-signal" and "SIGABRT" in f.title, (f.rule, f.title)
    assert "double free" in f.evidence[0].text


@pytest.mark.parametrize("rel,site,type_,text,family", [
    # DeepSpeed refusing a combination of its features, wherever in its runtime (the installed texts)
    ("deepspeed/runtime/engine.py", "_validate_zero3_moe_compatibility", "AssertionError", "MoE not supported with Stage 3",
     "config"),
    ("deepspeed/runtime/engine.py", "set_train_batch_size", "ValueError",
     "Train batch size must be divisible by micro-batch data parallelism", "config"),
    ("deepspeed/runtime/zero/stage3.py", "__init__", "ValueError", "Muon and reduce scatter cannot be used together", "config"),
    ("deepspeed/runtime/base_optimizer.py", "_configure_master_weights", "AssertionError",
     "fp16_master_weights_and_gradients and bf16_master_weights_and_gradients are mutually exclusive", "config"),
    # an error of one of its config modules, whatever its wording
    ("deepspeed/runtime/zenflow/zenflow_config.py", "validate_fields", "ValueError", "full_warm_up_rounds must be an integer",
     "config"),
    # not a configuration: a version, an internal check
    ("deepspeed/runtime/engine.py", "compile", "RuntimeError", "compile is not supported in your version of PyTorch", "other"),
    ("deepspeed/runtime/zero/stage_1_and_2.py", "reduce_ipg_grads", "AssertionError",
     "more than 1 param in ipg bucket, this shouldn't happen", "other"),
    ("deepspeed/runtime/lr_schedules.py", "get_lr", "AssertionError", "need to call step() first", "other"),
])
def test_deepspeed_refusing_its_features_is_the_config(rel, site, type_, text, family):
    pytest.importorskip("deepspeed")
    assert classify(type_, _installed(rel, text), raise_site=f"{rel}:{site}").name == family


@pytest.mark.parametrize("rel,site,type_,text,family", [
    # torch.distributed used before it was set up: a launch problem, not a lost peer
    ("torch/distributed/distributed_c10d.py", "_get_default_group", "ValueError",
     "Default process group has not been initialized, ", "dist_setup"),
    ("torch/distributed/rendezvous.py", "_env_rendezvous_handler", "ValueError",
     "environment variable {var} expected, but not set", "dist_setup"),
    # distributed_c10d.py's own argument checks are the caller's mistake, not communication
    ("torch/distributed/distributed_c10d.py", "_canonicalize_group_rank", "ValueError",
     "Can't specify both group_rank and global_rank", "other"),
])
def test_torch_distributed_set_up_and_argument_errors_are_no_lost_peer(rel, site, type_, text, family):
    msg = _installed(rel, text)
    if msg.startswith("Default process group"):
        msg += "please make sure to call init_process_group."     # the source splits the literal in two
    if "{var}" in msg:
        msg = "Error initializing torch.distributed using env:// rendezvous: " + msg.replace("{var}", "MASTER_ADDR")
    assert classify(type_, msg, raise_site=f"/venv/lib/python3.11/site-packages/{rel}:{site}").name == family


@pytest.mark.parametrize("rel,site,type_,text", [
    # the layers above DeepSpeed refuse settings the same way (their installed texts)
    ("accelerate/accelerator.py", "prepare_model", "ValueError",
     "You can't train a model that has been loaded with `device_map='auto'` in any distributed mode."),
    ("transformers/trainer.py", "__init__", "ValueError",
     "Using --fsdp xxx together with --deepspeed is not possible, deactivate one of those flags."),
])
def test_hf_and_accelerate_refusing_a_setting_is_the_config(rel, site, type_, text):
    pytest.importorskip(rel.split("/")[0])
    assert classify(type_, _installed(rel, text), raise_site=f"/venv/lib/python3.11/site-packages/{rel}:{site}").name == "config"


# ---------------------------------------------------------------- the set-up's wiring, refused for real
DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
import torch.utils.checkpoint as cp
dist.init_process_group("gloo", rank=0, world_size=1)
class M(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.a = torch.nn.Linear(4, 4); s.b = torch.nn.Linear(4, 4)
    def forward(s, x):
        if sys.argv[1] == "unused":
            return s.a(x)                                   # s.b never gets a gradient
        return cp.checkpoint(s.a, x, use_reentrant=True) + cp.checkpoint(s.a, x, use_reentrant=True)
m = torch.nn.parallel.DistributedDataParallel(M(), find_unused_parameters=(sys.argv[1] == "twice"))
for step in range(3):
    m(torch.randn(2, 4, requires_grad=True)).sum().backward()
"""


def _wiring_env() -> dict:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


WIRING = {how: run_ahead.QUEUE.add([sys.executable, "-c", "import torch; torch.zeros(1).sum().backward()\n"
                                    if how == "nograd" else DDP_SCRIPT, how], timeout=120, env=_wiring_env)
          for how in ("unused", "twice", "nograd")}       # started one test ahead (tests/run_ahead.py)


@pytest.mark.parametrize("how, rule", [("unused", "ddp-unused-parameters"), ("twice", "ddp-ready-twice"),
                                       ("nograd", "loss-not-connected-to-weights")])
def test_the_set_ups_wiring_refused_by_torch_for_real(how, rule):
    p = WIRING[how].run()       # [python, -c, the script, how], a free MASTER_PORT, as subprocess.run
    assert p.returncode != 0
    from dsdoctor.pipeline import diagnose as diagnose_events
    found = [f for f in diagnose_events(events_from_text(p.stdout + p.stderr)) if f.severity != "info"]
    assert found and found[0].rule == rule and found[0].category == "config_error", [f.rule for f in found]


# ---------------------------------------------------------------- a process's own word that it got a stop signal
def _hf_steps(n: int, t0: str = "10:00") -> str:
    return "".join(f"{{'loss': {2.0 - i / 100:.4f}, 'grad_norm': 0.5, 'learning_rate': 5e-05, 'epoch': {i / 100:.2f}}}\n"
                   for i in range(n))


def test_a_scripts_stop_signal_line_is_a_stop_from_outside():
    # transformers/trainer_jit_checkpoint.py: _sigterm_handler's own log line
    said = _installed("transformers/trainer_jit_checkpoint.py", "SIGTERM received, will request JIT checkpoint after")
    f = top(_hf_steps(12) + f"[INFO|trainer_jit_checkpoint.py:34] 2026-12-06 10:00:00,000 >> {said} 3s\n")
    assert f.rule == "failure-stopped-from-outside" and "SIGTERM" in f.title
    # a handler of the user's script, after a silence of hours: a hang that was stopped
    timed = "".join(f"2024-10-10 10:{i:02d}:00 INFO step {i * 10} loss {2 - i / 100:.2f}\n" for i in range(30))
    f = top(timed + "2024-10-10 13:00:00 WARNING Received SIGTERM, shutting down\n")
    assert f.rule == "stopped-while-hung" and "Received SIGTERM" in f.evidence[0].text


@pytest.mark.parametrize("line", [
    "JIT checkpoint signal handler registered for SIGTERM",          # transformers, at start
    "Restored original SIGTERM handler after training completion",  # transformers, at the end
    "[rank 0] got SIGUSR1: saving a checkpoint and exiting",         # a planned stop (Slurm --signal)
    "Sending process 4242 closing signal SIGTERM",                    # torchelastic stopping its workers
])
def test_signal_words_that_are_no_stop(line):
    fs = [f for f in diagnose(_hf_steps(12) + line + "\n" + _hf_steps(3)) if f.severity != "info"]
    assert not fs, [f.rule for f in fs]


def test_a_notebook_kernel_that_died_is_a_silent_death():
    # JupyterLab's dialog (jupyterlab 4.6 bundle: 'The kernel for %1 appears to have died. It will restart
    # automatically.') pasted after the training cell's output: the kernel vanished, most often the OOM killer
    f = top(_hf_steps(5) + "  3%|▎         | 30/1000 [01:02<33:30,  2.07s/it]\nKernel Restarting\n"
            "The kernel for train.ipynb appears to have died. It will restart automatically.\n")
    assert f.rule == "host-oom-suspect" and f.title.startswith("The notebook kernel died")


def test_sampling_from_non_finite_logits_is_a_nan():
    # torch.multinomial under generate(do_sample=True): aten Distributions.cpp's message (in libtorch_cpu here)
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError) as e:
        torch.multinomial(torch.tensor([float("nan"), 1.0]), 1)
    f = top("step 1 loss 2.1\nstep 2 loss 9.7\nTraceback (most recent call last):\n  File \"rl.py\", line 40, in <module>\n"
            "    out = model.generate(**batch, do_sample=True)\n" f"RuntimeError: {e.value}\n")
    assert f.category == "nan_loss" and "probability tensor" in f.evidence[0].text
