"""The paste limits left (gen-z): what scripts/perturb_fixtures.py still missed, one test per fix.
Wordings from the installed libraries' sources (named at each test) or the golden fixtures' real runs."""
from __future__ import annotations

import json

from dsdoctor.sources import container_logs
from dsdoctor.sources.lines import clean
from dsdoctor.sources.timer_bars import join_timer_pieces
from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.ungrep import ungrep
from dsdoctor.sources.unwrap import _joined, rejoin

HEAD = "[2026-12-05 10:01:42,000] [INFO] [logging.py:68:log_dist] "


def _timers(text: str):
    joined = join_timer_pieces(text.encode()).decode()
    assert joined.count("\n") == text.count("\n")              # the paste's line numbers stay
    return [(e.rank, e.data) for e in events_from_text(joined) if e.kind == "timers"]


def test_a_timer_record_broken_at_its_bars_is_read_whole():
    # deepspeed/utils/timer.py SynchronizedWallClockTimer.log: 'time (ms)' + ' | {name}: {ms:.2f}' per timer,
    # broken after its '| ' to 80 columns (scripts/perturb_realworld.py bars80)
    text = (f"{HEAD}rank=2 time (ms) |\nforward_microstep: 210.44 | backward_microstep: 435.70 |\n"
            "backward_inner_microstep: 419.71 | backward_allreduce_microstep: 14.80 |\nstep_microstep: 48.20\n"
            f"{HEAD}[Rank 0] step=10, skipped=0, lr=[0.0001], mom=[(0.9, 0.999)]\n")
    assert _timers(text) == [(2, {"forward_microstep": 210.44, "backward_microstep": 435.7,
                                  "backward_inner_microstep": 419.71, "backward_allreduce_microstep": 14.8,
                                  "step_microstep": 48.2})]


def test_a_broken_timer_record_ends_at_a_line_that_is_no_piece_and_at_the_input_end():
    text = "[Rank 0] time (ms) | fwd: 612.41 | bwd: 1240.77 |\nbwd_inner: 1190.20 |\n"
    assert _timers(text) == [(0, {"fwd": 612.41, "bwd": 1240.77, "bwd_inner": 1190.2})]
    text = "[Rank 0] time (ms) | fwd: 612.41 |\nstep: a word, no timer\n[Rank 1] time (ms) | fwd: 1.00 | bwd: 2.00\n"
    assert _timers(text) == [(0, {"fwd": 612.41}), (1, {"fwd": 1.0, "bwd": 2.0})]


def test_a_whole_timer_log_is_left_as_it_is():
    text = "".join(f"{HEAD}rank={r} time (ms) | forward_microstep: 210.44 | step_microstep: 48.20\n" for r in range(3))
    assert join_timer_pieces(text.encode()) == text.encode()
    megatron = " iteration       10/   10000 | consumed samples: 5120 | lm loss: 2.1E+00 |\n" * 3
    assert join_timer_pieces(megatron.encode()) == megatron.encode()


def test_the_rest_of_a_tqdm_bar_broken_after_its_bar():
    # tqdm/std.py format_meter '{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]'
    text = "Epoch 0:  48%|████      |\n480/1000 [03:19<03:35, 2.41it/s, v_num=0, train_loss=1.960]\n"
    evs = [e for e in events_from_text(text) if e.kind == "throughput"]
    assert [(e.step, e.data["iter_ms"]) for e in evs] == [(480, round(1000 / 2.41, 3))]


def test_srun_label_gives_way_to_the_rank_a_message_opens_with():
    # srun --label with one torchrun per node: '0: ' is the node's task, the line says its own rank
    assert clean("0: rank=1 step=0 loss: 2.0100")[1] == 1
    assert clean("0: [Rank 1] time (ms) | fwd: 1.0")[1] == 1
    assert clean("0: loss of rank=1 is nan")[1] == 0               # a rank named later may be another's
    assert clean("[rank3]: rank=1 step=0 loss: 2.0")[1] == 3       # torchrun's own prefix is the process's


def test_torchelastic_agent_exit_line_takes_no_rank_from_a_label():
    # torch/distributed/elastic/multiprocessing/api.py: 'failed (exitcode: %s) local_rank: %s (pid: %s) of binary: %s'
    line = ("0: E1104 17:31:45.241000 140212 torch/distributed/elastic/multiprocessing/api.py:869] failed "
            "(exitcode: 1) local_rank: 1 (pid: 38212) of binary: /usr/bin/python3\n")
    ev = next(e for e in events_from_text(line) if e.kind == "process_exit")
    assert ev.rank is None and ev.data["local_rank"] == 1


