"""Multi-node pieces one at a time: node identity from each launcher's variables, the env file
that carries dsdoctor's variables through the deepspeed runner, the roll call over a real
TCPStore, and torch's Flight Recorder analysis of real dumps (two real gloo processes)."""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dsdoctor.events import Event
from dsdoctor.pipeline import diagnose
from dsdoctor.sources.flight_recorder import dump_rank, load
from dsdoctor.sources.inputs import expand
from dsdoctor.live import propagate
from dsdoctor.live.nodes import host_of_rank, launcher_hosts, node_info
from dsdoctor.live.rollcall import RollCall
from dsdoctor.live.session import LiveOptions, LiveSession
from dsdoctor.sources.logs import read_log
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- which node


def test_node_info_from_each_launcher():
    ds = node_info({"CROSS_RANK": "1", "CROSS_SIZE": "2", "LOCAL_SIZE": "8", "RANK": "9"})
    assert (ds.node, ds.nnodes, ds.local_size, ds.launcher) == (1, 2, 8, "deepspeed")
    assert ds.multi_node(16) and ds.folder == f"node1-{socket.gethostname()}"
    assert ds.label == f"{socket.gethostname()} (node 1)"
    tr = node_info({"GROUP_RANK": "0", "GROUP_WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "2",
                    "TORCHELASTIC_RUN_ID": "x"})
    assert tr.launcher == "torchrun" and not tr.multi_node(2)
    sl = node_info({"SLURM_NODEID": "3", "SLURM_PROCID": "25", "SLURM_NNODES": "4",
                    "SLURM_NTASKS_PER_NODE": "8(x4)"})
    assert (sl.node, sl.nnodes, sl.local_size) == (3, 4, 8)
    mpi = node_info({"OMPI_COMM_WORLD_LOCAL_SIZE": "4"})
    assert mpi.node is None and mpi.multi_node(8) and mpi.folder == socket.gethostname().replace("/", "_")
    # what Open MPI 4.1 (Debian) sets on a rank of `mpirun -hostfile` on the second of two hosts
    ompi = node_info({"OMPI_COMM_WORLD_LOCAL_SIZE": "1", "OMPI_COMM_WORLD_RANK": "1", "OMPI_MCA_orte_num_nodes": "2",
                      "OMPI_MCA_orte_local_daemon_uri": "1912143872.2;tcp://127.0.0.1:39011"})
    assert (ompi.node, ompi.nnodes, ompi.local_size, ompi.launcher) == (2, 2, 1, "mpi") and ompi.multi_node(2)
    assert node_info({"OMPI_COMM_WORLD_LOCAL_SIZE": "1", "OMPI_MCA_orte_local_daemon_uri": "junk"}).node is None
    assert not node_info({}).multi_node(1)


def test_hosts_of_missing_ranks_from_the_deepspeed_world_info():
    info = base64.urlsafe_b64encode(json.dumps({"a": [0, 1], "b": [0, 1]}).encode()).decode()
    hosts = launcher_hosts(["python", "-m", "deepspeed.launcher.launch", f"--world_info={info}", "--node_rank=1"])
    assert hosts == [("a", 2), ("b", 2)]
    assert host_of_rank(3, hosts) == ("b", 1) and host_of_rank(4, hosts) is None
    assert launcher_hosts(["python", "train.py"]) is None
    assert launcher_hosts(["x", "--world_info=!!notbase64"]) is None


def _node_exits(tmp_path, text: str) -> list[dict]:
    log = tmp_path / "console.log"
    log.write_text(textwrap.dedent(text))
    (inp,) = expand([str(log)])
    return [dict(e.data, text=e.text) for e in read_log(inp) if e.kind == "node_exit"]


def test_mpirun_names_the_first_rank_that_exited(tmp_path):
    # Open MPI 4.1's help-orterun.txt [orterun:non-zero-exit], as mpirun printed it here
    (ev,) = _node_exits(tmp_path, """\
        --------------------------------------------------------------------------
        mpirun detected that one or more processes exited with non-zero status, thus causing
        the job to be terminated. The first process to do so was:

          Process name: [[21337,1],1]
          Exit code:    3
        --------------------------------------------------------------------------
        """)
    assert (ev["who"], ev["ranks"], ev["exitcode"], ev["first"]) == ("mpirun", [1], 3, True)
    assert "[[21337,1],1]" in ev["text"]
    # an 'Exit code:' line without mpirun's heading is someone else's
    assert _node_exits(tmp_path, "  Process name: [[1,1],0]\n  Exit code:    3\n") == []


