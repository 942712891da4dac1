"""Events appended as one batch (:meth:`AuditLog.batch`) form the same chain as one by one, in three
statements; a batch that raises writes nothing; concurrent batches (PostgreSQL's head row lock)
interleave without breaking the chain."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Engine

from broker.audit import AuditLog
from broker.audit.keys import load_key_file
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.repo import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'broker.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    eng = make_engine(url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture()
def audit(engine: Engine, tmp_path: Path) -> AuditLog:
    log = AuditLog(Store(engine), load_key_file(tmp_path / "audit.key", create=True))
    log.record("task.opened", actor="agent-a", task_id="tsk_0", outcome="active")  # keys the chain
    return log


def test_audit_batch_appends_linked_events_in_one_head_lock_and_one_insert(audit: AuditLog, engine: Engine) -> None:
    statements: list[str] = []

    def on_execute(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    with audit.store.write() as conn:
        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            with audit.batch(conn) as batch:
                ids = [
                    batch.append("decision.allowed", actor="agent-a", task_id="tsk_1", outcome="allow", data={"i": 1}),
                    batch.append("credential.issued", actor="agent-a", task_id="tsk_1", outcome="issued"),
                    batch.append("task.ended", actor="agent-a", task_id="tsk_1", outcome="ended"),
                ]
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
    # the head locked and advanced, the rows inserted, the head's hash set: three statements; two
    # on PostgreSQL (the insert is a CTE of the head's update)
    assert len(statements) == (2 if engine.dialect.name == "postgresql" else 3), statements
    assert sum("INSERT INTO audit_events" in s for s in statements) == 1
    events = audit.events(task_id="tsk_1")
    assert [e.event_id for e in events] == ids
    assert [e.seq for e in events] == [3, 4, 5]  # after the anchor (1) and task.opened (2)
    assert [e.kind for e in events] == ["decision.allowed", "credential.issued", "task.ended"]
    assert events[1].prev_hash == events[0].hash and events[2].prev_hash == events[1].hash
    head = audit.head()
    assert head.seq == 5 and head.hash == events[-1].hash
    assert audit.verify().ok


def test_audit_batch_that_raises_writes_nothing(audit: AuditLog) -> None:
    before = audit.head()
    with pytest.raises(RuntimeError), audit.store.write() as conn, audit.batch(conn) as batch:
        batch.append("decision.allowed", actor="agent-a", task_id="tsk_2", outcome="allow")
        raise RuntimeError("the transaction fails")
    assert audit.head() == before
    assert audit.events(task_id="tsk_2") == []
    assert audit.verify().ok


def test_audit_batch_copies_and_redacts_data_when_appended(audit: AuditLog) -> None:
    data = {"token": "s.very-secret-value", "n": 1}
    with audit.store.write() as conn, audit.batch(conn) as batch:
        batch.append("credential.issued", actor="agent-a", task_id="tsk_3", outcome="issued", data=data)
        data["n"] = 2  # a later change of the caller's mapping is not what was recorded
    (recorded,) = audit.events(task_id="tsk_3")
    assert recorded.data["n"] == 1
    assert "s.very-secret-value" not in str(recorded.data)
    assert audit.verify().ok


def test_audit_batch_keys_an_unkeyed_chain_first(engine: Engine, tmp_path: Path) -> None:
    """The first batch on an unkeyed chain writes the key anchor before its events."""
    audit = AuditLog(Store(engine), load_key_file(tmp_path / "audit.key", create=True))
    with audit.store.write() as conn, audit.batch(conn) as batch:
        batch.append("task.opened", actor="agent-a", task_id="tsk_4", outcome="active")
        batch.append("decision.allowed", actor="agent-a", task_id="tsk_4", outcome="allow")
    result = audit.verify()
    assert result.ok and result.events == 3 and result.keyed_from == 1
    assert [e.seq for e in audit.events(task_id="tsk_4")] == [2, 3]


def test_tampering_inside_a_batch_is_detected(audit: AuditLog) -> None:
    with audit.store.write() as conn, audit.batch(conn) as batch:
        batch.append("decision.allowed", actor="agent-a", task_id="tsk_5", outcome="allow")
        batch.append("credential.issued", actor="agent-a", task_id="tsk_5", outcome="issued")
    first = audit.events(task_id="tsk_5")[0]
    with audit.store.write() as conn:
        conn.execute(update(t.audit_events).where(t.audit_events.c.seq == first.seq).values(actor="someone-else"))
    result = audit.verify()
    assert not result.ok and result.seq == first.seq and "modified" in (result.problem or "")


def test_concurrent_batches_keep_one_intact_chain(audit: AuditLog) -> None:
    """Writers on several connections (PostgreSQL: the head row lock orders them) never fork or
    break the chain, and each batch's events stay consecutive."""
    writers, batches = 4, 15
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for b in range(batches):
                with audit.store.write() as conn, audit.batch(conn) as batch:
                    for i in range(3):
                        batch.append("decision.allowed", actor=f"w{w}", task_id=f"tsk_w{w}_{b}", data={"i": i})
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    result = audit.verify()
    assert result.ok and result.events == 2 + writers * batches * 3
    for w in range(writers):
        for b in range(batches):
            seqs = [e.seq for e in audit.events(task_id=f"tsk_w{w}_{b}")]
            assert seqs == list(range(seqs[0], seqs[0] + 3))
