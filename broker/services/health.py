"""Readiness and the revocation backlog (``/readyz``, ``/metrics``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from broker.backends.port import CredentialBackend
from broker.errors import BrokerError
from broker.store import outbox
from broker.store.repo import Store, utcnow
from broker.workers import Heartbeat


class HealthService:
    def __init__(self, store: Store, backends: Mapping[str, CredentialBackend], *, stuck_after_seconds: float,
                 revocation_heartbeat: Heartbeat) -> None:
        self.store = store
        self.backends = backends
        self.stuck_after_seconds = stuck_after_seconds
        self.heartbeat = revocation_heartbeat

    def revocation_backlog(self) -> tuple[int, float | None]:
        with self.store.read() as conn:
            return outbox.pending_count(conn), outbox.oldest_pending_age(conn, utcnow())

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            pending, oldest = self.revocation_backlog()
            checks["store"] = "ok"
            stuck = oldest is not None and oldest > self.stuck_after_seconds
            last = self.heartbeat.last
            checks["revocations"] = {"pending": pending, "oldest_pending_seconds": oldest,
                                     "status": "stuck" if stuck else "ok",
                                     "worker_last_run_seconds_ago": round(time.time() - last, 3)
                                     if last else None}
        except Exception as exc:  # readiness reports, never raises
            checks["store"] = f"error: {type(exc).__name__}"
            stuck = True
        for kind, backend in self.backends.items():
            try:
                backend.check_alive()
                checks[f"backend.{kind}"] = "ok"
            except BrokerError as exc:
                checks[f"backend.{kind}"] = f"unavailable: {exc.message}"
        ready = checks.get("store") == "ok" and not stuck and all(
            v == "ok" for k, v in checks.items() if k.startswith("backend."))
        return {"ready": ready, "checks": checks}
