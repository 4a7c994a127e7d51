"""Failures no rule knows and the healthy noise around them (probes part AR, docs/probes.md): the
decisive line and its rank, and no alarm for what does not stop a run.

Fast: text in, no DeepSpeed needed. The texts are the installed libraries' own templates (cited per test).
"""
from __future__ import annotations

from diagnose_text import events, top

SP = "/usr/lib/python3.11/site-packages"
DS_OK = ("[2026-11-30 09:17:00,100] [INFO] [launch.py:285:main] Process 4100 exits successfully.\n"
         "[2026-11-30 09:17:00,100] [INFO] [launch.py:285:main] Process 4101 exits successfully.\n")
DS_FAIL = ("[2026-11-30 09:17:00,100] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python3', '-u', 'train.py', "
           "'--local_rank=1'] exits with return code = 1\n")


def hf_dicts(n: int, start: int = 0) -> str:
    return "".join(f"{{'loss': {2.0 - (start + i) * 0.01:.4f}, 'grad_norm': 1.2, 'learning_rate': 5e-05, "
                   f"'epoch': {(start + i) / 100:.2f}}}\n" for i in range(n))


def tb(frames: list[tuple[str, str, str]], exc: str, prefix: str = "") -> str:
    out = ["Traceback (most recent call last):"]
    for i, (path, func, code) in enumerate(frames):
        out += [f'  File "{path}", line {10 + i}, in {func}', f"    {code}"]
    return "".join(f"{prefix}{line}\n" for line in out + [exc])


# --- the loss a script prints: a bound or a record is no reading
def test_a_bound_or_a_best_loss_at_inf_is_no_nan_loss():
    assert top("detect_anomaly=False, overflow_check=True, max_loss=inf\nbest_val_loss: inf\nmin_loss = inf\n") is None


def test_a_loss_after_a_bound_on_the_same_line_is_read():
    f = top("step 60 max_loss=10.0 loss=nan grad_norm=nan\nstep 70 max_loss=10.0 loss=nan grad_norm=nan\n")
    assert f is not None and f.category == "nan_loss"


# --- a caught exception in a run whose progress names no step (transformers' log dicts)
CAUGHT = tb([("/work/callbacks.py", "on_step_end", "self.table.add_data(s['prompt'], s['completion'])")],
            "KeyError: 'completion'")


def test_a_logged_exception_then_three_log_dicts_is_survived():
    assert top(hf_dicts(5) + "2026-11-30 09:13:30 ERROR callbacks: callback LogSamples failed\n" + CAUGHT
               + hf_dicts(3, 5) + DS_OK) is None


def test_an_exception_followed_by_fewer_log_dicts_ended_the_run():
    f = top(hf_dicts(5) + CAUGHT + hf_dicts(1, 5) + DS_FAIL)
    assert f is not None and f.rule == "unexplained-failure" and "KeyError: 'completion'" in f.evidence[0].text


# --- torch.multiprocessing.spawn: the failed process's index is its rank
def test_spawn_process_raised_lends_its_index_to_the_traceback():
    # torch/multiprocessing/spawn.py ProcessContext.join: '\n\n-- Process {error_index:d} terminated with the following error:\n'
    text = (tb([("/work/launch.py", "<module>", "mp.spawn(worker, nprocs=2)"),
                (f"{SP}/torch/multiprocessing/spawn.py", "join", "raise ProcessRaisedException(msg, error_index, failed_process.pid)")],
               "torch.multiprocessing.spawn.ProcessRaisedException: ")
            + "\n-- Process 1 terminated with the following error:\n"
            + tb([(f"{SP}/torch/multiprocessing/spawn.py", "_wrap", "fn(i, *args)"),
                  ("/work/launch.py", "worker", "loss = batch['labels']")], "KeyError: 'labels'"))
    (exc,) = [e for e in events(text, "exception") if e.data["name"] == "KeyError"]
    assert exc.rank == 1
    f = top(text)
    assert f.rule == "unexplained-failure" and f.ranks == [1] and "KeyError: 'labels'" in f.evidence[0].text


# --- a batch's own code raising under the DataLoader's fetch is a crash, not a wait
FETCH = [("/work/train.py", "<module>", "for batch in loader:"),
         (f"{SP}/torch/utils/data/dataloader.py", "__next__", "data = self._next_data()"),
         (f"{SP}/torch/utils/data/dataloader.py", "_next_data", "data = self._dataset_fetcher.fetch(index)"),
         (f"{SP}/torch/utils/data/_utils/fetch.py", "fetch", "return self.collate_fn(data)"),
         ("/work/collate.py", "collate", "labels = torch.stack([b['labels'] for b in batch])")]