def test_srun_names_the_first_task_that_failed(tmp_path):
    evs = _node_exits(tmp_path, """\
        srun: error: node2: tasks 4-5,7: Exited with exit code 3
        srun: error: node1: task 0: Exited with exit code 1
        """)
    assert [(e["node"], e["ranks"], e["exitcode"]) for e in evs] == [("node2", [4, 5, 7], 3)]
    # a signal first: the failure rules take it, no 'first exit' after it
    assert _node_exits(tmp_path, "srun: error: node2: task 1: Killed\n"
                                 "srun: error: node1: task 0: Exited with exit code 1\n") == []


def test_loopback_check_of_the_network_watch():
    sys.path.insert(0, str(Path(__file__).parent))
    from netwatch import is_loopback
    assert all(map(is_loopback, ("127.0.0.1:22", "127.0.0.3:1024", "[::1]:80", "[::ffff:127.0.0.1]:29500")))
    assert not any(map(is_loopback, ("192.0.2.2:1024", "0.0.0.0:1024", "*:1024", "[::]:80", "[fd00::2]:5",
                                     "10.255.255.53:53", "junk")))


# ---------------------------------------------------------------------------- env file for the runner


def test_env_file_merges_the_users_files_and_leaves_them_alone(tmp_path):
    home, cwd, out = tmp_path / "home", tmp_path / "work", tmp_path / "run"
    for d in (home, cwd, out):
        d.mkdir()
    (home / ".deepspeed_env").write_text("NCCL_IB_DISABLE=1\n\nFOO=home\n")
    (cwd / ".deepspeed_env").write_text("FOO=cwd\n")
    before = {p: p.read_bytes() for p in (home / ".deepspeed_env", cwd / ".deepspeed_env")}
    env = {"HOME": str(home), "DSDOCTOR_OUT": str(out), "DSDOCTOR_AUTOATTACH": "1", "TORCH_FR_BUFFER_SIZE": "256",
           "PATH": "/bin", "PYTHONPATH": "/x"}
    path = propagate.write_env_file(env, propagate.for_other_nodes(env), out, cwd=cwd)
    # the runner's order (~ then .) and then ours; blank lines dropped (the runner would crash on them)
    assert path.read_text().splitlines() == ["NCCL_IB_DISABLE=1", "FOO=home", "FOO=cwd", "DSDOCTOR_OUT=" + str(out),
                                             "DSDOCTOR_AUTOATTACH=1", "TORCH_FR_BUFFER_SIZE=256"]
    assert {p: p.read_bytes() for p in before} == before
    # a DS_ENV_FILE of the user's is honoured the same way
    (cwd / "my_env").write_text("BAR=1\n")
    path = propagate.write_env_file({**env, "DS_ENV_FILE": "my_env"}, {"DSDOCTOR_AUTOATTACH": "1"}, out, cwd=cwd)
    assert path.read_text().splitlines() == ["BAR=1", "DSDOCTOR_AUTOATTACH=1"]


def test_run_env_points_the_runner_at_the_file_and_turns_the_recorder_on(tmp_path):
    from dsdoctor.supervise import child_env
    env = child_env(tmp_path, 30.0, "abort", False, False, base={"HOME": str(tmp_path / "nohome"), "PATH": "/bin"})
    assert env["DS_ENV_FILE"] == str(tmp_path.resolve() / "deepspeed_env")
    text = Path(env["DS_ENV_FILE"]).read_text()
    assert "DSDOCTOR_AUTOATTACH=1" in text and "DSDOCTOR_STALL_TIMEOUT=30.0" in text
    assert env["TORCH_FR_BUFFER_SIZE"] == "256" and "TORCH_FR_BUFFER_SIZE=256" in text
    assert env["TORCH_FR_DUMP_TEMP_FILE"].endswith("nccl_trace_rank_")
    # the user's own recorder settings win
    env = child_env(tmp_path, None, None, False, None, base={"TORCH_NCCL_TRACE_BUFFER_SIZE": "2000", "PATH": "/bin"})
    assert "TORCH_FR_BUFFER_SIZE" not in env


# ---------------------------------------------------------------------------- roll call