def test_grep_output_behind_later_decorations():
    grep = ["4410-3: Traceback (most recent call last):", "4414:3: ValueError: Please correct the following"]
    want = b"3: Traceback (most recent call last):\n3: ValueError: Please correct the following\n"
    coloured = "".join(f"\x1b[32m{ln}\x1b[0m\n" for ln in grep).encode()
    assert ungrep(coloured) == b"".join(b"\x1b[32m" + ln + b"\x1b[0m\n" for ln in want.splitlines())
    numbered = "".join(f"{i:6d}\t{ln}\n" for i, ln in enumerate(grep, 1)).encode()
    assert ungrep(numbered).splitlines()[0] == b"     1\t3: Traceback (most recent call last):"
    journald = "".join(f"Dec 05 10:00:0{i} gpu-node-3 python[4242]: {ln}\n" for i, ln in enumerate(grep)).encode()
    assert ungrep(journald).splitlines()[1].endswith(b": 3: ValueError: Please correct the following")
    docker = "".join(json.dumps({"log": ln + "\n", "stream": "stderr", "time": "2026-12-05T10:00:00Z"}) + "\n"
                     for ln in grep * 3).encode()
    assert container_logs.is_docker_json(docker)
    assert b"".join(ungrep(b) for b in container_logs.decode_blocks([docker])).endswith(want)
    # a plain log with a time after cat -n's number stays as it is
    plain = b"     1\t12:30:01 started\n     2\t12:30:02 step 1\n"
    assert ungrep(plain) == plain


def test_rejoin_stops_before_a_grep_numbered_line_start():
    # grep -n's '1047:ValueError: ...' after a natural line exactly as wide as the pane is a line of its own
    raise_line = '1046-    raise ValueError("Duplicate keys in DeepSpeed config: {}".format(keys))'
    text = f"{raise_line}\n1047:ValueError: Duplicate keys in DeepSpeed config: ['zero_optimization']\n"
    assert _joined(text, len(raise_line)).decode().splitlines()[0] == raise_line


def test_blank_lines_a_rejoin_leaves_do_not_end_a_captured_traceback():
    # torch/csrc/profiler/combined_traceback.cpp 'C++ CapturedTraceback:' frames, two of them rejoined (each
    # leaves an empty line behind): the frame after the constructor still names where the error was thrown
    text = ("C++ CapturedTraceback:\n#5 c10::Error::Error(c10::SourceLocation, std::string) from ??:0\n"
            "#6 c10d::DistBackendError::DistBackendError(c10::SourceLocation, std::string) from ??:0\n\n"
            "#7 c10d::NCCLComm::create(int, int, ncclUniqueId, signed char, ncclConfig_v21700&) from ??:0\n\n"
            "#8 _start from ??:0\n")
    ev = next(e for e in events_from_text(text) if e.kind == "exception")
    assert ev.data["type"] == "c10d::DistBackendError" and "NCCLComm::create" in ev.data["message"]


def test_a_short_traceback_with_its_exception_line_cut_is_joined():
    frames = [f'  File "/workspace/train.py", line {i}, in step_{i}' for i in range(12)]
    exc = ("subprocess.CalledProcessError: Command '['/usr/bin/python3', 'train.py', '--config', 'sft.yaml']' "
           "died with <Signals.SIGKILL: 9>.")
    text = "\n".join(["Traceback (most recent call last):", *frames, exc[:120], exc[120:]]) + "\n"
    joined = rejoin(text.encode(), events_from_text).decode()
    assert exc in joined.splitlines()


def test_a_frame_cut_inside_its_function_name_is_joined_on_a_tie():
    pre = "[rank0]: "
    lines = [pre + "Traceback (most recent call last):",
             pre + '  File "/work/venv/lib/python3.11/site-packages/deepspeed/runtime/zero/stage_1_and_2.py", '
                   'line 2951, in scaled_global_norm',
             pre + "    norm = self.get_grad_norm_direct(self.averaged_gradients[i], self.params_in_partition[i])",
             pre + "KeyError: 0"]
    cut = lines[1][:120]
    text = "\n".join([lines[0], cut, lines[1][120:], *lines[2:]]) + "\n"
    assert lines[1] in rejoin(text.encode(), events_from_text).decode().splitlines()
    # a launcher's own line after a rank's last line is no rest of it
    natural = "\n".join([pre + "x" * 30, pre + "y" * 111, "srun: error: node2: task 1: Segmentation fault"]) + "\n"
    assert rejoin(natural.encode(), events_from_text) == natural.encode()


