"""Readiness and the revocation backlog (``/readyz``, ``/metrics``).

``/readyz`` runs its checks — the store with the revocation backlog, one per backend —
concurrently under one time budget (:class:`broker.services.readiness.Readiness`,
``readiness_budget_seconds``, default 2 s).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from broker.backends.port import CredentialBackend
from broker.errors import BrokerError
from broker.services.readiness import Check, CheckResult, Readiness
from broker.store import outbox
from broker.store.repo import Store, utcnow
from broker.workers import Heartbeat


class HealthService:
    def __init__(
        self,
        store: Store,
        backends: Mapping[str, CredentialBackend],
        *,
        stuck_after_seconds: float,
        revocation_heartbeat: Heartbeat,
        budget_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.backends = backends
        self.stuck_after_seconds = stuck_after_seconds
        self.heartbeat = revocation_heartbeat
        checks: dict[str, Check] = {"store": self._store_check}
        for kind, backend in backends.items():
            checks[f"backend.{kind}"] = _backend_check(kind, backend)
        self._readiness = Readiness(checks, budget_seconds=budget_seconds)

    def revocation_backlog(self) -> tuple[int, float | None]:
        with self.store.read() as conn:
            return outbox.pending_count(conn), outbox.oldest_pending_age(conn, utcnow())

    def _store_check(self) -> CheckResult:
        pending, oldest = self.revocation_backlog()
        stuck = oldest is not None and oldest > self.stuck_after_seconds
        last = self.heartbeat.last
        return not stuck, {
            "store": "ok",
            "revocations": {
                "pending": pending,
                "oldest_pending_seconds": oldest,
                "status": "stuck" if stuck else "ok",
                "worker_last_run_seconds_ago": round(time.time() - last, 3) if last else None,
            },
        }

    def readiness(self) -> dict[str, Any]:
        return self._readiness.report()


def _backend_check(kind: str, backend: CredentialBackend) -> Check:
    def check() -> CheckResult:
        try:
            backend.check_alive()
        except BrokerError as exc:
            return False, {f"backend.{kind}": f"unavailable: {exc.message}"}
        return True, {f"backend.{kind}": "ok"}

    return check
