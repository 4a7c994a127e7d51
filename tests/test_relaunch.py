"""Logs that hold several runs or several hosts' logs (detect/relaunch.py), and the times of
untimed progress (JSON-lines records, tqdm's elapsed counter against a stated time)."""
from __future__ import annotations

from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text


def findings(text: str):
    return diagnose(events_from_text(text, "run.log"))


def problems(text: str):
    return [f for f in findings(text) if f.severity != "info"]


def ds_steps(hour: int, start: int, n: int) -> str:
    return "".join(f"[2024-01-01 {hour:02d}:{i // 2:02d}:{i % 2 * 30:02d},000] [INFO] [logging.py:107:log_dist] "
                   f"[Rank 0] step={start + 10 * i}, skipped=0, lr=[2e-05], mom=[(0.9, 0.999)]\n" for i in range(n))


BANNER = "[2024-01-01 {h:02d}:00:00,000] [INFO] [__init__.py:128:initialize] DeepSpeed info: version=0.14.2, git-hash=x, git-branch=y\n"
ECC = ("Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n    engine.step()\n"
       "RuntimeError: CUDA error: uncorrectable ECC error encountered\n")


def test_a_crash_before_a_relaunch_that_trained_on_is_history():
    text = BANNER.format(h=1) + ds_steps(1, 10, 6) + ECC + BANNER.format(h=3) + ds_steps(3, 70, 20)
    assert not problems(text)
    earlier = [f for f in findings(text) if f.title.startswith("Earlier run")]
    assert earlier and earlier[0].category == "hardware" and earlier[0].severity == "info"


def test_a_crash_in_the_last_run_stays_the_finding():
    text = BANNER.format(h=1) + ds_steps(1, 10, 6) + ECC + BANNER.format(h=3) + ds_steps(3, 70, 20) + ECC
    top = problems(text)[0]
    assert top.category == "hardware" and not top.title.startswith("Earlier run")


def test_another_hosts_log_pasted_after_is_not_a_relaunch():
    # host B's banner is earlier than host A's last step: the same time span, not a later run
    text = BANNER.format(h=1) + ds_steps(1, 10, 6) + ECC + BANNER.format(h=1) + ds_steps(1, 10, 20)
    top = problems(text)[0]
    assert top.category == "hardware" and not top.title.startswith("Earlier run")


def test_block_heads_name_the_host_of_the_finding():
    text = ("==> worker-0.log <==\n" + ds_steps(1, 10, 4) + "==> worker-1.log <==\n" + ds_steps(1, 10, 2) + ECC)
    top = problems(text)[0]
    assert top.category == "hardware" and "worker-1" in top.title


def test_a_markdown_heading_or_a_diff_is_not_a_block_head():
    evs = events_from_text("### System Info\n## 2024-01-02\n--- a/config.json\n=== gpu-node-02 ===\n", "x.log")
    assert [e.data["name"] for e in evs if e.kind == "block_head"] == ["gpu-node-02"]


def test_json_lines_records_carry_their_own_time():
    text = "".join('{"time": "2024-01-01T10:%02d:00Z", "msg": "step %d loss %.2f"}\n' % (i, 10 * i, 2 - i / 100)
                   for i in range(20))
    text += "slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2024-01-01T13:00:00 DUE TO TIME LIMIT ***\n"
    evs = [e for e in events_from_text(text, "x.log") if e.kind == "loss"]
    assert len(evs) == 20 and evs[0].step == 0 and evs[-1].time - evs[0].time == 19 * 60
    assert problems(text)[0].rule == "stopped-while-hung"


def bars(n: int, rate: float = 2.0) -> str:
    return "".join(f"  1%|          | {10 * i}/4000 [{int(10 * i * rate) // 60:02d}:{int(10 * i * rate) % 60:02d}<2:10:00,  {rate:.2f}s/it]\n"
                   for i in range(1, n + 1))


def test_an_untimed_bar_still_long_before_a_time_limit_hung():
    text = ("START TIME: Mon Jan  1 08:00:00 UTC 2024\n" + bars(20)
            + "slurmstepd: error: *** JOB 8 ON n1 CANCELLED AT 2024-01-01T20:00:00 DUE TO TIME LIMIT ***\n")
    top = problems(text)[0]
    assert top.rule == "stopped-while-hung" and any("%|" in e.text for e in top.evidence)


def test_an_untimed_bar_moving_until_the_time_limit_did_not_hang():
    text = ("START TIME: Mon Jan  1 08:00:00 UTC 2024\n" + bars(20, rate=120.0)
            + "slurmstepd: error: *** JOB 9 ON n1 CANCELLED AT 2024-01-01T15:00:00 DUE TO TIME LIMIT ***\n")
    assert problems(text)[0].rule == "failure-stopped-from-outside"


def test_each_requeued_runs_stop_is_read_and_the_last_one_counts():
    text = (ds_steps(1, 10, 10) + "slurmstepd: error: *** JOB 71 ON n3 CANCELLED AT 2024-01-01T01:05:10 DUE TO TIME LIMIT ***\n"
            + BANNER.format(h=2) + ds_steps(2, 110, 10)
            + "slurmstepd: error: *** JOB 72 ON n3 CANCELLED AT 2024-01-01T06:00:00 DUE TO TIME LIMIT ***\n")
    top = problems(text)[0]
    assert top.rule == "stopped-while-hung" and "72" in top.evidence[0].text


