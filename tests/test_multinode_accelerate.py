"""`accelerate launch` with a DeepSpeed config over two "nodes" that are this machine, real
DeepSpeed on the CPU (gloo), one rank per node, the engine built by `Accelerator.prepare`
(tests/accelerate_task.py). accelerate's two multi-node paths (accelerate/utils/launch.py:
prepare_deepspeed_cmd_env):

- deepspeed_multinode_launcher 'standard': accelerate runs torchrun in its own process on each
  node (commands/launch.py: _run_torchrun), so one `dsdoctor run -- accelerate launch
  --machine_rank K ...` per node, each with its own run folder (no shared file system);
- 'pdsh' (the default): accelerate starts `deepspeed --hostfile ... --launcher pdsh` and first
  appends its whole environment to the deepspeed runner's env file (commands/launch.py:
  deepspeed_launcher, `open(DEEPSPEED_ENVIRONMENT_NAME, "a")`): under `dsdoctor run` that is
  DIR/deepspeed_env, so the user's ./.deepspeed_env is not appended to. Reached over the loopback
  sshd of tests/loopback_nodes.py, from an accelerate config file.

Skipped (with the reason) when accelerate, or sshd/ssh/pdsh for the second test, is missing.
HF_HOME points into the test's folder, so no accelerate default_config.yaml of the machine is read.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from ports import free_port

pytest.importorskip("accelerate")

from loopback_nodes import LoopbackNodes, missing_tools  # noqa: E402
from multinode_helpers import (USER_DEEPSPEED_ENV, analyze_json, base_env, dsdoctor, events, finish,  # noqa: E402
                               start, user_work_folder)

TASK = Path(__file__).resolve().parent / "accelerate_task.py"
STALL_TIMEOUT = 4.0
DS_CONFIG = '{"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 0}}\n'


def _accelerate() -> str:
    """The `accelerate` command of the Python running the tests (its console script)."""
    here = Path(sys.executable).parent / "accelerate"
    found = str(here) if here.exists() else shutil.which("accelerate")
    if not found:
        pytest.skip("the `accelerate` command is not on PATH")
    return found


def _rules(doc: dict) -> list[str]:
    return [f["rule"] for f in doc["findings"]]


def test_standard_launcher_hang_on_the_second_node(tmp_path):
    """'standard': one dsdoctor run per node; rank 1 (node 1) hangs -> the watchdog names it with its
    node within the stall timeout, and `analyze DIR0 DIR1` names the collective it never joined."""
    (tmp_path / "ds.json").write_text(DS_CONFIG)
    port = free_port()
    outs = [tmp_path / f"run-node{k}" for k in (0, 1)]

    def node(k: int) -> list[str]:
        return dsdoctor("run", "--out", str(outs[k]), "--stall-timeout", str(STALL_TIMEOUT), "--on-stall", "abort",
                        "--no-tensorboard", "--",
                        _accelerate(), "launch", "--use_deepspeed", "--deepspeed_config_file", "ds.json",
                        "--deepspeed_multinode_launcher", "standard", "--num_machines", "2", "--num_processes", "2",
                        "--machine_rank", str(k), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
                        "--mixed_precision", "no", "--dynamo_backend", "no",
                        str(TASK), "--fault", "stall", "--fault-rank", "1", "--fault-step", "5")

    env = base_env(HF_HOME=str(tmp_path / "hf"))
    procs = [start(node(k), tmp_path, env, tmp_path / f"node{k}.out") for k in (0, 1)]
    codes = finish(procs, str(tmp_path))
    logs = [(tmp_path / f"node{k}.out").read_text(errors="replace") for k in (0, 1)]
    assert all(c not in (0, None) for c in codes) and "ending the run (--on-stall abort)" in logs[0], \
        logs[0][-3000:] + logs[1][-2000:]
    # both ranks attached, each into its own node's folder (accelerate's torchrun sets GROUP_RANK)
    assert [p.name[:6] for p in outs[0].glob("node*")] == ["node0-"]
    assert [p.name[:6] for p in outs[1].glob("node*")] == ["node1-"]
    ev0 = events(next(outs[0].glob("node0-*/events-rank0.jsonl")))
    ev1 = events(next(outs[1].glob("node1-*/events-rank1.jsonl")))
    assert any(e["kind"] == "attach" and e["data"]["node"] == 1 and e["data"]["launcher"] == "torchrun" for e in ev1)
    roll = next(e["data"] for e in ev0 if e["kind"] == "roll_call")
    assert roll["complete"] and roll["attached"] == 2
    # the hang, named live on node 0 with rank and node, within the stall timeout (+ a beat or two)
    stall = next(e["data"] for e in ev0 if e["kind"] == "stall")
    assert stall["ranks"] == [1] and "(node 1)" in stall["behind"][0]["node"] and stall["waited_s"] <= STALL_TIMEOUT + 3
    assert "rank(s) [1] (on " in logs[0] and "(node 1))" in logs[0]
    for k in (0, 1):
        assert list(outs[k].glob(f"node{k}-*/stacks-rank{k}.txt")) and list(outs[k].glob(f"node{k}-*/flight-recorder-rank{k}"))
    # node 0's own post-mortem: the stall, not the exit code 86 the watchdog ended the ranks with
    # (torchrun reports it as a failed child, accelerate as its own exit code 1)
    alone = analyze_json(outs[0])
    assert alone["findings"][0]["rule"].startswith("stall-") and "unexplained-failure" not in _rules(alone), _rules(alone)
    # both nodes' evidence read together: the rank that never joined, on node 1
    doc = analyze_json(*outs)
    top = doc["findings"][0]
    assert top["rule"] == "fr-rank-never-joined" and top["ranks"] == [1] and "(node 1)" in top["hosts"]["1"], _rules(doc)
    assert any(r.startswith("stall-") for r in _rules(doc)) and "unexplained-failure" not in _rules(doc)
    assert {Path(i).parent.name[:6] for i in doc["inputs"] if "events-rank" in i} == {"node0-", "node1-"}


@pytest.fixture(scope="module")
def nodes():
    why = missing_tools()
    if why is not None:
        pytest.skip(f"loopback nodes: {why}")
    n = LoopbackNodes()
    try:
        n.extra_env = n.start()
    except Exception as e:      # a broken sshd setup must say why, not hang
        n.close()
        pytest.fail(f"cannot start the loopback sshd: {e}")
    yield n
    n.close()


def test_pdsh_launcher_rank_dying_on_the_second_node(nodes, tmp_path):
    """'pdsh' from an accelerate config file: one dsdoctor run on the launching node; rank 1 on
    node2 exits -> both ranks attached into node folders, the node that ended first is named with
    its rank, the other node's lost connection is its echo, accelerate's CalledProcessError is not
    taken for a launch problem, and the user's .deepspeed_env is neither appended to nor left changed."""
    work, user_env = user_work_folder(tmp_path)
    (work / "ds.json").write_text(DS_CONFIG)
    hostfile = nodes.hostfile(work)
    # accelerate/commands/config/config_args.py: ClusterConfig (deepspeed_config -> the --deepspeed_* flags)
    (work / "accelerate.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\n"
        "deepspeed_config:\n  deepspeed_config_file: ds.json\n  deepspeed_multinode_launcher: pdsh\n"
        f"  deepspeed_hostfile: {hostfile}\n"
        f"machine_rank: 0\nmain_process_ip: 127.0.0.1\nmain_process_port: {free_port()}\n"
        "num_machines: 2\nnum_processes: 2\ndynamo_config: {}\n")
    out = tmp_path / "run"
    cmd = dsdoctor("run", "--out", str(out), "--stall-timeout", str(STALL_TIMEOUT), "--on-stall", "abort",
                   "--no-tensorboard", "--", _accelerate(), "launch", "--config_file", "accelerate.yaml",
                   str(TASK), "--fault", "exit", "--fault-rank", "1", "--fault-step", "30",
                   "--step-sleep", "0.05")
    p = start(cmd, work, base_env(HF_HOME=str(tmp_path / "hf"), **nodes.extra_env), tmp_path / "dsdoctor-run.out")
    (rc,) = finish([p], str(out))
    text = (tmp_path / "dsdoctor-run.out").read_text(errors="replace")
    assert rc not in (0, None), text[-3000:]
    assert user_env.read_text() == USER_DEEPSPEED_ENV
    assert sorted(f.name for f in work.iterdir()) == [".deepspeed_env", "accelerate.yaml", "ds.json", "hostfile"]
    # accelerate's own environment went into dsdoctor's env file, after the user's lines and ours
    env_lines = (out / "deepspeed_env").read_text().splitlines()
    assert env_lines[0] == "DS_ACCELERATOR=cpu" and "ACCELERATE_USE_DEEPSPEED=true" in env_lines
    # both ranks attached through pdsh, into their node folders
    ev1 = events(next(out.glob("node1-*/events-rank1.jsonl")))
    assert any(e["kind"] == "attach" and e["data"]["node"] == 1 and e["data"]["launcher"] == "deepspeed" for e in ev1)
    # (rank 1 exits > 1.5 s into training: after rank 0's roll call, which polls every 0.5 s)
    roll = next(e["data"] for e in events(next(out.glob("node0-*/events-rank0.jsonl"))) if e["kind"] == "roll_call")
    assert roll["complete"] and roll["attached"] == 2
    doc = analyze_json(out)
    top = doc["findings"][0]
    assert top["rule"] == "node-exited-first" and top["ranks"] == [1] and "node2" in top["title"], \
        (_rules(doc), top["ranks"], top["title"], top.get("hosts"), [e["text"] for e in top["evidence"]][:6])
    assert "(node 1)" in top["hosts"]["1"]
    assert not any(r.startswith("failure-") or r == "unexplained-failure" for r in _rules(doc)), _rules(doc)
    echo = [f for f in doc["findings"] if f["rule"].startswith("gloo-")]
    assert echo and all(f.get("consequence_of") == "node-exited-first" for f in echo)