PEER = tb([("/work/train.py", "<module>", "engine.backward(loss)"),
           (f"{SP}/torch/distributed/distributed_c10d.py", "all_reduce", "work.wait()")],
          "RuntimeError: [/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:40121",
          prefix="[rank0]: ")


def test_a_collate_fn_error_on_one_rank_is_the_failure_not_a_dataloader_wait():
    f = top(tb(FETCH, "KeyError: 'labels'", prefix="[rank1]: ") + PEER + DS_FAIL)
    assert f.rule == "unexplained-failure" and f.ranks == [1] and "KeyError: 'labels'" in f.evidence[0].text


def test_ctrl_c_in_a_stuck_dataset_read_is_still_the_rank_the_others_wait_for():
    stuck = FETCH[:-1] + [("/work/data.py", "__getitem__", "buf = f.read()")]
    peer = PEER.replace("RuntimeError: [/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by "
                        "peer [127.0.0.1]:40121", "KeyboardInterrupt")
    f = top(tb(stuck, "KeyboardInterrupt", prefix="[rank1]: ") + peer)
    assert f.rule == "rank-stuck-in-dataloader" and 1 in f.ranks


# --- glog's failure signal handler: the crash's own line, not the launcher's exit code
def test_glog_failure_signal_line_is_the_crash():
    # glog src/signalhandler.cc DumpSignalInfo
    text = ("step 20 loss 2.1\n"
            "*** Aborted at 1764493952 (unix time) try \"date -d @1764493952\" if you are using GNU date ***\n"
            "*** SIGSEGV (@0x0) received by PID 4100 (TID 0x7f2b6f1ff740) from PID 0; stack trace: ***\n"
            "    @     0x7f2b3c11d2a4 my_kernels::launch_topk()\n"
            "[2026-11-30 09:17:00,100] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python3', '-u', 'train.py', "
            "'--local_rank=0'] exits with return code = -11\n")
    f = top(text)
    assert f.rule == "failure-crash-signal" and "*** SIGSEGV (@0x0) received by PID 4100" in f.evidence[0].text


def test_glog_sigterm_is_not_a_crash():
    # a stop from outside (its sender's pid is another process), as abseil's SIGTERM
    assert not events("*** SIGTERM (@0x3e8000012ab) received by PID 4100 (TID 0x7f) from PID 4779; stack trace: ***\n",
                      "process_exit")


# --- torch._dynamo's BackendCompilerFailed: the backend's own exception is on the next line
def test_backend_compiler_failed_quotes_the_exception_its_backend_raised():
    # torch/_dynamo/exc.py BackendCompilerFailed: f"backend={name!r} raised:\n{type(inner).__name__}: {inner}"
    wrapper = tb([("/work/train.py", "<module>", "out = model(x)"),
                  (f"{SP}/torch/_dynamo/output_graph.py", "_call_user_compiler", "raise BackendCompilerFailed(")],
                 "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:")
    f = top(wrapper + "CompilationError: at 14:22:\n\nSet TORCHDYNAMO_VERBOSE=1 for the internal stack trace\n")
    assert f.rule == "failure-torch-compile" and "CompilationError: at 14:22:" in [e.text for e in f.evidence]
    oom = top(wrapper + "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                        "capacity of 79.19 GiB of which 1.06 GiB is free.\n")
    assert oom.category == "oom"        # what the backend ran into decides when it says more


# --- a runner's own word on how the run ended, when the run printed nothing about it
def test_github_actions_and_make_statuses_end_the_run():
    # actions/runner: 'Process completed with exit code {0}.'; GNU make job.c child_error: '[target] Error N'
    for ending in ("##[error]Process completed with exit code 139.", "make: *** [Makefile:12: train] Error 139"):
        f = top("step 10 loss 2.31\nstep 20 loss 2.27\n" + ending + "\n")
        assert f.rule == "failure-crash-signal" and ending in f.evidence[0].text, ending
    # the web view's form reads as an exception line too ('Error: ...'): quoted either way
    f = top("step 10 loss 2.31\nError: Process completed with exit code 139.\n")
    assert f.category == "other" and "exit code 139" in f.evidence[0].text
    f = top("step 10 loss 2.31\nmake[1]: *** [train] Error 2\n")
    assert f.rule == "unexplained-failure" and "Error 2" in f.evidence[0].text


def test_the_runner_status_does_not_hide_the_traceback_above_it():
    f = top(tb([("/work/train.py", "<module>", "main()")], "ValueError: bad shard header")
            + "##[error]Process completed with exit code 1.\n")
    assert "ValueError: bad shard header" in f.evidence[0].text
