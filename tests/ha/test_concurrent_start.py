"""Replicas starting at once on an empty PostgreSQL database all start (migrations take an
advisory lock: one migrates, the others wait and find the schema at head)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from support.replicas import base_config, make_replica, replica_env

from broker.identity import DevIssuer

pytestmark = [pytest.mark.ha, pytest.mark.openbao, pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize("round_", [1, 2, 3])
def test_three_replicas_starting_at_once_on_an_empty_database_all_start(
    openbao, fresh_database, tmp_path, round_
) -> None:
    url = fresh_database()
    base = Path("/tmp") / f"nhi-ha-start-{tmp_path.name}"
    config = base_config(
        base, database_url=url, openbao_addr=openbao.address, issuer=DevIssuer.load_or_create(base / "issuer")
    )
    env = replica_env(openbao.root_token.reveal())
    replicas = [make_replica(base, f"r{i}", config, env) for i in range(3)]
    try:
        for r in replicas:  # no wait in between: all three race for the empty schema
            r.start()
        for r in replicas:
            r.wait_ready()
        assert all(r.alive() for r in replicas)
        for r in replicas:
            assert "Traceback" not in r.tail(20000)  # (the scheduler retries its own table race: a warning)
        engine = create_engine(url)
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        engine.dispose()
        assert len(versions) == 1  # one schema, migrated once to head
    finally:
        for r in replicas:
            r.stop()
        shutil.rmtree(base, ignore_errors=True)
