"""Real Slurm launches on one machine: a throw-away Slurm cluster of two nodes (node1, node2: two
slurmd on loopback, each with its own host name; tests/local_slurm.py), one task per node, real
DeepSpeed on the CPU, gloo.

  - `dsdoctor run -- deepspeed --launcher slurm --hostfile` (deepspeed/launcher/multinode_runner.py:
    SlurmRunner: `srun -n N ... --export=ALL,K=V python -u train.py`), the ranks finding their rank
    through mpi4py over Slurm's PMIx (`--launcher_args '--mpi=pmix --nodes 2'`; deepspeed/comm/
    comm.py: init_distributed -> mpi_discovery); a hang on node2.
  - `dsdoctor run -- srun -N 2 -n 2 python train.py`, the script mapping SLURM_PROCID/NTASKS/
    LOCALID to RANK/WORLD_SIZE/LOCAL_RANK itself; a rank dying on node2.

Every connection stays on loopback, checked with `ss` while the job runs (MPI: OMPI_MCA_*_if_include
=lo; mpi_discovery's `hostname -I`: a `hostname` on PATH that answers 127.0.0.1, passed on by srun's
--export=ALL).

Skipped (with the reason) when munge/Slurm, mpi4py or Slurm's pmix plugin are missing: `.ci/run`
installs them.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import private_hosts
from local_slurm import SRUN, LocalSlurm, missing_tools
from multinode_helpers import (TASK, analyze_json, base_env, descendants, dsdoctor, events, finish, hostname_shim,
                               marked, start)
from netwatch import SS, NetWatch
from ports import free_port

_WHY = missing_tools() or private_hosts.missing() or (None if SS else "ss (iproute2) is not installed")
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"local Slurm: {_WHY}")

STALL_TIMEOUT = 4.0
# as in tests/test_multinode_mpi.py: Open MPI's traffic on lo, libfabric's shm provider only
MPI_ENV = {"OMPI_MCA_oob_tcp_if_include": "lo", "OMPI_MCA_btl_tcp_if_include": "lo",
           "OMPI_MCA_btl_ofi_provider_include": "shm", "OMPI_MCA_mtl": "^ofi", "OMPI_MCA_pml": "ob1"}


def _pmix_missing(slurm) -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install mpi4py)"
    # with our SLURM_CONF: without one srun would look for a config server in DNS
    r = subprocess.run([SRUN, "--mpi=list"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, **slurm.extra_env})
    if "pmix" not in r.stdout + r.stderr:
        return "Slurm has no pmix plugin (srun --mpi=list)"
    # the plugin dlopens the unversioned libpmix.so (Debian: libpmix-dev); without it srun says
    # 'MPI: Cannot create context for mpi/pmix' and the job never starts
    libs = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    if not re.search(r"^\s*libpmix\.so \(", libs, re.M):
        return "Slurm's pmix plugin cannot load: no libpmix.so (Debian: apt-get install libpmix-dev)"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm()
    try:
        extra = cluster.start()
    except Exception as e:      # a broken Slurm setup must say why, not hang
        pytest.fail(f"cannot start the local Slurm cluster: {e}")
    shim = hostname_shim(tmp_path_factory.mktemp("hostname-shim"))
    cluster.extra_env = {**extra, **MPI_ENV, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}
    yield cluster
    cluster.close()


def run(slurm, tmp_path: Path, launch: list[str]):
    out = tmp_path / "run"
    cmd = dsdoctor("run", "--out", str(out), "--stall-timeout", str(STALL_TIMEOUT), "--on-stall", "abort",
                   "--no-tensorboard", "--", *launch)
    daemons = {p.pid for p in slurm.procs}
    net = NetWatch(lambda: marked(str(out)) | daemons | set().union(*(descendants(p) for p in daemons))).start()
    log = tmp_path / "dsdoctor-run.out"
    p = start(private_hosts.command(cmd, slurm.hosts_file), tmp_path, base_env(**slurm.extra_env), log)
    try:
        (rc,) = finish([p], str(out))
    finally:
        net.stop()
    assert net.seen and any("slurm" in c or "srun" in c for c in net.seen), sorted(net.seen)[:20]
    assert not net.bad, f"traffic on a non-loopback address: {sorted(net.bad)}"
    return rc, out, log.read_text(errors="replace")


def test_deepspeed_slurm_launcher_hang_on_node2_is_named(slurm, tmp_path):
    why = _pmix_missing(slurm)
    if why:
        pytest.skip(why)
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=1\nnode2 slots=1\n")
    rc, out, text = run(slurm, tmp_path, [
        "deepspeed", "--launcher", "slurm", "--launcher_args", "--mpi=pmix --nodes 2", "--no_ssh_check",
        "--hostfile", str(hostfile), "--master_addr", "127.0.0.1",
        str(TASK), "--fault", "stall", "--fault-rank", "1", "--fault-step", "5", "--dist-port", str(free_port())])
    assert rc == 86, text[-3000:]
    console = (out / "console.log").read_text(errors="replace")
    # DSDOCTOR_* reached the tasks through srun --export (from the DS_ENV_FILE dsdoctor run wrote)
    assert "cmd = srun -n 2 --mpi=pmix --nodes 2 --export=ALL," in console and "DSDOCTOR_AUTOATTACH=1" in console
    assert sorted(p.name for p in out.glob("node*-*")) == ["node0-node1", "node1-node2"]
    ev0 = events(out / "node0-node1" / "events-rank0.jsonl")
    att = next(e["data"] for e in events(out / "node1-node2" / "events-rank1.jsonl") if e["kind"] == "attach")
    assert (att["launcher"], att["host"], att["node"], att["nnodes"], att["local_size"]) == ("slurm", "node2", 1, 2, 1)
    roll = [e["data"] for e in ev0 if e["kind"] == "roll_call"]
    assert roll and roll[0]["complete"] and roll[0]["attached"] == 2
    stall = next(e["data"] for e in ev0 if e["kind"] == "stall")
    assert stall["ranks"] == [1] and stall["behind"][0]["node"] == "node2 (node 1)"
    assert stall["waited_s"] <= STALL_TIMEOUT + 3
    for r, node in ((0, "node0-node1"), (1, "node1-node2")):
        assert (out / node / f"stacks-rank{r}.txt").is_file() and (out / node / f"flight-recorder-rank{r}").is_file()
    assert "never joined collective" in text and "rank 1 on node2 (node 1)" in text
    doc = analyze_json(out)
    top = doc["findings"][0]
    assert top["rule"] == "fr-rank-never-joined" and top["ranks"] == [1] and top["hosts"]["1"] == "node2 (node 1)"
    cited = json.dumps(doc["findings"])
    assert "/node0-node1/" in cited and "/node1-node2/" in cited
    # srun's 'Exited with exit code 86' lines are the watchdog's own ending, not a cause
    assert not any(f["rule"] == "node-exited-first" for f in doc["findings"])


def test_srun_rank_dying_on_node2_is_named_first(slurm, tmp_path):
    rc, out, text = run(slurm, tmp_path, [
        SRUN, "-N", "2", "-n", "2", "python", "-u", str(TASK), "--env-from-slurm",
        "--fault", "exit", "--fault-rank", "1", "--fault-step", "5", "--dist-port", str(free_port())])
    assert rc == 3, text[-3000:]                          # srun returns the first failed task's code
    assert "srun: error: node2: task 1: Exited with exit code 3" in text
    assert len(list(out.glob("node*-*/events-rank*.jsonl"))) == 2
    doc = analyze_json(out)
    top = doc["findings"][0]
    assert top["rule"] == "node-exited-first" and top["ranks"] == [1] and "node2" in top["title"], top
    assert top["hosts"]["1"] == "node2 (node 1)"
    echo = [f for f in doc["findings"] if f["rule"].startswith("gloo-")]
    assert echo and all(f.get("consequence_of") == "node-exited-first" for f in echo)
