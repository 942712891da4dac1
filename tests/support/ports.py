"""Loopback ports for the servers tests start, safe when several test processes run at once.

A port is taken from above the kernel's ephemeral range (``net.ipv4.ip_local_port_range`` ends at
60999 by default), so an outgoing connection of any process can never grab it between the check
and the server binding it, or while a server is restarted on the same port. Each pytest-xdist
worker draws from its own slice of that range, so two workers of one run never race for a port;
the bind check guards against everything else (another run on the same machine).
"""

from __future__ import annotations

import os
import random
import socket

LOW, HIGH = 61000, 65500  # above the default ephemeral range, below 65535


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ... (absent without xdist)
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = (HIGH - LOW) // max(count, 1)
    start = LOW + (index % max(count, 1)) * size
    return range(start, start + size - 1)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, pair: bool = False) -> int:
    """A free loopback port (``pair``: P and P+1 both free, for servers that also bind P+1)."""
    candidates = _slice()
    for _ in range(500):
        port = random.choice(candidates)
        if _bindable(port) and (not pair or _bindable(port + 1)):
            return port
    raise RuntimeError(f"no free loopback port in {candidates.start}-{candidates.stop}")
