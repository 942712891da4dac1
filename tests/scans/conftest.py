"""Fixtures for scheduled scans: a running broker (real OpenBao, SQLite) with the scan scheduler."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.broker import RunningBroker, start_broker

from broker.openbao_server import OpenBaoServer
from broker.runtime import start_scan_scheduler


@pytest.fixture(scope="module")
def scan_broker(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    running = start_broker(tmp_path_factory.mktemp("scan-broker"), openbao,
                           scan_roots=[tempfile.gettempdir(), "/var/log/agents"])
    running.workers.scans = start_scan_scheduler(running.container, poll_seconds=0.3)
    yield running
    running.stop()


def wait_for(probe: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)
