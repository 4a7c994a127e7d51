"""Two "nodes" that are this machine, reached the way a real multi-node launch reaches them:
an sshd started here on a free 127.0.0.1 port with a throw-away host key and client key, and
an `ssh` wrapper first on PATH that adds a test-owned ssh config (aliases node1/node2 ->
127.0.0.1:port). So the deepspeed runner's own ssh check and pdsh's ssh module
(PDSH_RCMD_TYPE=ssh) both go through the real sshd, and ~/.ssh is never touched.

With own_hostnames=True each node also has its own host name (node1, node2): sshd runs every
command through `unshare --uts` + `hostname <node>`, a UTS namespace that changes nothing but the
name. MPI needs it: deepspeed/comm/comm.py mpi_discovery counts a rank's local rank by host name
("assuming hostnames are unique"), and Open MPI names its nodes by them. sshd then also runs
with an /etc/hosts that maps the node names to loopback addresses (tests/private_hosts.py), so looking
them up asks no DNS server; `hosts_file` is that file, for the launch command.

Used by tests/test_multinode*.py; everything lives in one temp folder that close() removes.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import private_hosts
from ports import free_port

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SSH = shutil.which("ssh")
PDSH = shutil.which("pdsh")
KEYGEN = shutil.which("ssh-keygen")
UNSHARE = shutil.which("unshare")
PRIVSEP_DIR = Path("/run/sshd")       # sshd refuses to start without its privilege-separation dir


def _node_login_env() -> str:
    """sshd's SetEnv line: the nodes' login environment has this session's venv first on PATH and
    its DeepSpeed op folder, as a cluster's shared venv would. Without it a rank started over ssh
    found Debian's ninja on sshd's default PATH, whose build log the venv's ninja does not take for
    its own: the ranks and the tests' own processes rebuilt DeepSpeed's shm op in turn (~40 s each
    time, inside a multi-node test's limit; one hang test 74 s in a whole-suite run, 22 s alone)."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
    if os.environ.get("TORCH_EXTENSIONS_DIR"):         # .ci/run's: the venv's own op folder
        env["TORCH_EXTENSIONS_DIR"] = os.environ["TORCH_EXTENSIONS_DIR"]
    return "SetEnv " + " ".join(f'"{k}={v}"' for k, v in env.items()) + "\n"


def missing_tools(pdsh: bool = True) -> str | None:
    """Why the loopback nodes cannot be set up here, or None (pdsh: only the pdsh runner needs it)."""
    absent = [n for n, p in (("sshd (openssh-server)", SSHD), ("ssh", SSH), ("ssh-keygen", KEYGEN),
                             ("pdsh", PDSH if pdsh else "-")) if not p]
    if absent:
        return "not installed: " + ", ".join(absent) + " (apt-get install -y openssh-server pdsh)"
    return None


class LoopbackNodes:
    """start() -> env additions for the launcher; close() stops sshd and removes everything."""

    def __init__(self, hosts: tuple[str, ...] = ("node1", "node2"), own_hostnames: bool = False):
        self.hosts = hosts
        self.own_hostnames = own_hostnames
        self.dir = Path(tempfile.mkdtemp(prefix="dsdoctor-nodes-"))
        os.chmod(self.dir, 0o700)                  # sshd's StrictModes checks the key's folders
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._made_privsep = False
        self.hosts_file: Path | None = None

    def start(self, timeout: float = 15.0) -> dict[str, str]:
        d = self.dir
        for name in ("host_key", "client_key"):
            subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                           check=True, timeout=30, stdin=subprocess.DEVNULL)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        os.chmod(d / "authorized_keys", 0o600)
        if self.own_hostnames:
            as_node = d / "as_node"
            as_node.write_text(
                "#!/bin/sh\n# the client names its node (ssh_config SetEnv): run the command under that host name\n"
                'cmd="${SSH_ORIGINAL_COMMAND:-exec $SHELL}"\n'
                '[ -n "$LOOPBACK_NODE" ] || exec sh -c "$cmd"\n'
                f'exec {UNSHARE} --uts sh -c \'hostname "$LOOPBACK_NODE" && exec sh -c "$1"\' sh "$cmd"\n')
            as_node.chmod(0o755)
            node_cfg = f"AcceptEnv LOOPBACK_NODE\nForceCommand {as_node}\n"
        else:
            node_cfg = "AcceptEnv no\n"
        (d / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {d / 'host_key'}\n{_node_login_env()}"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nMaxStartups 50\n"
            f"{node_cfg}PrintMotd no\nLogLevel ERROR\n")
        cfg = "".join(
            f"Host {h}\n  HostName 127.0.0.1\n  Port {self.port}\n  IdentityFile {d / 'client_key'}\n"
            f"  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile {d / 'known_hosts'}\n"
            f"  LogLevel ERROR\n  BatchMode yes\n  ConnectTimeout 10\n"
            + (f"  SetEnv LOOPBACK_NODE={h}\n" if self.own_hostnames else "") for h in self.hosts)
        (d / "ssh_config").write_text(cfg)
        bin_dir = d / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {SSH} -F {d / "ssh_config"} "$@"\n')
        wrapper.chmod(0o755)
        if not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
            self._made_privsep = True
        sshd = [SSHD, "-D", "-e", "-f", str(d / "sshd_config")]
        if self.own_hostnames:
            self.hosts_file = private_hosts.hosts_file(d, self.hosts)
            sshd = private_hosts.command(sshd, self.hosts_file)
        self.proc = subprocess.Popen(sshd,
                                     stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "wb"),
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(d / 'sshd.log').read_text()[-500:]}")
            r = subprocess.run([str(wrapper), self.hosts[0], "true"], capture_output=True, timeout=15,
                               stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            time.sleep(0.3)
        else:
            self.close()
            raise RuntimeError(f"sshd on port {self.port} did not accept the test key within {timeout} s")
        return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PDSH_RCMD_TYPE": "ssh"}

    def hostfile(self, folder: Path, slots: int = 1) -> Path:
        p = folder / "hostfile"
        p.write_text("".join(f"{h} slots={slots}\n" for h in self.hosts))
        return p

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._made_privsep:
            try:
                PRIVSEP_DIR.rmdir()
            except OSError:
                pass
            self._made_privsep = False
