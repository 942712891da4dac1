"""The post-action review queue: allowed actions decided in mode ``review`` wait for a human.

A person with the ``reviewer`` role — authenticated, neither the agent nor its bound owner (docs/people.md) —
marks each one ``fine`` or ``flagged``; a flag escalates the task through the chain
(detector ``review_flagged``: every grant of the task revoked, the task quarantined, an alert). A
review is resolved once. When the task is quarantined, ended or expires, its pending reviews are
``cancelled``. Audited: ``review.queued``, ``review.fine``, ``review.flagged``, ``review.refused``,
``review.cancelled``, with the reviewer's authenticated subject.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from broker.approvals import store as db
from broker.approvals.model import Review, ReviewId, ReviewState
from broker.approvals.service import FourEyesRequired, OwnerUnbound, PartiesOf
from broker.audit import AuditLog
from broker.chain.model import Escalation
from broker.decisions import Decision
from broker.errors import Conflict, Denied, NotFound
from broker.models import TaskId, TaskState
from broker.people.model import Caller, Role
from broker.people.service import RoleRequired
from broker.store.repo import Store, utcnow

# (task_id, review_id, reason) -> the escalation (None: the detector is disabled); the chain
# service's flag_review under its lock
Escalate = Callable[[str, str, str], Escalation | None]


class ReviewService:
    def __init__(self, store: Store, audit: AuditLog, escalate: Escalate, parties: PartiesOf) -> None:
        self.store = store
        self.audit = audit
        self.escalate = escalate
        self.parties = parties

    def enqueue(
        self, agent: str, task_id: str, decision: Decision, action: str, resource: str, grant_id: str | None
    ) -> Review:
        review = Review(
            review_id=ReviewId("rev_" + uuid.uuid4().hex),
            decision_id=decision.decision_id,
            task_id=TaskId(task_id),
            agent=agent,
            action=action,
            resource=resource,
            tier=decision.tier,
            grant_id=grant_id,
            state=ReviewState.PENDING,
            reviewer=None,
            reviewer_subject=None,
            reason=None,
            escalation=None,
            created_at=utcnow(),
            resolved_at=None,
        )
        with self.store.write() as conn:
            db.insert_review(conn, review)
            self.audit.append(
                conn,
                "review.queued",
                actor=agent,
                task_id=task_id,
                outcome="pending",
                data={
                    "review_id": review.review_id,
                    "decision_id": decision.decision_id,
                    "action": action,
                    "resource": resource,
                    "grant_id": grant_id,
                },
            )
        return review

    def list(self, state: ReviewState | None = None, task_id: str | None = None, limit: int = 500) -> list[Review]:
        with self.store.read() as conn:
            return db.list_reviews(conn, state, task_id, limit)

    def get(self, review_id: str) -> Review:
        with self.store.read() as conn:
            review = db.get_review(conn, review_id)
        if review is None:
            raise NotFound(f'review "{review_id}" does not exist')
        return review

    def mark_fine(self, review_id: str, caller: Caller, reason: str) -> Review:
        self._resolve(review_id, ReviewState.FINE, caller, reason)
        return self.get(review_id)

    def flag(self, review_id: str, caller: Caller, reason: str) -> Review:
        review = self._resolve(review_id, ReviewState.FLAGGED, caller, reason)
        report = self.escalate(
            review.task_id, review.review_id, f"post-action review flagged by {caller.actor}: {reason}"
        )
        # kept on the review as it was reported (the review body shows it)
        escalation: dict[str, Any] = {"detector": None}
        if report is not None:
            escalation = {
                "detector": report.detector,
                "task_state": report.task_state.value if report.task_state else None,
                "revocations_queued": report.revocations_queued,
                "revocations_completed": report.revocations_completed,
                "revocations_pending": report.revocations_pending,
            }
        with self.store.write() as conn:
            db.set_escalation(conn, review.review_id, escalation)
        return self.get(review_id)

    def cancel_for_task(self, conn: Connection, task_id: str, state: TaskState, reason: str) -> None:
        """In the transaction that quarantines, ends or expires the task (audited ``review.cancelled``)."""
        why = f"task {state.value}: {reason}"
        for r in db.cancel_pending_reviews(conn, task_id, reason=why, now=utcnow()):
            self.audit.append(
                conn,
                "review.cancelled",
                actor="broker",
                task_id=task_id,
                outcome=ReviewState.CANCELLED.value,
                data={"review_id": r.review_id, "decision_id": r.decision_id, "reason": why},
            )

    def _check_reviewer(self, review: Review, caller: Caller) -> None:
        """A person with the reviewer role who is neither the agent nor its bound owner."""
        why = None
        error: type[Denied] = FourEyesRequired
        parties = self.parties(review.agent)
        keys = caller.subject_keys()
        if caller.person is None or Role.REVIEWER not in caller.roles:
            why, error = (
                ("only an authenticated person with the reviewer role may review (the admin token is not a person)"),
                RoleRequired,
            )
        elif keys & parties.agent:
            why = "the agent may not review its own actions"
        elif parties.owner is None:
            why, error = (
                (
                    f'agent "{review.agent}" has no bound owner (owner_identity); its actions cannot be '
                    f"reviewed until an admin binds one"
                ),
                OwnerUnbound,
            )
        elif keys & parties.owner:
            why = f'{caller.actor} is the bound owner of agent "{review.agent}" and may not review its actions'
        if why is None:
            return
        self.audit.record(
            "review.refused",
            actor=caller.actor,
            task_id=review.task_id,
            outcome="denied",
            data={"review_id": review.review_id, "why": why, "subject": caller.to_dict()},
        )
        raise error(why, details={"review_id": review.review_id, "rule": "four_eyes"})

    def _resolve(self, review_id: str, state: ReviewState, caller: Caller, reason: str) -> Review:
        review = self.get(review_id)
        self._check_reviewer(review, caller)
        with self.store.write() as conn:
            if not db.resolve_review(
                conn,
                review_id,
                state=state,
                reviewer=caller.actor,
                reviewer_subject=caller.to_dict(),
                reason=reason,
                now=utcnow(),
            ):
                current = db.get_review(conn, review_id)
                was = current.state.value if current else "gone"
                raise Conflict(
                    f'review "{review_id}" is already {was}; a review is resolved once',
                    details={"state": was},
                )
            self.audit.append(
                conn,
                f"review.{state.value}",
                actor=caller.actor,
                task_id=review.task_id,
                outcome=state.value,
                data={
                    "review_id": review_id,
                    "decision_id": review.decision_id,
                    "reason": reason,
                    "subject": caller.to_dict(),
                },
            )
        return review
