"""Loopback ports of the topology: a block from a base port, checked free before use."""

from __future__ import annotations

import socket

from broker.errors import BrokerError

# offsets from the base port (the load balancer's)
OPENBAO_LB = 1
REPLICAS = 10  # replica i: base + 10 + i (up to 9 replicas)
OPENBAO_NODES = 20  # node i: base + 20 + 2 i (API) and + 1 (cluster)
POSTGRES = 30
BLOCK = 32
MAX_REPLICAS = 9


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_block(base: int, offsets: list[int]) -> None:
    busy = [base + o for o in offsets if not is_free(base + o)]
    if busy:
        raise BrokerError(
            f"ports {busy} on 127.0.0.1 are in use; choose another --port (up --ha uses --port .. --port+{BLOCK - 1})"
        )


def free_block(size: int = BLOCK, start: int = 20000, stop: int = 32000) -> int:
    """A base port such that base .. base+size-1 are all free (for tests). Below Linux's ephemeral
    range (32768+), so ports the kernel hands out to other processes' ``bind(0)`` and outgoing
    connections cannot take one between this check and the bind."""
    # deferred: only a port search that collides needs it
    import random

    for _ in range(200):
        base = random.randrange(start, stop - size)  # noqa: S311 - not a secret
        if all(is_free(base + i) for i in range(size)):
            return base
    raise BrokerError("no free block of loopback ports")
