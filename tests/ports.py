"""Loopback ports for the tests that start real process groups, launchers and daemons."""
from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 now (all bound at once, so no two are the same;
    released before return: the launch that uses them binds them again). torchrun's
    --master_port 0 hangs its workers, and a fixed port collides between test runs: pick one."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]
