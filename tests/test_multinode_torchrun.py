"""torchrun --nnodes 2 --node_rank K, one per "node", on this machine (static rendezvous on
127.0.0.1): `dsdoctor run` on each node, each with its own run folder as on nodes without a
shared file system, then `dsdoctor analyze DIR0 DIR1`; and a node started without dsdoctor,
which the roll call must name at once."""
from __future__ import annotations


from multinode_helpers import TASK, analyze_json, base_env, dsdoctor, events, finish, start
from ports import free_port


def torchrun(node_rank: int, port: int, *task_args: str) -> list[str]:
    return ["torchrun", "--nnodes", "2", "--node_rank", str(node_rank), "--nproc_per_node", "1",
            "--master_addr", "127.0.0.1", "--master_port", str(port), str(TASK), *task_args]


def test_size_mismatch_on_one_node_is_named_by_the_flight_recorder(tmp_path):
    port = free_port()
    outs = [tmp_path / f"run-node{k}" for k in (0, 1)]
    procs = [start(dsdoctor("run", "--out", str(outs[k]), "--stall-timeout", "4", "--on-stall", "abort",
                            "--no-tensorboard", "--", *torchrun(k, port, "--fault", "mismatch", "--fault-rank", "1")),
                   tmp_path, base_env(), tmp_path / f"node{k}.out") for k in (0, 1)]
    codes = finish(procs, str(tmp_path))
    logs = [(tmp_path / f"node{k}.out").read_text(errors="replace") for k in (0, 1)]
    # torchrun reports its worker's 86 (ended by the watchdog) as its own 1
    assert all(c not in (0, None) for c in codes) and "ending the run (--on-stall abort)" in logs[0], \
        logs[0][-2000:] + logs[1][-2000:]
    # each node wrote only its own folder; analyze reads the two folders as one run
    assert [p.name[:6] for p in outs[0].glob("node*")] == ["node0-"]
    assert [p.name[:6] for p in outs[1].glob("node*")] == ["node1-"]
    doc = analyze_json(*outs)
    top = doc["findings"][0]
    assert top["rule"] == "fr-collective-mismatch" and top["ranks"] == [1], top
    assert "[[16]]" in top["title"] and "[[8]]" in top["title"] and "broadcast" in top["title"]
    assert "(node 1)" in top["hosts"]["1"]


def test_a_node_started_without_dsdoctor_is_reported_at_once(tmp_path):
    port = free_port()
    out = tmp_path / "run"
    args = ("--steps", "60", "--step-sleep", "0.1")
    watched = start(dsdoctor("run", "--out", str(out), "--no-tensorboard", "--", *torchrun(0, port, *args)),
                    tmp_path, base_env(), tmp_path / "node0.out")
    plain = start(torchrun(1, port, *args), tmp_path, base_env(PYTHONPATH=str(tmp_path), MARK=str(out)),
                  tmp_path / "node1.out")
    codes = finish([watched, plain], str(out))
    text = (tmp_path / "node0.out").read_text(errors="replace")
    assert codes == [0, 0], text[-3000:]
    assert "only 1 of 2 ranks attached" in text and "rank(s) 1 on node 1 are NOT watched" in text
    roll = next(e["data"] for e in events(next(out.glob("node0-*/events-rank0.jsonl"))) if e["kind"] == "roll_call")
    assert roll["missing"] == [1] and roll["waited_s"] < 10
    doc = analyze_json(out)
    f = next(f for f in doc["findings"] if f["rule"] == "attach-incomplete")
    assert f["ranks"] == [1] and "1 of 2" in f["title"]


def test_a_missing_node_is_named_by_its_host_from_the_c10d_rendezvous(tmp_path):
    """--rdzv_backend c10d: torch's rendezvous state holds every agent's address (torchrun
    --local_addr, else the node's FQDN), so the roll call names the host of the node whose ranks did
    not attach. Group ranks follow the sorted addresses: '127.0.0.1' (watched) becomes node 0."""
    port = free_port()
    out = tmp_path / "run"

    def c10d(addr: str) -> list[str]:
        return ["torchrun", "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                "--rdzv_endpoint", f"127.0.0.1:{port}", "--local_addr", addr, str(TASK), "--steps", "60",
                "--step-sleep", "0.1"]

    watched = start(dsdoctor("run", "--out", str(out), "--no-tensorboard", "--", *c10d("127.0.0.1")),
                    tmp_path, base_env(), tmp_path / "node0.out")
    plain = start(c10d("node7"), tmp_path, base_env(PYTHONPATH=str(tmp_path), MARK=str(out)), tmp_path / "node1.out")
    codes = finish([watched, plain], str(out))
    text = (tmp_path / "node0.out").read_text(errors="replace")
    assert codes[0] == 0, text[-3000:]
    assert "rank(s) 1 on node7 (node 1) are NOT watched" in text, text[-3000:]
    roll = next(e["data"] for e in events(next(out.glob("node0-*/events-rank0.jsonl"))) if e["kind"] == "roll_call")
    assert roll["missing_hosts"] == {"node7 (node 1)": [1]}
