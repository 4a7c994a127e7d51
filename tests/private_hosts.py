"""Run a command where the test's node names resolve to 127.0.0.1 without asking DNS.

The multi-node tests name their "nodes" node1, node2: ranks, orted, slurmd and friends look those
names up (gloo resolves the host name, Open MPI the hostfile's hosts, ...), and torch's TCPStore
the name of 127.0.0.1 as an IPv6-mapped address. None is in /etc/hosts, so each lookup would go
out as a DNS query to this machine's resolver, which is not a loopback address (seen with strace). So these processes run in their own mount namespace (`unshare --mount`,
private propagation) where a copy of /etc/hosts with the node names added is bind-mounted over
/etc/hosts; the real file is never touched, and the mount ends with the namespace's processes.
Each node name gets its own loopback address (127.0.0.2, 127.0.0.3, ...): on lo like 127.0.0.1,
but not an address of an interface, so mpirun does not take node1 for its own host and starts
it through ssh as it would a remote node (orte: opal_ifislocal).
`hostname=` also gives the command its own UTS namespace with that host name.
"""
from __future__ import annotations

import shutil
from pathlib import Path

UNSHARE = shutil.which("unshare")


def hosts_file(folder: Path, names: tuple[str, ...]) -> Path:
    try:
        base = Path("/etc/hosts").read_text()
    except OSError:
        base = "127.0.0.1 localhost\n"
    p = folder / "hosts"
    # torch's TCPStore looks up the name of its peer's IPv4-mapped IPv6 address (::ffff:127.0.0.1):
    # /etc/hosts lists 127.0.0.1 only, so without these lines each lookup would be a DNS query too
    lines = ["::ffff:127.0.0.1 localhost"]
    for i, n in enumerate(names):
        lines += [f"127.0.0.{2 + i} {n}", f"::ffff:127.0.0.{2 + i} {n}"]
    p.write_text(base.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    return p


def command(cmd: list[str], hosts: Path, hostname: str | None = None) -> list[str]:
    """`cmd` run with `hosts` as its /etc/hosts (and `hostname` as its host name)."""
    setup = 'mount --bind "$0" /etc/hosts && ' + (f"hostname {hostname} && " if hostname else "")
    return [UNSHARE, "--mount", "--propagation", "private", *(["--uts"] if hostname else []),
            "sh", "-c", setup + 'exec "$@"', str(hosts), *cmd]



def missing() -> str | None:
    """Why namespaces cannot be made here (not root, a container without CAP_SYS_ADMIN), or None."""
    import subprocess
    if UNSHARE is None:
        return "unshare (util-linux) is not installed"
    try:
        r = subprocess.run([UNSHARE, "--mount", "--uts", "--propagation", "private", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unshare failed: {e}"
    return None if r.returncode == 0 else f"cannot make mount/UTS namespaces here: {r.stderr.strip()[:200]}"
