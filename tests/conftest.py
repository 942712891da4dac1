"""Shared fixtures: real OpenBao (dev server from the wheel), a running broker on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

sys.path.append(str(Path(__file__).parent))  # for `support`; never ahead of the real packages

from support.broker import RunningBroker, start_broker
from support.ports import free_port

from broker.logging import configure_logging
from broker.openbao_server import OpenBaoServer, start_dev_server

# Hypothesis: no per-example deadline and no "too slow" health check (both are stopwatches that a
# busy machine trips); tests that need fewer examples say so with @settings.
hypothesis.settings.register_profile("suite", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile("suite")


@pytest.fixture(scope="session", autouse=True)
def broker_logging() -> None:
    """Logs as the broker's runners configure them (``serve``'s default, JSON), in every test
    process whatever order its tests run in. Unconfigured, structlog renders an exception with
    rich and every frame's locals: seconds per 500 on a busy machine, so a test's client timed out."""
    configure_logging("json")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    log = tmp_path_factory.mktemp("openbao") / "bao.log"
    server = start_dev_server(port=free_port(pair=True), log_path=log)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """A broker on SQLite with the demo seed, served by uvicorn on a loopback port."""
    running = start_broker(tmp_path_factory.mktemp("broker"), openbao)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL: 127.0.0.1:5432 if it answers, else a private cluster from the Debian
    binaries; skipped with the precise reason when neither is possible."""
    from support.postgres import find_or_start

    found = find_or_start()
    if isinstance(found, str):
        pytest.skip(f"PostgreSQL store tests did not run: {found}")
    yield found
    found.stop()


@pytest.fixture(scope="session")
def private_pg():
    """A private PostgreSQL cluster of this test process (never the shared 127.0.0.1:5432) where
    every role but ``postgres`` logs in with a SCRAM password. For tests that configure roles
    other processes also configure (``nhi-broker up`` sets ``nhi_openbao``'s password on the shared
    server), and for tests where "the old password no longer works" must be a real check."""
    import os

    from support.postgres import find_or_start

    before = os.environ.get("NHI_TEST_PG_PRIVATE")
    os.environ["NHI_TEST_PG_PRIVATE"] = "1"
    try:
        found = find_or_start()
    finally:
        if before is None:
            os.environ.pop("NHI_TEST_PG_PRIVATE", None)
        else:
            os.environ["NHI_TEST_PG_PRIVATE"] = before
    if isinstance(found, str):
        pytest.skip(f"no private PostgreSQL cluster: {found}")
    yield found
    found.stop()


@pytest.fixture()
def pg_database(pg_server):
    """A fresh, empty database on the real server; dropped afterwards. Yields a SQLAlchemy URL."""
    import uuid

    import psycopg

    name = "nhi_test_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{pg_server.superuser}@{pg_server.host}:{pg_server.port}/{name}"
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory):
    """A real moto server on loopback with IAM auth on; ``.admin`` holds the broker's keys."""
    from support.moto import start_moto

    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()
