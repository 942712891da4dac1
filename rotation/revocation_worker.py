"""The revocation worker and the expiry sweeper (one background thread).

Every ``interval`` seconds: retry due revocations from the outbox (backoff per row), end and
revoke tasks past their lifetime, and mark grants past their expiry as ``expired``.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import and_, update

from broker.logging import get_logger
from broker.models import TaskState
from broker.store import tables as t
from broker.store.repo import utcnow

log = get_logger("nhi-broker.worker")


class RevocationWorker:
    def __init__(self, container: Any, interval: float = 0.5) -> None:
        self.container = container
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_run: float | None = None

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
            except Exception as exc:  # the worker must survive anything
                log.error("worker.iteration_failed", error_type=type(exc).__name__, error=str(exc)[:200])
            self._stop.wait(self.interval)

    def run_once(self) -> dict[str, int]:
        c = self.container
        completed, failed = c.revocations.process()
        expired_tasks = 0
        now = utcnow()
        with c.store.read() as conn:
            due = c.store.expired_active_tasks(conn, now)
        for task_id in due:
            c.revocations.revoke_task(task_id, reason="task lifetime exceeded", state=TaskState.EXPIRED,
                                      actor="broker", audit_kind="task.expired")
            expired_tasks += 1
        with c.store.write() as conn:
            expired_grants = conn.execute(update(t.grants).where(and_(
                t.grants.c.state == "active", t.grants.c.expires_at <= now)).values(state="expired")).rowcount
        import time

        self.last_run = time.time()
        return {"revoked": completed, "failed": failed, "expired_tasks": expired_tasks,
                "expired_grants": int(expired_grants or 0)}