def test_roll_call_names_the_ranks_that_never_attached(tmp_path, capsys):
    import datetime

    import torch.distributed as dist
    master = dist.TCPStore("127.0.0.1", 0, None, True, timeout=datetime.timedelta(seconds=10), wait_for_workers=False)
    s0 = LiveSession(LiveOptions(out=tmp_path, tensorboard=False), rank=0, world_size=3, local_rank=0, store=master)
    rc = RollCall(s0)
    rc._store = master
    master.set("dsdoctor/attach/0", json.dumps({"host": "a", "label": "a (node 0)"}))
    master.set("dsdoctor/attach/1", json.dumps({"host": "a", "label": "a (node 0)"}))
    master.add("dsdoctor/attach/count", 2)
    s0.node.local_size = 2                   # ranks 0-1 on node 0, rank 2 on node 1
    rc.call(grace=0.6)
    rep = rc.report
    assert rep["missing"] == [2] and rep["attached"] == 2 and not rep["complete"]
    assert rep["missing_hosts"] == {"node 1": [2]} and rep["hosts"] == {"a (node 0)": [0, 1]}
    err = capsys.readouterr().err
    assert "only 2 of 3 ranks attached" in err and "2 on node 1" in err
    s0.close()
    findings = diagnose(e for e in read_log(expand([str(tmp_path)])[0]))
    f = next(f for f in findings if f.rule == "attach-incomplete")
    assert f.ranks == [2] and "2 of 3" in f.title


# ---------------------------------------------------------------------------- Flight Recorder: real dumps

FR_WORKER = textwrap.dedent("""
    import os, sys, time, torch, torch.distributed as dist
    mode, rank, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for i in range(3 if (mode == "hang" and rank == 1) else 4):   # hang: rank 1 never calls #4
        if mode == "mismatch":
            dist.broadcast(torch.zeros(16 if (i == 3 and rank == 1) else 8), src=0)
        else:
            dist.all_reduce(torch.ones(8), async_op=(i == 3))      # rank 0 does not wait in #4
    time.sleep(1.0)
    with open(os.path.join(out, f"flight-recorder-rank{rank}"), "wb") as f:
        f.write(torch._C._distributed_c10d._dump_fr_trace())
    os._exit(0)
""")


