"""The revocation outbox: a revocation is written here before it is attempted.

A row is ``pending`` until the backend confirms; the worker (``rotation.revocation_worker``)
retries due rows with exponential backoff. Rows survive crashes and restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from broker.models import GrantId, GrantState
from broker.store import tables as t
from broker.store.repo import utcnow
from broker.store.rows import (
    FailureKind,
    GrantToRevoke,
    HandleState,
    Revocation,
    RevocationState,
    aware_ts,
)

BASE_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 60.0
PENDING = RevocationState.PENDING.value


def enqueue(
    conn: Connection,
    *,
    task_id: str,
    backend: str,
    reference: Mapping[str, Any],
    reason: str,
    grant_id: str | None = None,
    handle_id: int | None = None,
) -> int:
    now = utcnow()
    result = conn.execute(
        insert(t.revocations).values(
            task_id=task_id,
            grant_id=grant_id,
            handle_id=handle_id,
            backend=backend,
            reference=dict(reference),
            reason=reason,
            state=PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def grants_to_revoke(conn: Connection, task_id: str, handled_backends: set[str]) -> list[GrantToRevoke]:
    """The task's active grants that need a revocation of their own: those not covered by a task
    handle of their backend (an OpenBao child dies with its parent: no row, no call)."""
    g = t.grants.c
    q = select(g.grant_id, g.backend, g.revocation).where(
        and_(g.task_id == task_id, g.state == GrantState.ACTIVE.value)
    )
    if handled_backends:
        q = q.where(or_(g.covered_by_task_handle.is_(False), g.backend.not_in(sorted(handled_backends))))
    return [
        GrantToRevoke(grant_id=GrantId(r.grant_id), backend=r.backend, revocation=dict(r.revocation or {}))
        for r in conn.execute(q.order_by(g.issued_at))
    ]


def due(conn: Connection, now: datetime, limit: int = 100, task_id: str | None = None) -> list[Revocation]:
    q = select(t.revocations).where(and_(t.revocations.c.state == PENDING, t.revocations.c.next_attempt_at <= now))
    if task_id:
        q = q.where(t.revocations.c.task_id == task_id)
    # task handles first: revoking a parent takes its children with it
    q = q.order_by(t.revocations.c.handle_id.is_(None), t.revocations.c.id).limit(limit)
    return [Revocation.from_row(r._mapping) for r in conn.execute(q)]


def for_task(conn: Connection, task_id: str, limit: int = 1000) -> list[Revocation]:
    """Every revocation of a task, pending or done, in the order they were queued."""
    q = select(t.revocations).where(t.revocations.c.task_id == task_id).order_by(t.revocations.c.id).limit(limit)
    return [Revocation.from_row(r._mapping) for r in conn.execute(q)]


def get(conn: Connection, row_id: int) -> Revocation | None:
    row = conn.execute(select(t.revocations).where(t.revocations.c.id == row_id)).first()
    return Revocation.from_row(row._mapping) if row else None


def mark_done(conn: Connection, row: Revocation) -> bool:
    """Confirm a revocation. False when the row was already done (someone else confirmed it)."""
    now = utcnow()
    result = conn.execute(
        update(t.revocations)
        .where(and_(t.revocations.c.id == row.id, t.revocations.c.state == PENDING))
        .values(
            state=RevocationState.DONE.value,
            completed_at=now,
            attempts=row.attempts + 1,
            last_error=None,
            last_error_kind=None,
        )
    )
    if not result.rowcount:
        return False
    revoked = GrantState.REVOKED.value
    if row.grant_id:
        conn.execute(
            update(t.grants)
            .where(and_(t.grants.c.grant_id == row.grant_id, t.grants.c.state != revoked))
            .values(state=revoked, revoked_at=now)
        )
    if row.handle_id:
        conn.execute(
            update(t.task_handles).where(t.task_handles.c.id == row.handle_id).values(state=HandleState.REVOKED.value)
        )
        # grants covered by the handle died with it
        conn.execute(
            update(t.grants)
            .where(
                and_(
                    t.grants.c.task_id == row.task_id,
                    t.grants.c.backend == row.backend,
                    t.grants.c.covered_by_task_handle.is_(True),
                    t.grants.c.state == GrantState.ACTIVE.value,
                )
            )
            .values(state=revoked, revoked_at=now)
        )
    return True


def backoff_seconds(attempts: int) -> float:
    """0.5 s after the first failure, doubling, at most ``MAX_BACKOFF_SECONDS``."""
    return float(min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * (2 ** min(max(attempts, 1), 16))))


def mark_failed(conn: Connection, row: Revocation, error: str, *, kind: FailureKind = FailureKind.ERROR) -> None:
    """Schedule the next attempt. ``kind`` is ``unavailable`` (the backend could not be reached:
    retried as soon as it answers again, see :func:`retry_now`) or ``error`` (it answered no)."""
    attempts = row.attempts + 1
    conn.execute(
        update(t.revocations)
        .where(t.revocations.c.id == row.id)
        .values(
            attempts=attempts,
            last_error=error[:500],
            last_error_kind=kind.value,
            next_attempt_at=utcnow() + timedelta(seconds=backoff_seconds(attempts)),
        )
    )


def waiting_on_unavailable(conn: Connection, now: datetime) -> list[str]:
    """Backends with pending rows backing off because the backend was unreachable."""
    r = t.revocations.c
    q = (
        select(r.backend)
        .where(and_(r.state == PENDING, r.last_error_kind == FailureKind.UNAVAILABLE.value, r.next_attempt_at > now))
        .distinct()
    )
    return [row[0] for row in conn.execute(q)]


def retry_now(conn: Connection, backend: str) -> int:
    """The backend answers again: make its unavailable-backoff rows due now (drain at once)."""
    r = t.revocations.c
    result = conn.execute(
        update(t.revocations)
        .where(and_(r.state == PENDING, r.backend == backend, r.last_error_kind == FailureKind.UNAVAILABLE.value))
        .values(next_attempt_at=utcnow())
    )
    return int(result.rowcount or 0)


def pending_count(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(t.revocations).where(t.revocations.c.state == PENDING)
        ).scalar_one()
    )


def oldest_pending_age(conn: Connection, now: datetime) -> float | None:
    oldest = conn.execute(
        select(func.min(t.revocations.c.created_at)).where(t.revocations.c.state == PENDING)
    ).scalar_one()
    if oldest is None:
        return None
    return (now - aware_ts(oldest)).total_seconds()
