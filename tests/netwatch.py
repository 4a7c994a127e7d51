"""Which TCP/UDP connections the processes of a test launch hold, sampled with `ss` while it
runs: the multi-node tests must keep every byte on loopback addresses (MPI's own traffic, the
out-of-band channel of mpirun/orted, gloo, the TCPStore, ssh)."""
from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import threading
from typing import Callable

SS = shutil.which("ss")
_PIDS = re.compile(r"pid=(\d+)")


def _host(addr: str) -> str:
    host = addr.rsplit(":", 1)[0].strip("[]")
    return host.split("%")[0]


def is_loopback(addr: str) -> bool:
    host = _host(addr)
    if host in ("*", "0.0.0.0", "::"):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class NetWatch:
    """start(); ...; stop() -> (connections seen of our processes, those not loopback on both ends)."""

    def __init__(self, ours: Callable[[], set[int]], every: float = 0.5):
        self.ours = ours
        self.every = every
        self.seen: set[str] = set()
        self.bad: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "NetWatch":
        self._thread.start()
        return self

    def stop(self) -> tuple[set[str], set[str]]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.seen, self.bad

    def sample(self) -> None:
        # established and other non-listening sockets, numeric, with their processes
        r = subprocess.run([SS, "-tunpH"], capture_output=True, text=True, timeout=20)
        pids = self.ours()
        for line in r.stdout.splitlines():
            cols = line.split()
            if len(cols) < 6:
                continue
            owners = {int(p) for p in _PIDS.findall(line)}
            if not owners & pids:
                continue
            local, peer = cols[4], cols[5]
            entry = f"{cols[0]} {local} -> {peer} {' '.join(cols[6:])}"
            self.seen.add(entry)
            if not (is_loopback(local) and is_loopback(peer)):
                self.bad.add(entry)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sample()
            except (OSError, subprocess.SubprocessError):
                continue