@pytest.fixture(scope="module")
def fr_dumps(tmp_path_factory):
    """Real Flight Recorder dumps of two gloo processes: 'hang' (rank 1 never calls collective
    #4) and 'mismatch' (rank 1 broadcasts 16 floats where rank 0 sends 8, at collective #4)."""
    base = tmp_path_factory.mktemp("fr")
    script = base / "worker.py"
    script.write_text(FR_WORKER)
    out = {}
    for mode in ("hang", "mismatch"):
        d = base / mode
        d.mkdir()
        port = free_port()
        env = dict(os.environ, TORCH_FR_BUFFER_SIZE="64")
        procs = [subprocess.Popen([sys.executable, str(script), mode, str(r), str(port), str(d)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in (0, 1)]
        try:
            for p in procs:
                p.wait(timeout=120)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert all((d / f"flight-recorder-rank{r}").exists() for r in (0, 1)), procs[0].stdout.read()
        out[mode] = d
    return out


def _analyze(*paths):
    events = []
    warnings: list[str] = []
    for inp in expand([str(p) for p in paths]):
        events.extend(read_log(inp, warnings))
    return events, warnings


def test_flight_recorder_names_the_rank_that_never_joined(fr_dumps):
    events, warnings = _analyze(fr_dumps["hang"])
    fr = [e for e in events if e.kind == "flight_recorder"]
    assert [e.data["verdict"] for e in fr] == ["missing"], warnings
    assert fr[0].data["seq"] == 4 and fr[0].data["culprit_ranks"] == [1] and "all_reduce" in fr[0].data["op"]
    assert "rank 1: last collective #3" in fr[0].data["positions"]
    f = diagnose(fr)[0]
    assert f.rule == "fr-rank-never-joined" and f.ranks == [1] and "#4" in f.title


def test_flight_recorder_names_the_culprit_of_a_size_mismatch_and_both_sizes(fr_dumps):
    events, _ = _analyze(fr_dumps["mismatch"])
    f = diagnose(e for e in events if e.kind == "flight_recorder")[0]
    assert f.rule == "fr-collective-mismatch" and f.ranks == [1]
    assert "#4" in f.title and "[[16]]" in f.title and "[[8]]" in f.title


def test_flight_recorder_dumps_of_node_folders_are_read_together(fr_dumps, tmp_path):
    """One folder per node (the dumps of a run on two nodes without a shared file system),
    given as two arguments or as one folder of node folders."""
    for r in (0, 1):
        d = tmp_path / "run" / f"node{r}-host{r}"
        d.mkdir(parents=True)
        (d / f"flight-recorder-rank{r}").write_bytes((fr_dumps["hang"] / f"flight-recorder-rank{r}").read_bytes())
    for paths in ([tmp_path / "run"], [tmp_path / "run" / "node0-host0", tmp_path / "run" / "node1-host1"],
                  [tmp_path / "run", tmp_path / "run" / "node1-host1"]):     # the same file twice: read once
        inputs = expand([str(p) for p in paths])
        assert [i.kind for i in inputs] == ["flight_recorder"] and len(inputs[0].group) == 2
        events, _ = _analyze(*paths)
        assert [e.data["culprit_ranks"] for e in events if e.kind == "flight_recorder"] == [[1]]


def test_torch_named_timeout_dumps_are_found(fr_dumps, tmp_path):
    """torch's own dump on an NCCL timeout: TORCH_FR_DUMP_TEMP_FILE<rank>, default /tmp/nccl_trace_rank_<N>."""
    for r in (0, 1):
        (tmp_path / f"nccl_trace_rank_{r}").write_bytes((fr_dumps["hang"] / f"flight-recorder-rank{r}").read_bytes())
    (tmp_path / "rank1.log").write_text("hello\n")
    assert dump_rank(tmp_path / "nccl_trace_rank_1") == 1 and dump_rank(tmp_path / "rank1.log") is None
    events, _ = _analyze(tmp_path)
    assert [e.data["seq"] for e in events if e.kind == "flight_recorder"] == [4]


def test_a_dump_cannot_run_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "flight-recorder-rank0"
    p.write_bytes(pickle.dumps({"entries": [Evil()]}))
    with pytest.raises(pickle.UnpicklingError):
        load(p)
    events, warnings = _analyze(tmp_path)
    assert not [e for e in events if e.kind == "flight_recorder"]
    assert any("not a readable Flight Recorder dump" in w for w in warnings)


def test_analyze_without_torch_says_the_dumps_were_not_read(fr_dumps):
    code = ("import sys; sys.modules['torch'] = None; from dsdoctor.cli import main; "
            f"main(['analyze', {str(fr_dumps['hang'])!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in r.stderr
    assert "2 Flight Recorder dump(s)" in r.stderr and "NOT read: torch is not installed" in r.stderr


def test_hosts_named_in_findings():
    evs = [Event("attach", rank=0, data={"host": "a", "label": "a (node 0)"}),
           Event("roll_call", rank=0, data={"world_size": 2, "attached": 1, "missing": [1], "missing_count": 1,
                                            "waited_s": 15.0, "hosts": {"a (node 0)": [0]},
                                            "missing_hosts": {"b (node 1)": [1]}, "complete": False})]
    (f,) = diagnose(evs)
    assert f.hosts == {1: "b (node 1)"} and f.to_dict()["hosts"] == {"1": "b (node 1)"}
    assert "rank 1 on b (node 1)" in f.title


def test_run_names_node_folders_left_on_other_disks(tmp_path):
    from dsdoctor.supervise import missing_node_folders as _missing_node_folders
    here = tmp_path / "node0-a"
    here.mkdir()
    roll = {"kind": "roll_call", "rank": 0, "data": {"world_size": 2, "attached": 2, "missing": [], "complete": True,
                                                       "hosts": {"a (node 0)": [0], "b (node 1)": [1]}}}
    (here / "events-rank0.jsonl").write_text(json.dumps(roll) + "\n")
    (notes,) = _missing_node_folders(tmp_path)
    assert notes.startswith("node1-b/ is not here") and f"rsync -a b:{tmp_path.resolve()}/ {tmp_path}/" in notes
    (tmp_path / "node1-b").mkdir()
    assert _missing_node_folders(tmp_path) == []
    assert _missing_node_folders(tmp_path / "node1-b") == []        # a single-node layout: nothing to say
