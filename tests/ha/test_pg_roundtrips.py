"""What the PostgreSQL store does to save round trips still holds its guarantees (issue 14).

Real PostgreSQL throughout:
- a pooled connection is pinged only after it sat idle (``ping_when_idle``): a connection the
  server killed while it was idle is replaced without an error; one killed between two quick
  uses fails that statement (fail closed) and the pool recovers on the next checkout;
- reads and the replay guard's insert run in autocommit: the insert is committed when it
  returns, a replayed ``jti`` is refused across processes' engines;
- task locks are session advisory locks with the bounded wait set once per connection: a second
  holder waits, times out with 503, and gets the lock once the first releases it;
- a grant notice carries the fingerprints; a bare grant id (an older replica) still works.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import create_engine, exc, text

from broker.chain.locks import PostgresTaskLocks
from broker.errors import UpstreamUnavailable
from broker.models import DecisionId, Grant, GrantId, GrantState, Task, TaskId, TaskState
from broker.services.grant_feed import GrantFeed, _parse_notice
from broker.store.db import make_engine, migrate, ping_when_idle
from broker.store.repo import GRANT_CHANNEL, GRANT_NOTICE_MAX_BYTES, Store, grant_notice
from scanners.known import KnownSecretIndex

pytestmark = [pytest.mark.ha, pytest.mark.postgres]


def _backend_pid(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(url: str, pid: int) -> None:
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            time.sleep(0.01)  # the condition: the backend is gone


def test_a_connection_killed_while_idle_is_replaced_without_an_error(pg_database) -> None:
    engine = create_engine(pg_database, pool_size=1, max_overflow=0)
    ping_when_idle(engine, 0.0)  # every checkout counts as idle: the ping always runs
    try:
        killed = _backend_pid(engine)
        _terminate(pg_database, killed)
        assert _backend_pid(engine) != killed  # pinged, found dead, replaced: no error reached us
    finally:
        engine.dispose()


def test_a_connection_killed_between_quick_uses_fails_closed_then_the_pool_recovers(pg_database) -> None:
    engine = create_engine(pg_database, pool_size=1, max_overflow=0)
    ping_when_idle(engine, 3600.0)  # never idle long enough to be pinged
    try:
        killed = _backend_pid(engine)
        _terminate(pg_database, killed)
        with pytest.raises(exc.DBAPIError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert _backend_pid(engine) != killed
    finally:
        engine.dispose()


def test_make_engine_does_not_ping_on_every_checkout(pg_database) -> None:
    engine = make_engine(pg_database)
    statements: list[str] = []
    try:
        _backend_pid(engine)
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        for _ in range(5):
            assert _backend_pid(engine) > 0
        assert not engine.pool._pre_ping  # type: ignore[attr-defined]
        assert statements == ["SELECT pg_backend_pid()"] * 5  # no SELECT 1 in between
    finally:
        engine.dispose()


def test_replay_guard_insert_is_committed_when_it_returns_and_refuses_a_replay(pg_database) -> None:
    first, second = make_engine(pg_database), make_engine(pg_database)
    try:
        migrate(first)
        a, b = Store(first), Store(second)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        assert a.record_jti("https://issuer.example", "jti-1", expires) is True
        # another engine (another process) sees it at once and refuses the replay
        with b.read() as conn:
            seen = conn.execute(text("SELECT count(*) FROM seen_jti WHERE jti = 'jti-1'")).scalar_one()
        assert seen == 1
        assert b.record_jti("https://issuer.example", "jti-1", expires) is False
        assert a.record_jti("https://issuer.example", "jti-1", expires) is False
        assert b.record_jti("https://other.example", "jti-1", expires) is True  # per issuer
    finally:
        first.dispose()
        second.dispose()


def test_task_lock_waits_is_bounded_and_is_released(pg_database) -> None:
    holder = PostgresTaskLocks(pg_database, wait_seconds=30)
    waiter = PostgresTaskLocks(pg_database, wait_seconds=0.3)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.hold("task-1"):
            held.set()
            release.wait(30)

    th = threading.Thread(target=hold)
    th.start()
    try:
        assert held.wait(30)
        with pytest.raises(UpstreamUnavailable, match="could not lock"), waiter.hold("task-1"):
            pass
        with waiter.hold("task-2"):  # another task is not blocked
            pass
        release.set()
        th.join(30)
        # released by pg_advisory_unlock: free at once; re-entrant in one thread
        with waiter.hold("task-1"), waiter.hold("task-1"):
            pass
        # nothing is left locked in the database
        conninfo = pg_database.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as admin:
            held_here = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            assert admin.execute(held_here).fetchone() == (0,)  # other tests' databases hold their own
    finally:
        release.set()
        th.join(30)
        holder.close()
        waiter.close()


def _grant(task_id: str, grant_id: str, fingerprints: tuple[str, ...], lengths: dict[str, int]) -> Grant:
    now = datetime.now(UTC)
    return Grant(
        grant_id=GrantId(grant_id),
        task_id=TaskId(task_id),
        decision_id=DecisionId("dec_1"),
        backend="vault_token",
        resource="demo-data",
        action="db.read",
        lease_id=None,
        accessor="acc",
        fingerprints=fingerprints,
        revocation={},
        covered_by_task_handle=True,
        public={},
        secret_lengths=lengths,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
        state=GrantState.ACTIVE,
    )


def test_grant_notice_carries_what_the_index_needs_and_falls_back_to_the_id() -> None:
    grant = _grant("tsk_1", "grt_1", ("fp-a", "fp-b"), {"fp-a": 28})
    assert _parse_notice(grant_notice(grant, "demo-agent")) == {
        "grant_id": "grt_1",
        "task_id": "tsk_1",
        "agent": "demo-agent",
        "fingerprints": {"fp-a": 28, "fp-b": None},
    }
    assert grant_notice(grant, None) == "grt_1"
    huge = replace(grant, fingerprints=tuple(f"fp-{i:05d}" for i in range(2000)))
    assert len(",".join(huge.fingerprints)) > GRANT_NOTICE_MAX_BYTES
    assert grant_notice(huge, "demo-agent") == "grt_1"  # too long: the feed reads the grant instead
    bad_notices = (
        "grt_1",
        "{",
        "[]",
        '{"grant_id": 1, "task_id": "t", "agent": "a", "fingerprints": {}}',
        '{"grant_id": "g", "task_id": "t", "agent": "a", "fingerprints": {"fp": "x"}}',
        '{"grant_id": "g", "task_id": "t", "agent": "a", "fingerprints": {"fp": true}}',
        '{"grant_id": "g", "task_id": "t", "agent": "a"}',
    )
    for bad in bad_notices:
        assert _parse_notice(bad) is None, bad


def _wait_found(index: KnownSecretIndex, text_: str) -> object:
    deadline = time.monotonic() + 30
    while not index.find(text_):
        assert time.monotonic() < deadline, "the grant never reached the index"
        time.sleep(0.005)
    return index.find(text_)[0][3]


def test_feed_adds_a_notice_without_reading_and_reads_a_grant_named_by_a_bare_id(pg_database) -> None:
    engine = make_engine(pg_database)
    migrate(engine)
    store = Store(engine)
    index = KnownSecretIndex(b"k" * 32)
    feed = GrantFeed(store, index, resync_seconds=3600).start()
    conninfo = pg_database.replace("postgresql+psycopg://", "postgresql://")
    try:
        assert feed.connected.wait(30)
        # a notice with the fingerprints, for a grant that is in no table: added from the notice alone
        fp = index.fingerprint("s3cr3t-value-issued-elsewhere")
        notice = json.dumps({"grant_id": "grt_n", "task_id": "tsk_n", "agent": "agent-n", "fingerprints": {fp: 29}})
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (GRANT_CHANNEL, notice))
        match = _wait_found(index, "x s3cr3t-value-issued-elsewhere y")
        assert (match.grant_id, match.task_id, match.agent) == ("grt_n", "tsk_n", "agent-n")  # type: ignore[attr-defined]
        # a grant written without its agent (as an older replica notifies): a bare id, read from the store
        now = datetime.now(UTC)
        task = Task(
            task_id=TaskId("tsk_old"),
            agent="agent-old",
            profile="p1",
            purpose="bare id",
            on_behalf_of=None,
            state=TaskState.ACTIVE,
            created_at=now,
            expires_at=now + timedelta(hours=1),
        )
        fp_old = index.fingerprint("an0ther-secret-from-an-older-replica")
        with store.write() as conn:
            store.create_task(conn, task)
            store.add_grant(conn, _grant("tsk_old", "grt_old", (fp_old,), {fp_old: 36}))
        match = _wait_found(index, "x an0ther-secret-from-an-older-replica y")
        assert (match.grant_id, match.task_id, match.agent) == ("grt_old", "tsk_old", "agent-old")  # type: ignore[attr-defined]
        assert feed.notified == 2
    finally:
        feed.stop()
        engine.dispose()
