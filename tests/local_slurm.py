"""A throw-away Slurm cluster on this machine, for the srun tests: munged, slurmctld and one
slurmd per Slurm node (node1, node2, ...) started here with their own key, config, state and
sockets in one temp folder, and stopped (and the folder removed) by close(). Nothing in /etc,
/run or /var is used: `srun` finds the config through SLURM_CONF and munge's socket through the
config's AuthInfo.

Several slurmd on one host: each Slurm node has its own NodeName, slurmd port (`Port=`), spool
and pid file (%n), and NodeAddr=127.0.0.1 (slurm.conf(5): "Port ... If multiple slurmd daemons
execute on a node this parameter must be set"); Debian's Slurm 22.05 runs them (`srun -N 2` puts
one task on each). So every connection (srun <-> slurmctld <-> slurmd <-> srun's I/O ports) is
on loopback. Each slurmd runs in its own UTS namespace (`unshare --uts`) whose host name is its
node name, so its tasks see `node1`, `node2` as on separate machines (deepspeed's
mpi_discovery and Open MPI tell nodes apart by host name), and slurmctld and the slurmds run with
an /etc/hosts that maps the node names to loopback addresses (tests/private_hosts.py): no lookup of them
asks a DNS server. `hosts_file` is that file, for the launch command.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import private_hosts
from ports import free_ports

MUNGED = shutil.which("munged") or ("/usr/sbin/munged" if os.path.exists("/usr/sbin/munged") else None)
SLURMCTLD = shutil.which("slurmctld") or ("/usr/sbin/slurmctld" if os.path.exists("/usr/sbin/slurmctld") else None)
SLURMD = shutil.which("slurmd") or ("/usr/sbin/slurmd" if os.path.exists("/usr/sbin/slurmd") else None)
SRUN = shutil.which("srun")
SINFO = shutil.which("sinfo")
SCANCEL = shutil.which("scancel")
UNSHARE = private_hosts.UNSHARE


def missing_tools() -> str | None:
    absent = [n for n, p in (("munged (munge)", MUNGED), ("slurmctld", SLURMCTLD), ("slurmd", SLURMD),
                             ("srun (slurm-client)", SRUN), ("sinfo", SINFO), ("scancel", SCANCEL),
                             ("unshare (util-linux)", UNSHARE)) if not p]
    if absent:
        return "not installed: " + ", ".join(absent) + " (apt-get install -y munge slurmctld slurmd slurm-client)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start tasks"
    return None




class LocalSlurm:
    """start() -> env additions for srun (SLURM_CONF); close() stops the daemons, removes all."""

    def __init__(self, nodes: tuple[str, ...] = ("node1", "node2"), cpus: int = 2,
                 conf: dict[str, str] | None = None, node_conf: str = ""):
        self.nodes = nodes
        self.cpus = cpus
        # slurm.conf keys to set (replacing the default's line, else added), and words added to each
        # NodeName line (e.g. "RealMemory=4000"): for scratch runs that need another setting
        self.conf = conf or {}
        self.node_conf = node_conf
        self.dir = Path(tempfile.mkdtemp(prefix="dsdoctor-slurm-"))
        os.chmod(self.dir, 0o700)                 # munged checks its key's and socket's folders
        self.host = socket.gethostname()
        self.procs: list[subprocess.Popen] = []
        self.hosts_file = private_hosts.hosts_file(self.dir, self.nodes)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(self.dir / f"{name}.out", "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.procs.append(p)
        return p

    def log(self, name: str) -> str:
        try:
            return (self.dir / f"{name}.out").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> dict[str, str]:
        d = self.dir
        for sub in ("munge", "state", "spool", "tmp", *(f"tmp/{n}" for n in self.nodes)):
            (d / sub).mkdir(mode=0o700)
        key = d / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = d / "munge" / "munge.sock"
        self._spawn("munged", [MUNGED, "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
                               f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'munge' / 'munged.log'}",
                               f"--seed-file={d / 'munge' / 'munged.seed'}", "--num-threads=2"])
        ctld_port, *node_ports = free_ports(1 + len(self.nodes))
        conf = d / "slurm.conf"
        plugstack = d / "plugstack.conf"           # no SPANK plugins (the default one is /etc/slurm's)
        plugstack.write_text("")
        text = (
            "ClusterName=dsdoctor-test\n"
            f"SlurmctldHost={self.host}(127.0.0.1)\n"
            f"SlurmctldPort={ctld_port}\n"
            f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={sock}\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={d / 'state'}\nSlurmdSpoolDir={d / 'spool'}/%n\n"
            # per node: srun --mpi=pmix keeps its client folders in TmpFS, named by job and step only
            f"TmpFS={d / 'tmp'}/%n\n"
            f"SlurmctldPidFile={d / 'slurmctld.pid'}\nSlurmdPidFile={d / 'slurmd-%n.pid'}\n"
            f"SlurmctldLogFile={d / 'slurmctld.log'}\nSlurmdLogFile={d / 'slurmd-%n.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
            "SchedulerType=sched/builtin\nReturnToService=2\nKillWait=2\nMessageTimeout=20\n"
            "AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            # the node may claim more CPUs than this machine has (tests run 2 tasks on 2 cores)
            f"SlurmdParameters=config_overrides\nPlugStackConfig={plugstack}\nMailProg=/bin/true\n"
            "SlurmctldDebug=info\nSlurmdDebug=info\n"
            + "".join(f"NodeName={n} NodeAddr=127.0.0.1 NodeHostname={n} Port={port} CPUs={self.cpus} "
                      f"{self.node_conf + ' ' if self.node_conf else ''}State=UNKNOWN\n"
                      for n, port in zip(self.nodes, node_ports))
            + f"PartitionName=test Nodes={','.join(self.nodes)} Default=YES MaxTime=30 State=UP OverSubscribe=YES\n")
        lines = text.splitlines()
        for key, value in self.conf.items():
            at = [i for i, ln in enumerate(lines) if ln.startswith(key + "=")]
            if at:
                lines[at[0]] = f"{key}={value}"
            else:
                lines.insert(len(lines) - 1 - len(self.nodes), f"{key}={value}")
        conf.write_text("\n".join(lines) + "\n")
        env = {**os.environ, "SLURM_CONF": str(conf)}
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                self.close()
                raise RuntimeError(f"munged did not start: {self.log('munged')}")
            time.sleep(0.1)
        self._spawn("slurmctld", private_hosts.command([SLURMCTLD, "-D", "-i", "-f", str(conf)], self.hosts_file), env)
        for n in self.nodes:
            self._spawn(f"slurmd-{n}", private_hosts.command([SLURMD, "-D", "-f", str(conf), "-N", n],
                                                             self.hosts_file, hostname=n), env)
        while time.monotonic() < deadline:
            for name, p in zip(("munged", "slurmctld", *(f"slurmd-{n}" for n in self.nodes)), self.procs):
                if p.poll() is not None:
                    out = self.log(name)
                    self.close()
                    raise RuntimeError(f"{name} exited: {out}")
            r = subprocess.run([SINFO, "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env, timeout=30)
            states = [ln.strip().rstrip("*") for ln in r.stdout.splitlines() if ln.strip()]
            if r.returncode == 0 and states and all(st in ("idle", "mixed", "allocated") for st in states):
                return {"SLURM_CONF": str(conf)}
            time.sleep(0.5)
        state = subprocess.run([SINFO, "-N"], capture_output=True, text=True, env=env, timeout=30).stdout
        self.close()
        raise RuntimeError(f"the Slurm node did not become idle within {timeout} s: {state}")

    def close(self) -> None:
        if self.procs and (self.dir / "slurm.conf").exists():
            # end the jobs first: their slurmstepd would outlive the slurmd that started them
            env = {**os.environ, "SLURM_CONF": str(self.dir / "slurm.conf")}
            try:
                subprocess.run([SCANCEL, "--user=root", "--full"], env=env, capture_output=True, timeout=20)
                for _ in range(20):
                    r = subprocess.run([shutil.which("squeue") or "squeue", "-h"], env=env, capture_output=True,
                                       text=True, timeout=20)
                    if r.returncode != 0 or not r.stdout.strip():
                        break
                    time.sleep(0.5)
            except (OSError, subprocess.SubprocessError):
                pass
        for p in reversed(self.procs):            # the slurmds, slurmctld, then munged
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait(timeout=5)
                    except (ProcessLookupError, subprocess.TimeoutExpired):
                        pass
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)
