"""The same flow on both stores: SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import threading

import hvac
import pytest
from support.broker import start_broker

from broker.audit import AuditLog, LocalAuditKey
from broker.store.db import make_engine, migrate
from broker.store.repo import Store

pytestmark = [pytest.mark.openbao, pytest.mark.postgres]


def test_full_credential_flow_on_postgresql_store(openbao, pg_database, tmp_path):
    running = start_broker(tmp_path, openbao, database_url=pg_database)
    try:
        agent = running.agent()
        with agent.task("demo", purpose="pg store") as task:
            cred = task.credential("db.read", "demo-data")
            token = cred.secret("token")
            assert hvac.Client(url=openbao.address, token=token).auth.token.lookup_self()["data"]["ttl"] > 0
        with pytest.raises(hvac.exceptions.Forbidden):
            hvac.Client(url=openbao.address, token=token).auth.token.lookup_self()
        events = running.admin().audit(task_id=task.task_id)
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "task.opened" and "credential.issued" in kinds and "credential.revoked" in kinds
        assert running.container.audit.verify().ok
    finally:
        running.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_audit_appends_keep_one_unbroken_chain(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("pg_database")
    engine = make_engine(url)
    migrate(engine)
    migrate(engine)  # idempotent
    log = AuditLog(Store(engine), LocalAuditKey(b"k" * 32))

    def writer(n: int) -> None:
        for i in range(25):
            log.record("decision.allowed", actor=f"w{n}", data={"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    result = log.verify()
    assert result.ok and result.events == 151  # the key anchor and 6 x 25 events
    engine.dispose()
