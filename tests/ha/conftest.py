"""Fixtures for the HA tests: replicas (``serve`` subprocesses) on one PostgreSQL and one OpenBao."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest


@pytest.fixture()
def fresh_database(pg_server) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the real server (SQLAlchemy URLs); drops them all afterwards."""
    made: list[str] = []

    def make() -> str:
        name = "nhi_test_ha_" + uuid.uuid4().hex[:10]
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql+psycopg://{pg_server.superuser}@{pg_server.host}:{pg_server.port}/{name}"

    yield make
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
