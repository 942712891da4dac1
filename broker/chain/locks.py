"""Per-task locks: one request of a task at a time through the chain detectors, on every replica.

A task's credential requests, reported events, leaks and escalations must be decided one after
another, so each detector sees every earlier step of the task whichever replica handled it.

- :class:`LocalTaskLocks` (SQLite, one process): striped re-entrant locks.
- :class:`PostgresTaskLocks` (PostgreSQL, any number of replicas): the local stripe first (so one
  process holds at most one database connection per waiting task), then a transaction-scoped
  advisory lock ``pg_advisory_xact_lock(NAMESPACE, key(task_id))`` on a connection of a small
  dedicated pool, held until the request is done. The lock dies with the holder's connection, so
  a replica killed mid-request never leaves a task locked. Re-entrant per thread: a nested
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

from sqlalchemy import Engine, create_engine, text

from broker.errors import UpstreamUnavailable

LOCK_STRIPES = 64
# first key of the two-int advisory lock: "nhit" (nhi task); other users pick other namespaces
NAMESPACE = 0x6E686974


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

    def __init__(self, url: str, *, wait_seconds: float = 30.0, pool_size: int = 2, max_overflow: int = 62) -> None:
        # its own pool: a request holds its lock connection while it uses the store's pool, so
        # sharing one pool could exhaust it with lock holders waiting for a second connection
        self.engine: Engine = create_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, pool_timeout=wait_seconds
        )
        self.wait_ms = int(wait_seconds * 1000)
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

        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise UpstreamUnavailable("the store is unavailable (task lock)") from exc
        try:
            try:
                tx = conn.begin()
                # a bounded wait: a stuck holder yields 503, never an unserialised decision
                conn.execute(text(f"SET LOCAL lock_timeout = {self.wait_ms}"))
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": NAMESPACE, "key": task_key(task_id)}
                )
            except SQLAlchemyError as exc:
                raise UpstreamUnavailable(f'could not lock task "{task_id}" in the store') from exc
            try:
                yield
            finally:
                try:
                    tx.rollback()  # ends the transaction: releases the advisory lock
                except SQLAlchemyError:
                    conn.invalidate()  # a dead connection released it already
        finally:
            conn.close()

    def close(self) -> None:
        self.engine.dispose()
