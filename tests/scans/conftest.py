"""Fixtures for scheduled scans: a running broker (real OpenBao, SQLite) with the scan scheduler."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.broker import RunningBroker, start_broker
from support.wait import DEADLINE, wait_until

from broker.openbao_server import OpenBaoServer
from broker.runtime import start_scan_scheduler


@pytest.fixture(scope="module")
def scan_broker(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("scan-broker"), openbao, scan_roots=[tempfile.gettempdir(), "/var/log/agents"]
    )
    running.workers.scans = start_scan_scheduler(running.container, poll_seconds=0.3)
    yield running
    running.stop()


def wait_for(probe: Callable[[], Any], timeout: float = DEADLINE, interval: float = 0.1) -> Any:
    """``probe``'s first truthy value (see support.wait.wait_until: a deadline, never a sleep)."""
    return wait_until(probe, timeout, what=getattr(probe, "__name__", "a condition"), interval=interval)
