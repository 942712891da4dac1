"""Per-task locks: one request of a task at a time through the chain detectors, on every replica.

A task's credential requests, reported events, leaks and escalations must be decided one after
another, so each detector sees every earlier step of the task whichever replica handled it.

- :class:`LocalTaskLocks` (SQLite, one process): striped re-entrant locks.
- :class:`PostgresTaskLocks` (PostgreSQL, any number of replicas): the local stripe first (so one
  process holds at most one database connection per waiting task), then a session-level
  advisory lock ``pg_advisory_lock(NAMESPACE, key(task_id))`` on an autocommit connection of a
  dedicated pool, held until the request is done and released with ``pg_advisory_unlock`` (a
  connection whose unlock did not succeed is closed, never pooled). The lock dies with the
  holder's connection, so a replica killed mid-request never leaves a task locked. Re-entrant per thread: a nested
  ``hold`` of the same task in the same thread does not take a second connection (which would
  wait on itself).

Why an advisory lock and not ``SELECT ... FOR UPDATE`` on the task row: the request spans several
short write transactions (decision, escalation, grant) and a backend call; folding them into one
transaction would hold row locks across an OpenBao round trip and change every repository call.
The advisory lock serialises exactly the unit that must be serialised and nothing else.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from sqlalchemy import Engine, create_engine, event, text

from broker.errors import UpstreamUnavailable

LOCK_STRIPES = 64
# first key of the two-int advisory lock: "nhit" (nhi task); other users pick other namespaces
NAMESPACE = 0x6E686974


_LOCK = text("SELECT pg_advisory_lock(:ns, :key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:ns, :key)")


class TaskLocks(Protocol):
    def hold(self, task_id: str) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


def task_key(task_id: str) -> int:
    """A stable signed 32-bit key for ``task_id`` (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(task_id.encode(), digest_size=4).digest(), "big", signed=True)


class LocalTaskLocks:
    """Striped re-entrant locks: serialises a task's requests inside this process only."""

    def __init__(self) -> None:
        self._stripes = [threading.RLock() for _ in range(LOCK_STRIPES)]

    def stripe(self, task_id: str) -> threading.RLock:
        return self._stripes[task_key(task_id) % LOCK_STRIPES]

    @contextmanager
    def hold(self, task_id: str) -> Iterator[None]:
        with self.stripe(task_id):
            yield

    def close(self) -> None:
        pass


class PostgresTaskLocks:
    """Serialises a task's requests across every replica sharing one PostgreSQL store."""

    def __init__(self, url: str, *, wait_seconds: float = 30.0, pool_size: int = 16, max_overflow: int = 48) -> None:
        # its own pool: a request holds its lock connection while it uses the store's pool, so
        # sharing one pool could exhaust it with lock holders waiting for a second connection.
        # ``pool_size`` covers the requests a process serves at once: an overflow connection is
        # opened for one lock and closed after it (a PostgreSQL backend started and stopped per
        # request: with 2, four concurrent requests per worker cost more CPU in connecting than
        # in deciding)
        self.engine: Engine = create_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=wait_seconds
        )
        self.wait_ms = int(wait_seconds * 1000)
        from broker.store.db import ping_when_idle  # deferred like the rest of the PostgreSQL path

        ping_when_idle(self.engine)
        wait_ms = self.wait_ms

        # this pool's connections only ever wait on task locks: the bounded wait is a session
        # setting made once per connection, not a SET LOCAL round trip per lock
        @event.listens_for(self.engine, "connect")
        def _lock_timeout(dbapi_conn: object, _record: object) -> None:
            cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
            cur.execute(f"SET lock_timeout = {wait_ms}")
            cur.close()
            dbapi_conn.commit()  # type: ignore[attr-defined]

        self._local = LocalTaskLocks()
        self._held = threading.local()

    def _held_set(self) -> set[str]:
        held: set[str] | None = getattr(self._held, "tasks", None)
        if held is None:
            held = set()
            self._held.tasks = held
        return held

    @contextmanager
    def hold(self, task_id: str) -> Iterator[None]:
        held = self._held_set()
        with self._local.stripe(task_id):
            if task_id in held:  # re-entrant: this thread already holds the task's lock
                yield
                return
            with self._acquire(task_id):
                held.add(task_id)
                try:
                    yield
                finally:
                    held.discard(task_id)

    @contextmanager
    def _acquire(self, task_id: str) -> Iterator[None]:
        # deferred: only the PostgreSQL lock path needs it
        from sqlalchemy.exc import SQLAlchemyError

        key = {"ns": NAMESPACE, "key": task_key(task_id)}
        try:
            # autocommit, a session-level lock: one round trip to take it, one to release it (a
            # transaction-scoped lock needs BEGIN, the lock and ROLLBACK)
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise UpstreamUnavailable("the store is unavailable (task lock)") from exc
        try:
            try:
                # a bounded wait (lock_timeout, set on connect): a stuck holder yields 503, never an
                # unserialised decision
                conn.execute(_LOCK, key)
            except SQLAlchemyError as exc:
                raise UpstreamUnavailable(f'could not lock task "{task_id}" in the store') from exc
            try:
                yield
            finally:
                try:
                    released = conn.execute(_UNLOCK, key).scalar()
                except SQLAlchemyError:
                    released = False
                if not released:  # never pool a connection that may still hold the lock:
                    conn.invalidate()  # closing it releases every lock it holds
        finally:
            conn.close()

    def close(self) -> None:
        self.engine.dispose()