def test_one_ranks_whole_output_after_anothers_is_not_a_relaunch():
    # a real 2-rank torchrun capture (part P): rank 0's lines, its NaN and its exit, then rank 1's from
    # step 0: rank 1's own count never went back
    def lines(rank: int) -> str:
        return "".join(f"rank={rank} step={s} loss: {'nan' if s >= 20 else '1.0'}\n" for s in range(30))
    top = problems(lines(0) + f"rank 0: loss is nan at step 20\n" + lines(1))[0]
    assert top.category == "nan_loss" and not top.title.startswith("Earlier run")


def test_a_relaunch_that_counts_again_on_the_same_rank_still_is_one():
    text = (BANNER.format(h=1) + ds_steps(1, 10, 6) + ECC + BANNER.format(h=3) + ds_steps(3, 10, 20))
    assert not problems(text)



def test_an_earlier_runs_known_exception_is_not_also_unexplained():
    # DeepSpeed's exception at the minimum fp16 scale (deepspeed/runtime/fp16/loss_scaler.py), then training
    # goes on (benchmarks/log_throughput.py's story, cut down): the collapse is an earlier run's, and the
    # exception it quotes is that collapse's, not also an "unexplained failure" (both were notes)
    it = (" [2026-03-14 13:55:{s}] iteration     {i}/  500000 | consumed samples:      {c} | elapsed time per "
          "iteration (ms): 2861.9 | learning rate: 2.996732E-04 | global batch size:   256 | lm loss: 2.153E+00 |")
    text = "\n".join([
        "  3%|\u258e         | 15193/500000 [3:13:17<102:48:01,  1.25it/s]" + it.format(s=49, i=6206, c=1588736),
        "Exception: Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.",
        it.format(s=49, i=6206, c=1588736),
        "  3%|\u258e         | 15198/500000 [3:13:21<102:47:57,  1.37it/s][2026-03-14 13:55:52,020] [INFO] "
        "[logging.py:123:log_dist] [Rank 0] step=6207, skipped=16, lr=[0.00029010915958325577], mom=[(0.9, 0.999)]",
        "[2026-03-14 13:55:54,880] [INFO] [logging.py:123:log_dist] [Rank 0] step=6208, skipped=16, "
        "lr=[0.00029969020217140714], mom=[(0.9, 0.999)]",
        it.format(s=57, i=6209, c=1589504),
        "[2026-03-14 13:56:00,600] [INFO] [timer.py:264:stop] epoch=0/micro_step=49680/global_step=6210, "
        "RunningAvgSamplesPerSec=90.18452204821168, CurrSamplesPerSec=88.64492304258943, MemAllocated=31.42GB"]) + "\n"
    notes = findings(text)
    assert any(f.rule == "loss-scale-collapse" and f.title.startswith("Earlier run") for f in notes), notes
    assert not any(f.rule == "unexplained-failure" for f in notes), [f.rule for f in notes]


TORCHRUN_FAILED = ("[rank0]:[E1207 02:30:00.000113000 ProcessGroupNCCL.cpp:632] [Rank 0] Watchdog caught collective operation "
                   "timeout: WorkNCCL(SeqNum=2, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600021 "
                   "milliseconds before timing out.\n"
                   "E1207 02:30:03.101000 90 torch/distributed/elastic/multiprocessing/api.py:914] failed (exitcode: -6) "
                   "local_rank: 0 (pid: 101) of binary: /usr/bin/python\n")
OMP = ("W1207 02:35:00.000000 190 torch/distributed/run.py:793] Setting OMP_NUM_THREADS environment variable for each "
       "process to be 1 in default, to avoid your system being overloaded, please further tune the variable for optimal "
       "performance in your application as needed.\n")


def test_a_torchrun_relaunch_after_its_agent_said_the_workers_failed_is_a_new_run():
    # no progress before the hang; the retry logs transformers' dicts, which name no step
    hf = "".join(f"{{'loss': {2.2 - i / 10:.4f}, 'grad_norm': 1.0, 'learning_rate': 5e-05, 'epoch': {i / 10 + 0.1:.1f}}}\n"
                 for i in range(4))
    assert not problems(TORCHRUN_FAILED + OMP + hf)
    assert problems(TORCHRUN_FAILED + OMP)[0].category == "comm_stall"     # the retry never trained: still the hang


def test_ranks_an_earlier_launch_saw_return_0_did_not_leave_the_next_launch_early():
    text = ("[2026-12-07 10:00:01,000] [INFO] [launch.py:351:main] Process 1001 exits successfully.\n"
            "[2026-12-07 10:00:20,441] [INFO] [launch.py:146:main] WORLD INFO DICT: {'localhost': [0, 1]}\n"
            "torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. "
            "port: 29500, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use\n")
    assert [f.rule for f in problems(text)] == ["rendezvous-address-in-use"]
