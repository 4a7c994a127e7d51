"""Real multi-node launches on one machine: `dsdoctor run -- deepspeed --hostfile` over pdsh + ssh
to two "nodes" (node1, node2) that are this machine, reached through an sshd the fixture starts
on a loopback port (tests/loopback_nodes.py). One rank per node, real DeepSpeed on the CPU, gloo.

Skipped (with the reason) only when sshd/ssh/pdsh are not installed: `.ci/run` installs them.
"""
from __future__ import annotations

import pytest

from loopback_nodes import LoopbackNodes, missing_tools
from multinode_helpers import (USER_DEEPSPEED_ENV, TASK, analyze_json, base_env, dsdoctor, events, finish, start,
                               user_work_folder)
from ports import free_port

pytestmark = pytest.mark.skipif(missing_tools() is not None, reason=f"loopback nodes: {missing_tools()}")

STALL_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def nodes():
    n = LoopbackNodes()
    try:
        extra = n.start()
    except Exception as e:      # a broken sshd setup must say why, not hang
        n.close()
        pytest.fail(f"cannot start the loopback sshd: {e}")
    n.extra_env = extra
    yield n
    n.close()


def launch(nodes, tmp_path, fault: str, port: int):
    """dsdoctor run -- deepspeed --hostfile (2 nodes x 1 rank) from a working folder that holds the
    user's own .deepspeed_env (DS_ACCELERATOR for the remote side), which must stay as it was."""
    work, user_env = user_work_folder(tmp_path)
    hostfile = nodes.hostfile(work)
    out = tmp_path / "run"
    cmd = dsdoctor("run", "--out", str(out), "--stall-timeout", str(STALL_TIMEOUT), "--on-stall", "abort",
                   "--no-tensorboard", "--",
                   "deepspeed", "--hostfile", str(hostfile), "--master_addr", "127.0.0.1", "--master_port", str(port),
                   str(TASK), "--fault", fault, "--fault-rank", "1", "--fault-step", "5")
    log = tmp_path / "dsdoctor-run.out"
    p = start(cmd, work, base_env(**nodes.extra_env), log)
    (rc,) = finish([p], str(out))
    text = log.read_text(errors="replace")
    assert user_env.read_text() == USER_DEEPSPEED_ENV
    assert sorted(f.name for f in work.iterdir()) == [".deepspeed_env", "hostfile"], "files left behind"
    return rc, out, text


def test_hang_on_the_second_node_is_named_with_host_and_rank(nodes, tmp_path):
    rc, out, text = launch(nodes, tmp_path, "stall", free_port())
    assert rc == 86, text[-3000:]                         # ended by the watchdog (--on-stall abort)
    # both nodes' ranks attached, each into its own node folder
    folders = sorted(p.name for p in out.glob("node*-*"))
    assert [f[:6] for f in folders] == ["node0-", "node1-"], folders
    ev0 = events(next(out.glob("node0-*/events-rank0.jsonl")))
    ev1 = events(next(out.glob("node1-*/events-rank1.jsonl")))
    assert any(e["kind"] == "attach" and e["data"]["node"] == 1 for e in ev1)
    roll = [e["data"] for e in ev0 if e["kind"] == "roll_call"]
    assert roll and roll[0]["complete"] and roll[0]["attached"] == 2
    # the stall: rank 1, on node 1, within the stall timeout (+ one or two watchdog beats)
    stall = next(e["data"] for e in ev0 if e["kind"] == "stall")
    assert stall["ranks"] == [1] and "(node 1)" in stall["behind"][0]["node"]
    assert stall["waited_s"] <= STALL_TIMEOUT + 3
    # every rank's stacks and Flight Recorder dump, next to each other
    for r in (0, 1):
        assert list(out.glob(f"node{r}-*/stacks-rank{r}.txt")) and list(out.glob(f"node{r}-*/flight-recorder-rank{r}"))
    # the post-mortem: both nodes' evidence, the rank that never joined, its host
    assert f"{out.name}/node0-" in text and f"{out.name}/node1-" in text
    assert "never joined collective" in text and "rank 1 on " in text and "(node 1)" in text
    doc = analyze_json(out)
    top = doc["findings"][0]
    assert top["rule"] == "fr-rank-never-joined" and top["ranks"] == [1] and "(node 1)" in top["hosts"]["1"]
    assert any(f["rule"].startswith("stall-") and f.get("consequence_of") == "fr-rank-never-joined"
               for f in doc["findings"])


def test_a_rank_dying_on_the_second_node_is_named_first(nodes, tmp_path):
    rc, out, text = launch(nodes, tmp_path, "exit", free_port())
    assert rc not in (0, None), text[-3000:]
    assert len(list(out.glob("node*-*/events-rank*.jsonl"))) == 2
    doc = analyze_json(out)
    top = doc["findings"][0]
    assert top["rule"] == "node-exited-first" and top["ranks"] == [1] and "node2" in top["title"], top
    assert "(node 1)" in top["hosts"]["1"]
    echo = [f for f in doc["findings"] if f["rule"].startswith("gloo-")]
    assert echo and all(f.get("consequence_of") == "node-exited-first" for f in echo)
