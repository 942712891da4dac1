"""The revocation outbox on a real SQLite store: backoff, due rows, confirm-once, drain on recovery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from broker.store import outbox
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.repo import Store, utcnow
from broker.store.rows import FailureKind, Revocation


@pytest.fixture()
def store(tmp_path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'o.db'}")
    migrate(engine)
    return Store(engine)


def _row(store: Store, row_id: int) -> Revocation:
    with store.read() as conn:
        row = outbox.get(conn, row_id)
    assert row is not None
    return row


def test_failed_revocation_backs_off_exponentially_up_to_the_cap(store):
    assert [outbox.backoff_seconds(a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert outbox.backoff_seconds(50) == outbox.MAX_BACKOFF_SECONDS
    with store.write() as conn:
        rid = outbox.enqueue(conn, task_id="tsk_1", backend="vault_token", reference={"accessor": "a"}, reason="r")
    for attempt in (1, 2, 3):
        row = _row(store, rid)
        before = utcnow()
        with store.write() as conn:
            outbox.mark_failed(conn, row, "OpenBao at x is unreachable", kind=FailureKind.UNAVAILABLE)
        row = _row(store, rid)
        assert row.attempts == attempt and row.state == "pending"
        delay = (row.next_attempt_at - before).total_seconds()
        assert outbox.backoff_seconds(attempt) - 0.05 <= delay <= outbox.backoff_seconds(attempt) + 0.5
        with store.read() as conn:
            assert outbox.due(conn, utcnow()) == []  # not due while backing off
            assert outbox.due(conn, utcnow() + timedelta(seconds=delay + 0.1))[0].id == rid


def test_backend_recovery_makes_only_unavailable_rows_due_now(store):
    with store.write() as conn:
        down = outbox.enqueue(conn, task_id="tsk_1", backend="vault_token", reference={}, reason="r")
        refused = outbox.enqueue(conn, task_id="tsk_2", backend="vault_token", reference={}, reason="r")
    with store.write() as conn:
        outbox.mark_failed(conn, _row(store, down), "unreachable", kind=FailureKind.UNAVAILABLE)
        outbox.mark_failed(conn, _row(store, refused), "permission denied", kind=FailureKind.ERROR)
    with store.read() as conn:
        assert outbox.waiting_on_unavailable(conn, utcnow()) == ["vault_token"]
    with store.write() as conn:
        assert outbox.retry_now(conn, "vault_token") == 1
    with store.read() as conn:
        assert [r.id for r in outbox.due(conn, utcnow())] == [down]


def test_a_revocation_is_confirmed_once(store):
    with store.write() as conn:
        rid = outbox.enqueue(conn, task_id="tsk_1", backend="vault_token", reference={}, reason="r")
    row = _row(store, rid)
    with store.write() as conn:
        assert outbox.mark_done(conn, row) is True
    with store.write() as conn:
        assert outbox.mark_done(conn, row) is False  # a second worker's confirmation is a no-op
    assert _row(store, rid).state == "done"


def test_oldest_pending_age_drives_the_stuck_report(store):
    with store.write() as conn:
        rid = outbox.enqueue(conn, task_id="tsk_1", backend="vault_token", reference={}, reason="r")
        conn.execute(
            update(t.revocations).where(t.revocations.c.id == rid).values(created_at=utcnow() - timedelta(seconds=120))
        )
    with store.read() as conn:
        assert outbox.pending_count(conn) == 1
        assert 119 < (outbox.oldest_pending_age(conn, utcnow()) or 0) < 125
