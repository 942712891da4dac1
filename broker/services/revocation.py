"""Revoking what a task holds: outbox first, then the backend, retried until confirmed.

``revoke_task`` writes the task's new state, one outbox row per task handle (e.g. the OpenBao
parent token, which takes all its children) and one per grant not covered by a handle, and the
audit event — all in one transaction — and only then calls the backends. Whatever fails stays
``pending`` and the worker (:mod:`rotation.revocation_worker`) retries it with backoff.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from broker.audit import AuditLog
from broker.backends.port import CredentialBackend, TaskScopedBackend
from broker.errors import BrokerError, UpstreamUnavailable
from broker.logging import get_logger
from broker.models import Grant, TaskState
from broker.store import outbox
from broker.store.repo import Store, utcnow
from broker.store.rows import FailureKind, Revocation

log = get_logger("nhi-broker.revocation")


# (conn, task_id, new state, reason): runs inside the transaction that ended the task, e.g. to
# cancel the task's open approvals and reviews (broker.approvals.wiring)
TaskClosedHook = Callable[[Connection, str, TaskState, str], None]


@dataclass(frozen=True, slots=True)
class RevocationReport:
    task_id: str
    queued: int
    completed: int
    pending: int


class RevocationService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        backends: Mapping[str, CredentialBackend],
        on_task_closed: Sequence[TaskClosedHook] = (),
    ) -> None:
        self.store = store
        self.audit = audit
        self.backends = backends
        # optional capability, checked once: backends that keep per-task state in process
        self._task_scoped = [b for b in backends.values() if isinstance(b, TaskScopedBackend)]
        self.on_task_closed = tuple(on_task_closed)
        self._inflight: set[int] = set()
        self._inflight_lock = threading.Lock()

    def revoke_task(
        self,
        task_id: str,
        *,
        reason: str,
        state: TaskState,
        actor: str,
        audit_kind: str = "task.revoked",
        extra: Mapping[str, Any] | None = None,
        from_states: tuple[TaskState, ...] = (TaskState.ACTIVE,),
        in_transaction: Callable[[Connection], None] | None = None,
    ) -> RevocationReport:
        """``in_transaction(conn)`` runs inside the same transaction (e.g. the chain's escalation
        marker), so the state change, the outbox rows and the audit event commit together."""
        queued = 0
        with self.store.write() as conn:
            if (
                from_states
                and self.store.set_task_state(conn, task_id, state, reason, only_from=from_states)
                and state is not TaskState.ACTIVE
            ):
                for hook in self.on_task_closed:
                    hook(conn, task_id, state, reason)
            if in_transaction is not None:
                in_transaction(conn)
            handles = self.store.handles(conn, task_id)
            handled_backends = {h.backend for h in handles}
            for h in handles:
                outbox.enqueue(
                    conn, task_id=task_id, backend=h.backend, reference=h.reference, reason=reason, handle_id=h.id
                )
                queued += 1
            for g in outbox.grants_to_revoke(conn, task_id, handled_backends):
                outbox.enqueue(
                    conn, task_id=task_id, backend=g.backend, reference=g.revocation, reason=reason, grant_id=g.grant_id
                )
                queued += 1
            self.audit.append(
                conn,
                audit_kind,
                actor=actor,
                task_id=task_id,
                outcome=state.value,
                data={"reason": reason, "revocations_queued": queued, **dict(extra or {})},
            )
        for backend in self._task_scoped:
            backend.forget_task(task_id)
        completed, pending = self.process(task_id=task_id)
        report = RevocationReport(task_id=task_id, queued=queued, completed=completed, pending=pending)
        if state is not TaskState.ACTIVE:
            for child in self.cascade(task_id, state, reason, actor):
                report = RevocationReport(
                    task_id=task_id,
                    queued=report.queued + child.queued,
                    completed=report.completed + child.completed,
                    pending=report.pending + child.pending,
                )
        return report

    def cascade(self, task_id: str, state: TaskState, reason: str, actor: str) -> list[RevocationReport]:
        """A task that stopped takes every delegated descendant with it, across every backend
        (a crash in between is finished by the revocation worker: see
        ``Store.active_children_of_inactive_parents``)."""
        with self.store.read() as conn:
            children = [c.task_id for c in self.store.child_tasks(conn, task_id) if c.state is TaskState.ACTIVE]
        return [
            self.revoke_task(
                child,
                reason=f"parent task {task_id} is {state.value}: {reason}"[:500],
                state=state,
                actor=actor,
                audit_kind="task.revoked",
                extra={"cascade_from": task_id},
            )
            for child in children
        ]

    def revoke_grant(self, grant: Grant, *, reason: str, actor: str) -> None:
        with self.store.write() as conn:
            outbox.enqueue(
                conn,
                task_id=grant.task_id,
                backend=grant.backend,
                reference=grant.revocation,
                reason=reason,
                grant_id=grant.grant_id,
            )
        self.process(task_id=grant.task_id)

    def process(self, *, task_id: str | None = None, limit: int = 200) -> tuple[int, int]:
        """Attempt due revocations (all, or one task's). Returns (completed, still pending)."""
        with self.store.read() as conn:
            rows = outbox.due(conn, utcnow(), limit=limit, task_id=task_id)
        # rows another thread of this process is attempting right now are left to it (the inline
        # attempt of an escalation and the worker would otherwise call the backend twice)
        with self._inflight_lock:
            rows = [r for r in rows if r.id not in self._inflight]
            self._inflight.update(r.id for r in rows)
        try:
            return self._attempt(rows)
        finally:
            with self._inflight_lock:
                self._inflight.difference_update(r.id for r in rows)

    def _attempt(self, rows: list[Revocation]) -> tuple[int, int]:
        completed = failed = 0
        for row in rows:
            backend = self.backends.get(row.backend)
            try:
                if backend is None:
                    raise BrokerError(f'backend "{row.backend}" is not configured')
                backend.revoke(row.reference)
            except Exception as exc:  # an adapter bug must not stop the queue: retried with backoff
                failed += 1
                kind = FailureKind.UNAVAILABLE if isinstance(exc, UpstreamUnavailable) else FailureKind.ERROR
                message = exc.message if isinstance(exc, BrokerError) else f"unexpected {type(exc).__name__}"
                with self.store.write() as conn:
                    outbox.mark_failed(conn, row, message, kind=kind)
                log.warning(
                    "revocation.failed",
                    task_id=row.task_id,
                    backend=row.backend,
                    attempts=row.attempts + 1,
                    error=message,
                )
                continue
            completed += 1
            with self.store.write() as conn:
                if not outbox.mark_done(conn, row):
                    continue  # another worker/replica confirmed it first: audit once
                self.audit.append(
                    conn,
                    "credential.revoked",
                    actor="broker",
                    task_id=row.task_id,
                    outcome="revoked",
                    data={
                        "backend": row.backend,
                        "grant_id": row.grant_id,
                        "handle_id": row.handle_id,
                        "reason": row.reason,
                        "attempts": row.attempts + 1,
                        "reference": {
                            k: v
                            for k, v in row.reference.items()
                            if k in ("accessor", "lease_id", "kind", "role_name", "mode", "wrapping_accessor")
                        },
                    },
                )
        return completed, failed
