"""What the runner says on the way out: revocations confirmed, revocations still pending, and where
the pending ones will complete (they are rows of the durable outbox in the store, never lost).

``nhi-broker up`` ends every active task first (its embedded OpenBao dies with it, while the
credentials it issued into real systems would not); ``serve`` ends nothing — tasks outlive a replica —
and reports the outbox backlog it leaves to the other replicas or the next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from broker.models import TaskState
from broker.store import outbox
from broker.store import tables as t


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    tasks_ended: int
    tasks_failed: int  # tasks whose end could not even be recorded (store error)
    done: int  # revocations of the ended tasks their backend confirmed
    pending: int  # revocations of the ended tasks still in the outbox
    outbox_pending: int  # everything pending in the outbox (older backlog included)
    store: str  # the store URL, password hidden
    shared_store: bool  # PostgreSQL: other replicas' workers drain the same outbox

    def message(self, *, restart_hint: str) -> str:
        lines: list[str] = []
        if self.tasks_ended or self.tasks_failed:
            lines.append(
                f"ended {self.tasks_ended} active task(s): {self.done} revocation(s) done, {self.pending} pending"
            )
            if self.tasks_failed:
                lines.append(
                    f"{self.tasks_failed} task(s) could not be ended (store error): they stay active and "
                    f"expire at their lifetime"
                )
        if self.outbox_pending:
            where = "by the revocation worker of any replica running on this database, or " if self.shared_store else ""
            lines.append(
                f"{self.outbox_pending} revocation(s) pending in the durable outbox of {self.store}: not "
                f"confirmed by their backend yet; they complete {where}when the broker next starts on "
                f"this store ({restart_hint})"
            )
        elif self.done:
            lines.append("every revocation was confirmed by its backend")
        return "\n".join(lines)


def _report(container: Any, ended: list[str], failed: int) -> ShutdownReport:
    r = t.revocations.c
    with container.store.read() as conn:
        counts = (
            dict(conn.execute(select(r.state, func.count()).where(r.task_id.in_(ended)).group_by(r.state)).all())
            if ended
            else {}
        )
        backlog = outbox.pending_count(conn)
    url = make_url(container.settings.resolved_database_url())
    return ShutdownReport(
        tasks_ended=len(ended),
        tasks_failed=failed,
        done=int(counts.get("done", 0)),
        pending=int(counts.get("pending", 0)),
        outbox_pending=backlog,
        store=url.render_as_string(hide_password=True),
        shared_store=url.get_backend_name() != "sqlite",
    )


def end_active_tasks(container: Any) -> ShutdownReport:
    """``up`` only: end every active task and revoke what it holds (attempted now; what the backend
    did not confirm stays pending in the outbox)."""
    with container.store.read() as conn:
        active = [row[0] for row in conn.execute(select(t.tasks.c.task_id).where(t.tasks.c.state == "active"))]
    ended: list[str] = []
    failed = 0
    for task_id in active:
        try:
            container.revocations.revoke_task(
                task_id,
                reason="broker stopped (nhi-broker up)",
                state=TaskState.ENDED,
                actor="broker",
                audit_kind="task.ended",
            )
            ended.append(task_id)
        except Exception:  # best effort on the way out; never block the shutdown (counted, reported)
            failed += 1
    return _report(container, ended, failed)


def outbox_backlog(container: Any) -> ShutdownReport:
    """``serve``: nothing is ended; report what this replica leaves pending."""
    return _report(container, [], 0)
