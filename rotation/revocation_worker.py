"""The revocation worker and the expiry sweeper (one background thread).

Every ``interval`` seconds:

1. if a backend that was unreachable answers again, its backed-off revocations become due now
   (revocations queued during an outage complete as soon as the backend is back);
2. retry due revocations from the outbox (exponential backoff per row, see ``broker.store.outbox``);
3. end and revoke tasks past their lifetime, exactly like an explicit ``DELETE`` (state ``expired``);
4. mark grants past their expiry ``expired``, and queue a revocation for those whose backend does
   not expire credentials on its own (a backend says so with ``self_expiring = False``) or whose
   credential outlives the grant there (its reference says ``revoke_at_expiry``: STS's 900 s);
5. once a minute, forget replay-guard ``jti`` rows whose token could no longer verify.

The worker survives anything (an iteration that fails is logged and the next one runs); its
last run is visible to ``/readyz`` through the heartbeat it shares with the health service.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy import and_, or_, select, update

from broker.backends.port import CredentialBackend
from broker.errors import BrokerError
from broker.logging import get_logger
from broker.models import TaskState
from broker.services.revocation import RevocationService
from broker.store import outbox
from broker.store import tables as t
from broker.store.repo import Store, utcnow
from broker.workers import Heartbeat, PeriodicWorker

log = get_logger("nhi-broker.worker")
JTI_PURGE_INTERVAL = 60.0  # seconds between purges of expired replay-guard rows


class RevocationWorker:
    """The revocation/expiry loop as one :class:`~broker.workers.PeriodicWorker` tick."""

    def __init__(
        self,
        store: Store,
        revocations: RevocationService,
        backends: Mapping[str, CredentialBackend],
        *,
        interval: float,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.store = store
        self.revocations = revocations
        self.backends = backends
        self.heartbeat = heartbeat or Heartbeat()
        # the kinds whose credentials the broker must end itself at expiry, known once
        self.cleanup_kinds = sorted(kind for kind, b in backends.items() if not b.self_expiring)
        self.worker = PeriodicWorker("revocation-worker", interval, self.run_once)
        self._last_jti_purge = 0.0

    @property
    def last_run(self) -> float | None:
        return self.heartbeat.last

    @property
    def last_error(self) -> str | None:
        return self.worker.last_error

    def start(self) -> RevocationWorker:
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()

    def wake_recovered_backends(self) -> int:
        with self.store.read() as conn:
            waiting = outbox.waiting_on_unavailable(conn, utcnow())
        woken = 0
        for kind in waiting:
            backend = self.backends.get(kind)
            if backend is None:
                continue
            try:
                backend.check_alive()
            except BrokerError:
                continue
            with self.store.write() as conn:
                woken += outbox.retry_now(conn, kind)
            log.info("revocation.backend_recovered", backend=kind, due_now=woken)
        return woken

    def sweep_expired_grants(self) -> tuple[int, int]:
        """Mark expired grants; queue revocations where the backend does not expire them itself."""
        now = utcnow()
        g = t.grants.c
        queued = 0
        with self.store.write() as conn:
            # a grant whose credential outlives it at the backend (an STS session's 900 s minimum)
            # says so in its reference: revoked when the broker's expiry passes
            outlives = g.revocation["revoke_at_expiry"].as_boolean().is_(True)
            rows = conn.execute(
                select(t.grants).where(
                    and_(
                        g.state == "active",
                        g.expires_at <= now,
                        or_(g.backend.in_(self.cleanup_kinds), outlives) if self.cleanup_kinds else outlives,
                    )
                )
            ).all()
            for r in rows:
                outbox.enqueue(
                    conn,
                    task_id=r.task_id,
                    backend=r.backend,
                    reference=r.revocation,
                    reason="grant expired; the backend does not expire it by then",
                    grant_id=r.grant_id,
                )
                queued += 1
            expired = conn.execute(
                update(t.grants).where(and_(g.state == "active", g.expires_at <= now)).values(state="expired")
            ).rowcount
        return int(expired or 0), queued

    def run_once(self) -> dict[str, int]:
        woken = self.wake_recovered_backends()
        completed, failed = self.revocations.process()
        expired_tasks = 0
        with self.store.read() as conn:
            due = self.store.expired_active_tasks(conn, utcnow())
        for task_id in due:
            self.revocations.revoke_task(
                task_id,
                reason="task lifetime exceeded",
                state=TaskState.EXPIRED,
                actor="broker",
                audit_kind="task.expired",
            )
            expired_tasks += 1
        with self.store.read() as conn:
            orphans = self.store.active_children_of_inactive_parents(conn)
        for child, parent in orphans:  # a cascade a crash interrupted
            with self.store.read() as conn:
                parent_task = self.store.get_task(conn, parent)
            state = parent_task.state if parent_task is not None else TaskState.ENDED
            self.revocations.revoke_task(
                child,
                reason=f"parent task {parent} is {state.value}",
                state=state,
                actor="broker",
                audit_kind="task.revoked",
                extra={"cascade_from": parent},
            )
        expired_grants, cleanup_queued = self.sweep_expired_grants()
        jti_purged = 0
        if time.monotonic() - self._last_jti_purge >= JTI_PURGE_INTERVAL:
            # the replay guard's jti rows past the time their token could still verify (identity.md)
            jti_purged = self.store.purge_jti(utcnow())
            self._last_jti_purge = time.monotonic()
        self.heartbeat.beat()
        return {
            "woken": woken,
            "revoked": completed,
            "failed": failed,
            "expired_tasks": expired_tasks,
            "expired_grants": expired_grants,
            "cleanup_queued": cleanup_queued,
            "jti_purged": jti_purged,
        }