def test_a_cancel_line_cut_after_its_time_follows_sruns_node_failure():
    # src/api/step_launch.c _node_fail_handler 'Node failure on %s'; slurmstepd '*** %s ON %s CANCELLED AT %s
    # DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***' cut at 80 columns
    text = ("srun: error: Node failure on node2\n"
            "slurmstepd-node1: error: *** STEP 16.0 ON node1 CANCELLED AT 2026-12-06T04:19:47\n"
            " DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***\n")
    ev = next(e for e in events_from_text(text) if e.kind == "process_exit")
    assert ev.data["reason"] == "node failure" and ev.data["node"] == "node2"
    whole = "slurmstepd-node1: error: *** STEP 16.0 ON node1 CANCELLED AT 2026-12-06T04:19:47 ***\n"
    ev = next(e for e in events_from_text("srun: error: Node failure on node2\n" + whole) if e.kind == "process_exit")
    assert ev.data["reason"] == "scancel"                         # a whole line says what it says


def test_a_unique_id_message_cut_before_its_reason_claims_no_timeout():
    # torch ProcessGroupNCCL.cpp broadcastUniqueNCCLID (the wording of gen-j's fixtures)
    cut = ("[rank5]: torch.distributed.DistBackendError: [5] is setting up NCCL communicator and retrieving "
           "ncclUniqueId from [0] vi\n")
    assert not [e for e in events_from_text(cut) if e.kind in ("collective_timeout", "desync_report")]
    whole = cut.replace(" vi\n", " via c10d key-value store by key '0', but store->get('0') got error: Socket Timeout\n")
    assert [e.kind for e in events_from_text(whole)][:2] == ["collective_timeout", "desync_report"]


def test_autotuner_lines_mark_the_ssh_errors_as_its_clean_up():
    # deepspeed/autotuning/autotuner.py logs through DeepSpeed's logger ('[autotuner.py:71:__init__]'); a
    # paste wrapped at 80 columns cuts scheduler.py's 'Launching exp_id = ' behind the head
    text = ("[2026-12-06 17:15:58,782] [INFO] [autotuner.py:71:__init__] Created autotuning experiments directory: /x\n"
            "localhost: ssh: connect to host localhost port 22: Connection refused\n")
    assert not [e for e in events_from_text(text) if e.kind == "env_error"]
    assert [e for e in events_from_text(text.split("\n", 1)[1]) if e.kind == "env_error"]


