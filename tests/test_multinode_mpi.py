"""Real multi-node launches through mpirun on one machine: `dsdoctor run -- deepspeed --launcher
openmpi --hostfile` (deepspeed/launcher/multinode_runner.py: OpenMPIRunner), Open MPI 4.1's mpirun
reaching two "nodes" (node1, node2) over ssh to the loopback sshd of tests/loopback_nodes.py, each
node with its own host name (a UTS namespace: mpi_discovery tells nodes apart by host name). One
rank per node, real DeepSpeed on the CPU, gloo; the ranks find their rank through mpi4py
(deepspeed/comm/comm.py: init_distributed -> mpi_discovery).

Only loopback addresses carry traffic, and the test checks it with `ss` while the job runs:
  - MPI's out-of-band channel (mpirun <-> orted <-> ranks): OMPI_MCA_oob_tcp_if_include=lo;
  - MPI's data (mpi4py's bcast/allgather in mpi_discovery): `--mca btl_tcp_if_include lo`
    through --launcher_args, which also stops OpenMPIRunner adding its `btl_tcp_if_include eth0`;
  - the torch master address: mpi_discovery takes `hostname -I` on rank 0, which here is an
    eth0 address, so a `hostname` on PATH (passed on with `-x PATH`) answers 127.0.0.1 for -I.
    (On a cluster `hostname -I` gives the node's address, as wanted.)
mpirun and orted listen on the wildcard address (Open MPI 4.1 binds its listener to any
address and advertises only the included interfaces); no connection is made to it but on lo.

Skipped (with the reason) when sshd/ssh, Open MPI's mpirun or mpi4py are missing: `.ci/run`
installs them.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

import private_hosts
from loopback_nodes import LoopbackNodes, missing_tools
from multinode_helpers import (USER_DEEPSPEED_ENV, TASK, analyze_json, base_env, descendants, dsdoctor, events, finish, hostname_shim,
                               marked, start, user_work_folder)
from netwatch import SS, NetWatch
from ports import free_port


def _why_skip() -> str | None:
    why = missing_tools(pdsh=False)
    if why:
        return f"loopback nodes: {why}"
    if not (shutil.which("mpirun") and shutil.which("ompi_info")):
        return "Open MPI is not installed (apt-get install -y openmpi-bin)"
    if private_hosts.missing():
        return private_hosts.missing()
    if not SS:
        return "ss (iproute2) is not installed"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install mpi4py)"
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=str(_why_skip()))

STALL_TIMEOUT = 4.0
# mpirun may run as root only when told so twice (orte/tools/orterun: orterun)
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_oob_tcp_if_include": "lo", "OMPI_MCA_btl_tcp_if_include": "lo",
           # Debian's Open MPI also has libfabric's btl (ofi), whose tcp provider listens on eth0's
           # address (strace): shm only; no mtl ofi, and the ob1 pml (no UCX). mpirun passes
           # OMPI_MCA_* on to the ranks by itself.
           "OMPI_MCA_btl_ofi_provider_include": "shm", "OMPI_MCA_mtl": "^ofi", "OMPI_MCA_pml": "ob1"}
LAUNCHER_ARGS = "--mca btl_tcp_if_include lo -x PATH"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    n = LoopbackNodes(own_hostnames=True)
    try:
        extra = n.start()
    except Exception as e:      # a broken sshd setup must say why, not hang
        n.close()
        pytest.fail(f"cannot start the loopback sshd: {e}")
    shim = hostname_shim(tmp_path_factory.mktemp("hostname-shim"))
    extra["PATH"] = f"{shim}{os.pathsep}{extra['PATH']}"
    n.extra_env = extra
    yield n
    for pid in descendants(n.proc.pid) if n.proc is not None else ():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    n.close()


def launch(nodes, tmp_path: Path, fault: str):
    """dsdoctor run -- deepspeed --launcher openmpi (2 nodes x 1 rank); the user's .deepspeed_env
    (DS_ACCELERATOR for the remote side) must stay as it was. Returns (rc, out, text, net)."""
    work, user_env = user_work_folder(tmp_path)
    hostfile = nodes.hostfile(work)
    out = tmp_path / "run"
    cmd = dsdoctor("run", "--out", str(out), "--stall-timeout", str(STALL_TIMEOUT), "--on-stall", "abort",
                   "--no-tensorboard", "--",
                   "deepspeed", "--launcher", "openmpi", "--launcher_args", LAUNCHER_ARGS,
                   "--hostfile", str(hostfile), "--master_addr", "127.0.0.1",
                   str(TASK), "--fault", fault, "--fault-rank", "1", "--fault-step", "5",
                   "--dist-port", str(free_port()))
    log = tmp_path / "dsdoctor-run.out"
    sshd = nodes.proc.pid
    net = NetWatch(lambda: marked(str(out)) | descendants(sshd)).start()
    p = start(private_hosts.command(cmd, nodes.hosts_file), work, base_env(**nodes.extra_env, **MPI_ENV), log)
    try:
        (rc,) = finish([p], str(out))
    finally:
        net.stop()
    text = log.read_text(errors="replace")
    assert user_env.read_text() == USER_DEEPSPEED_ENV
    assert sorted(f.name for f in work.iterdir()) == [".deepspeed_env", "hostfile"], "files left behind"
    return rc, out, text, net


def check_loopback_only(net: NetWatch) -> None:
    assert net.seen, "ss saw no connection of the launch: the check would prove nothing"
    assert any("orted" in c or "mpirun" in c for c in net.seen), sorted(net.seen)[:20]
    assert not net.bad, f"traffic on a non-loopback address: {sorted(net.bad)}"


def test_hang_on_the_second_mpi_node_is_named_with_host_and_rank(nodes, tmp_path):
    rc, out, text, net = launch(nodes, tmp_path, "stall")
    assert rc == 86, text[-3000:]                         # ended by the watchdog (--on-stall abort)
    check_loopback_only(net)
    # DSDOCTOR_* reached the ranks as mpirun -x (from the DS_ENV_FILE dsdoctor run wrote)
    console = (out / "console.log").read_text(errors="replace")
    assert "mpirun -n 2 -hostfile" in console and "-x DSDOCTOR_AUTOATTACH=1" in console
    assert "btl_tcp_if_include eth0" not in console
    # both ranks attached, each into its node's folder; the node from Open MPI's variables
    # (orted daemon id: mpirun's own host is node 0, here without ranks)
    assert sorted(p.name for p in out.glob("node*-*")) == ["node1-node1", "node2-node2"]
    ev0 = events(out / "node1-node1" / "events-rank0.jsonl")
    ev1 = events(out / "node2-node2" / "events-rank1.jsonl")
    att = next(e["data"] for e in ev1 if e["kind"] == "attach")
    assert (att["launcher"], att["host"], att["node"], att["nnodes"], att["world_size"]) == ("mpi", "node2", 2, 2, 2)
    roll = [e["data"] for e in ev0 if e["kind"] == "roll_call"]
    assert roll and roll[0]["complete"] and roll[0]["attached"] == 2
    # the stall: rank 1 on node2, within the stall timeout (+ one or two watchdog beats)
    stall = next(e["data"] for e in ev0 if e["kind"] == "stall")
    assert stall["ranks"] == [1] and stall["behind"][0]["node"] == "node2 (node 2)"
    assert stall["waited_s"] <= STALL_TIMEOUT + 3
    for r, node in ((0, "node1-node1"), (1, "node2-node2")):
        assert (out / node / f"stacks-rank{r}.txt").is_file() and (out / node / f"flight-recorder-rank{r}").is_file()
    # the post-mortem: the rank that never joined, its host; both nodes' evidence
    assert "never joined collective" in text and "rank 1 on node2 (node 2)" in text
    doc = analyze_json(out)
    cited = json.dumps(doc["findings"])
    assert "/node1-node1/" in cited and "/node2-node2/" in cited
    top = doc["findings"][0]
    assert top["rule"] == "fr-rank-never-joined" and top["ranks"] == [1] and top["hosts"]["1"] == "node2 (node 2)"
    assert any(f["rule"].startswith("stall-") and f.get("consequence_of") == "fr-rank-never-joined"
               for f in doc["findings"])


def test_a_rank_dying_on_the_second_mpi_node_is_named_first(nodes, tmp_path):
    rc, out, text, net = launch(nodes, tmp_path, "exit")
    assert rc == 3, text[-3000:]                          # mpirun returns the failed rank's code
    check_loopback_only(net)
    assert len(list(out.glob("node*-*/events-rank*.jsonl"))) == 2
    doc = analyze_json(out)
    top = doc["findings"][0]
    assert top["rule"] == "mpi-rank-exited-first" and top["ranks"] == [1], top
    assert top["hosts"]["1"] == "node2 (node 2)" and "exit code 3" in top["title"]
    echo = [f for f in doc["findings"] if f["rule"].startswith("gloo-")]
    assert echo and all(f.get("consequence_of") == "mpi-rank-exited-first" for f in echo)
    assert not any(f["rule"] == "unexplained-failure" and f.get("consequence_of") is None for f in doc["findings"])
