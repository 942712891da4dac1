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
last run is visible to ``/readyz`` and ``/metrics`` through ``last_run``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import and_, or_, select, update

from broker.errors import BrokerError
from broker.logging import get_logger
from broker.models import TaskState
from broker.store import outbox
from broker.store import tables as t
from broker.store.repo import utcnow

log = get_logger("nhi-broker.worker")
JTI_PURGE_INTERVAL = 60.0  # seconds between purges of expired replay-guard rows


class RevocationWorker:
    def __init__(self, container: Any, interval: float | None = None) -> None:
        self.container = container
        self.interval = interval or float(getattr(container.settings, "revocation_worker_interval_seconds", 0.5))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_run: float | None = None
        self.last_error: str | None = None
        self._last_jti_purge = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nhi-revocation-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                self.last_error = None
            except Exception as exc:  # the worker must survive anything
                self.last_error = type(exc).__name__
                log.error("worker.iteration_failed", error_type=type(exc).__name__, error=str(exc)[:200])
            self._stop.wait(self.interval)

    def wake_recovered_backends(self) -> int:
        c = self.container
        with c.store.read() as conn:
            waiting = outbox.waiting_on_unavailable(conn, utcnow())
        woken = 0
        for kind in waiting:
            backend = c.backends.get(kind)
            if backend is None:
                continue
            try:
                backend.check_alive()
            except BrokerError:
                continue
            with c.store.write() as conn:
                woken += outbox.retry_now(conn, kind)
            log.info("revocation.backend_recovered", backend=kind, due_now=woken)
        return woken

    def sweep_expired_grants(self) -> tuple[int, int]:
        """Mark expired grants; queue revocations where the backend does not expire them itself."""
        c = self.container
        now = utcnow()
        g = t.grants.c
        cleanup = {kind for kind, b in c.backends.items() if not getattr(b, "self_expiring", True)}
        queued = 0
        with c.store.write() as conn:
            # a grant whose credential outlives it at the backend (an STS session's 900 s minimum)
            # says so in its reference: revoked when the broker's expiry passes
            outlives = g.revocation["revoke_at_expiry"].as_boolean().is_(True)
            rows = conn.execute(select(t.grants).where(and_(
                g.state == "active", g.expires_at <= now,
                or_(g.backend.in_(sorted(cleanup)), outlives) if cleanup else outlives))).all()
            for r in rows:
                outbox.enqueue(conn, task_id=r.task_id, backend=r.backend, reference=r.revocation,
                               reason="grant expired; the backend does not expire it by then", grant_id=r.grant_id)
                queued += 1
            expired = conn.execute(update(t.grants).where(and_(g.state == "active", g.expires_at <= now))
                                   .values(state="expired")).rowcount
        return int(expired or 0), queued

    def run_once(self) -> dict[str, int]:
        c = self.container
        woken = self.wake_recovered_backends()
        completed, failed = c.revocations.process()
        expired_tasks = 0
        with c.store.read() as conn:
            due = c.store.expired_active_tasks(conn, utcnow())
        for task_id in due:
            c.revocations.revoke_task(task_id, reason="task lifetime exceeded", state=TaskState.EXPIRED,
                                      actor="broker", audit_kind="task.expired")
            expired_tasks += 1
        expired_grants, cleanup_queued = self.sweep_expired_grants()
        jti_purged = 0
        if time.monotonic() - self._last_jti_purge >= JTI_PURGE_INTERVAL:
            # the replay guard's jti rows past the time their token could still verify (identity.md)
            jti_purged = c.store.purge_jti(utcnow())
            self._last_jti_purge = time.monotonic()
        self.last_run = time.time()
        return {"woken": woken, "revoked": completed, "failed": failed, "expired_tasks": expired_tasks,
                "expired_grants": expired_grants, "cleanup_queued": cleanup_queued, "jti_purged": jti_purged}