def test_a_docker_export_of_grep_output_is_read_as_the_log(tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from cli_invoke import invoke_cli
    # transformers/integrations/deepspeed.py trainer_config_finalize's ValueError, grep -n -B4'd from srun --label
    # output (gen-e's fixture), then exported by Docker's json-file driver: the task's rank survives
    lines = ["4410-3: Traceback (most recent call last):",
             "4414:3: ValueError: Please correct the following DeepSpeed config values that mismatch "
             "TrainingArguments values:",
             "4415-3: - ds gradient_accumulation_steps=4 vs hf gradient_accumulation_steps=8",
             "4530:srun: error: node-a03: task 3: Exited with exit code 1"]
    p = tmp_path / "docker.log"
    p.write_text("".join(json.dumps({"log": ln + "\n", "stream": "stderr", "time": "2026-12-05T10:00:00Z"}) + "\n"
                         for ln in lines))
    doc = json.loads(invoke_cli(["analyze", "--json", str(p)]).stdout)
    top = doc["findings"][0]
    assert top["category"] == "config_error" and top["ranks"] == [3]


def _problems(text: str):
    from dsdoctor.pipeline import diagnose
    return [f for f in diagnose(events_from_text(text)) if f.severity != "info"]


_STEPS = "".join(f"[2023-06-03 01:00:{i:02d},000] [INFO] [logging.py:107:log_dist] step={i * 10}, skipped=0, "
                 f"lr=[2e-05], mom=[(0.9, 0.999)]\n" for i in range(1, 8))


def test_a_paste_that_begins_inside_a_failed_attempt_then_trains_again_is_healthy():
    # deepspeed/runtime/fp16/loss_scaler.py: 'Current loss scale already at minimum - cannot decrease scale
    # anymore. Exiting run.'; the paste's last 40 lines begin inside that attempt's traceback
    failed = ('  File "/workspace/train.py", line 141, in <module>\n    trainer.train()\n'
              "Exception: Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.\n\n")
    assert not _problems(failed + "attempt 2 (bf16 instead of fp16):\n" + _STEPS)
    assert _problems(failed)                                       # the failure alone is still one
    # transformers trainer.py '  Resuming training from checkpoint with epoch %s and global step %s' after a stop
    stop = "slurmstepd: error: *** JOB 999 ON gpu-node-05 CANCELLED AT 2024-02-02T01:00:00 DUE TO PREEMPTION ***\n"
    resume = "[INFO|trainer.py:1646] 2024-02-02 02:00:00,102 >>   Resuming training from checkpoint with epoch 0 and global step 100\n"
    assert not _problems(stop + resume + _STEPS.replace("2023-06-03 01:", "2024-02-02 02:"))


def test_loss_spikes_of_a_paste_that_begins_mid_run_are_no_missing_warm_up():
    def run(first: int) -> list:
        lines = []
        for s in range(first, first + 200):
            v = 2.0 * 0.99 ** s + 0.5
            if s in (first + 40, first + 55, first + 70):
                v = 2.6
            lines.append(f"step={s} loss={v:.4f} lr=3.000e-01")
        return [f.rule for f in _problems("\n".join(lines) + "\n")]
    assert "lr-warmup-too-short" in run(1)
    assert "lr-warmup-too-short" not in run(78)                  # its first steps (and any warm-up) cut off


def test_a_bare_exception_line_takes_the_family_another_rank_raised_it_with():
    # deepspeed/runtime/state_dict_factory.py SDLoaderBase.check_ckpt_list 'assert len(self.ckpt_list) > 0':
    # a paste whose last lines begin at rank 1's exception line, rank 0's traceback whole below it
    tb = ('[rank0]: Traceback (most recent call last):\n'
          '[rank0]:   File "/opt/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py", line 3010, in load_checkpoint\n'
          '[rank0]:     load_path, client_states = self._load_checkpoint(load_dir,\n'
          '[rank0]:   File "/opt/venv/lib/python3.11/site-packages/deepspeed/runtime/state_dict_factory.py", line 168, in check_ckpt_list\n'
          '[rank0]:     assert len(self.ckpt_list) > 0\n'
          '[rank0]: AssertionError\n')
    fs = _problems("[rank1]: AssertionError\n" + tb)
    assert fs and fs[0].category == "config_error"
    assert _problems("[rank1]: AssertionError\n")[0].category == "other"      # alone it says nothing more


def test_a_cat_n_traceback_keeps_its_lines_apart():
    # `cat -n` of a traceback: its longest line (the assert) is no line cut in two, the next line its own
    frames = [f'  File "/usr/local/lib/python3.10/dist-packages/deepspeed/runtime/config.py", line {i}, in f{i}' for i in range(6)]
    body = ["Traceback (most recent call last):", *frames,
            "    assert self.zero_enabled and self.zero_optimization_stage in (ZeroStageEnum.optimizer_states, "
            "ZeroStageEnum.gradients)", "AssertionError"]
    text = "".join(f"{i:6d}\t{ln}\n" for i, ln in enumerate(body, 1))
    assert rejoin(text.encode(), events_from_text) == text.encode()


def test_a_launcher_exit_line_takes_no_rank_from_a_prefix():
    # deepspeed/launcher/launch.py: '{cmd} exits with return code = {code}', where cmd is the LAST rank it
    # spawned (so it names no rank with two local ranks); behind srun's '0: ' label (the node's launcher) or
    # a pasted '[rank3]: ', the prefix names none of the ranks either
    launcher = ("[2026-12-06 19:45:30,000] [INFO] [launch.py:152:main] WORLD INFO DICT: {'localhost': [0, 1]}\n"
                "[2026-12-06 19:45:30,000] [INFO] [launch.py:158:main] nnodes=1, num_local_procs=2, node_rank=0\n"
                "[2026-12-06 19:45:45,202] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python3', '-u', "
                "'slow_save.py', '--local_rank=1'] exits with return code = 1\n")
    for prefix in ("0: ", "[rank3]: "):
        text = "".join(prefix + ln + "\n" for ln in launcher.splitlines())
        exits = [e for e in events_from_text(text, "job.log") if e.kind == "process_exit"]
        assert [e.rank for e in exits] == [None], prefix
    # (the input's own rank, a file named for one rank, is kept: fixtures/excerpts/gen_m_trl_sft_ds_rank1_sigkill.log)
