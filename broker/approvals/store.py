"""SQL for approvals and reviews (SQLAlchemy Core; the only module here that speaks SQL).

State changes are conditional updates whose row count says whether this caller won: two approvers
racing, or two collections of one approval, cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from broker.approvals.model import Approval, ApprovalState, Review, ReviewId, ReviewState, Vote
from broker.models import ApprovalId, TaskId, Tier
from broker.store import tables as t
from broker.store.rows import aware_opt, aware_ts

A = t.approvals.c
R = t.reviews.c
OPEN = (ApprovalState.PENDING.value, ApprovalState.APPROVED.value)


def _approval(row: Any) -> Approval:
    m = row._mapping
    return Approval(
        approval_id=ApprovalId(m["approval_id"]),
        task_id=TaskId(m["task_id"]),
        agent=m["agent"],
        owner=m["owner"],
        action=m["action"],
        resource=m["resource"],
        scope_hash=m["scope_hash"],
        decision_id=m["decision_id"],
        tier=Tier(m["tier"]),
        reasons=tuple(m["reasons"] or ()),
        state=ApprovalState(m["state"]),
        votes=tuple(Vote.from_dict(v) for v in (m["votes"] or ())),
        decided_by=m["decided_by"],
        decided_by_subject=m["decided_by_subject"],
        decision_reason=m["decision_reason"],
        created_at=aware_ts(m["created_at"]),
        expires_at=aware_ts(m["expires_at"]),
        decided_at=aware_opt(m["decided_at"]),
        collected_at=aware_opt(m["collected_at"]),
        collected_decision_id=m["collected_decision_id"],
        grant_id=m["grant_id"],
        collect_error=m["collect_error"],
    )


def insert_approval(conn: Connection, a: Approval) -> None:
    conn.execute(
        insert(t.approvals).values(
            approval_id=a.approval_id,
            task_id=a.task_id,
            agent=a.agent,
            owner=a.owner,
            action=a.action,
            resource=a.resource,
            scope_hash=a.scope_hash,
            decision_id=a.decision_id,
            tier=a.tier.value,
            reasons=list(a.reasons),
            state=a.state.value,
            votes=[v.to_dict() for v in a.votes],
            created_at=a.created_at,
            expires_at=a.expires_at,
        )
    )


def get_approval(conn: Connection, approval_id: str) -> Approval | None:
    row = conn.execute(select(t.approvals).where(A.approval_id == approval_id)).first()
    return _approval(row) if row else None


def find_pending(
    conn: Connection, *, task_id: str, agent: str, action: str, resource: str, scope: str, now: datetime
) -> Approval | None:
    """An open (pending, unexpired) approval for exactly this request, to reuse instead of a new one."""
    row = conn.execute(
        select(t.approvals)
        .where(
            and_(
                A.task_id == task_id,
                A.agent == agent,
                A.action == action,
                A.resource == resource,
                A.scope_hash == scope,
                A.state == ApprovalState.PENDING.value,
                A.expires_at > now,
            )
        )
        .order_by(A.created_at.desc())
        .limit(1)
    ).first()
    return _approval(row) if row else None


def list_approvals(conn: Connection, state: ApprovalState | None, limit: int) -> list[Approval]:
    q = select(t.approvals)
    if state is not None:
        q = q.where(A.state == state.value)
    return [_approval(r) for r in conn.execute(q.order_by(A.created_at).limit(limit))]


def approvals_for_task(conn: Connection, task_id: str, limit: int = 500) -> list[Approval]:
    """A task's approvals, oldest first (its chain view)."""
    q = select(t.approvals).where(A.task_id == task_id).order_by(A.created_at).limit(limit)
    return [_approval(r) for r in conn.execute(q)]


def approval_for_decision(conn: Connection, decision_id: str) -> Approval | None:
    """The approval a decision opened (step-up) or was collected with."""
    row = conn.execute(
        select(t.approvals)
        .where((A.decision_id == decision_id) | (A.collected_decision_id == decision_id))
        .order_by(A.created_at)
        .limit(1)
    ).first()
    return _approval(row) if row else None


def review_for_decision(conn: Connection, decision_id: str) -> Review | None:
    row = conn.execute(select(t.reviews).where(R.decision_id == decision_id)).first()
    return _review(row) if row else None


def due_to_expire(conn: Connection, now: datetime) -> list[Approval]:
    rows = conn.execute(select(t.approvals).where(and_(A.state.in_(OPEN), A.expires_at <= now)))
    return [_approval(r) for r in rows]


def mark_expired(conn: Connection, approval_id: str, now: datetime) -> bool:
    res = conn.execute(
        update(t.approvals)
        .where(and_(A.approval_id == approval_id, A.state.in_(OPEN), A.expires_at <= now))
        .values(state=ApprovalState.EXPIRED.value)
    )
    return res.rowcount == 1


def decide(
    conn: Connection,
    approval_id: str,
    *,
    state: ApprovalState,
    votes: Sequence[Vote],
    by: str,
    by_subject: dict[str, Any],
    reason: str,
    now: datetime,
    from_states: tuple[str, ...],
) -> bool:
    res = conn.execute(
        update(t.approvals)
        .where(
            and_(
                A.approval_id == approval_id,
                A.state.in_(from_states),
                A.expires_at > now,
                A.collected_at.is_(None),
            )
        )
        .values(
            state=state.value,
            votes=[v.to_dict() for v in votes],
            decided_by=by,
            decided_by_subject=by_subject,
            decision_reason=reason,
            decided_at=now,
        )
    )
    return res.rowcount == 1


def consume(conn: Connection, approval_id: str, now: datetime) -> bool:
    """Single use: exactly one caller turns an approved, unexpired, uncollected approval into
    ``collected``; every other caller gets False."""
    res = conn.execute(
        update(t.approvals)
        .where(
            and_(
                A.approval_id == approval_id,
                A.state == ApprovalState.APPROVED.value,
                A.collected_at.is_(None),
                A.expires_at > now,
            )
        )
        .values(state=ApprovalState.COLLECTED.value, collected_at=now)
    )
    return res.rowcount == 1


def cancel_open_for_task(conn: Connection, task_id: str, *, reason: str, now: datetime) -> list[Approval]:
    """Cancel the task's open (pending, or approved and not collected) approvals; returns those
    this caller cancelled."""
    rows = conn.execute(
        select(t.approvals).where(and_(A.task_id == task_id, A.state.in_(OPEN), A.collected_at.is_(None)))
    ).all()
    cancelled = []
    for a in map(_approval, rows):
        res = conn.execute(
            update(t.approvals)
            .where(and_(A.approval_id == a.approval_id, A.state.in_(OPEN), A.collected_at.is_(None)))
            .values(state=ApprovalState.CANCELLED.value, decided_by="broker", decision_reason=reason, decided_at=now)
        )
        if res.rowcount == 1:
            cancelled.append(a)
    return cancelled


def record_collection(
    conn: Connection, approval_id: str, *, decision_id: str | None, grant_id: str | None, error: str | None
) -> None:
    conn.execute(
        update(t.approvals)
        .where(A.approval_id == approval_id)
        .values(collected_decision_id=decision_id, grant_id=grant_id, collect_error=error)
    )


# -- reviews ----------------------------------------------------------------------------------------
def _review(row: Any) -> Review:
    m = row._mapping
    return Review(
        review_id=ReviewId(m["review_id"]),
        decision_id=m["decision_id"],
        task_id=TaskId(m["task_id"]),
        agent=m["agent"],
        action=m["action"],
        resource=m["resource"],
        tier=Tier(m["tier"]),
        grant_id=m["grant_id"],
        state=ReviewState(m["state"]),
        reviewer=m["reviewer"],
        reviewer_subject=m["reviewer_subject"],
        reason=m["reason"],
        escalation=m["escalation"],
        created_at=aware_ts(m["created_at"]),
        resolved_at=aware_opt(m["resolved_at"]),
    )


def insert_review(conn: Connection, r: Review) -> None:
    conn.execute(
        insert(t.reviews).values(
            review_id=r.review_id,
            decision_id=r.decision_id,
            task_id=r.task_id,
            agent=r.agent,
            action=r.action,
            resource=r.resource,
            tier=r.tier.value,
            grant_id=r.grant_id,
            state=r.state.value,
            created_at=r.created_at,
        )
    )


def get_review(conn: Connection, review_id: str) -> Review | None:
    row = conn.execute(select(t.reviews).where(R.review_id == review_id)).first()
    return _review(row) if row else None


def list_reviews(conn: Connection, state: ReviewState | None, task_id: str | None, limit: int) -> list[Review]:
    q = select(t.reviews)
    if state is not None:
        q = q.where(R.state == state.value)
    if task_id is not None:
        q = q.where(R.task_id == task_id)
    return [_review(r) for r in conn.execute(q.order_by(R.created_at).limit(limit))]


def resolve_review(
    conn: Connection,
    review_id: str,
    *,
    state: ReviewState,
    reviewer: str,
    reviewer_subject: dict[str, Any],
    reason: str,
    now: datetime,
) -> bool:
    res = conn.execute(
        update(t.reviews)
        .where(and_(R.review_id == review_id, R.state == ReviewState.PENDING.value))
        .values(
            state=state.value,
            reviewer=reviewer,
            reviewer_subject=reviewer_subject,
            reason=reason,
            resolved_at=now,
        )
    )
    return res.rowcount == 1


def cancel_pending_reviews(conn: Connection, task_id: str, *, reason: str, now: datetime) -> list[Review]:
    rows = conn.execute(select(t.reviews).where(and_(R.task_id == task_id, R.state == ReviewState.PENDING.value))).all()
    cancelled = []
    for r in map(_review, rows):
        res = conn.execute(
            update(t.reviews)
            .where(and_(R.review_id == r.review_id, R.state == ReviewState.PENDING.value))
            .values(state=ReviewState.CANCELLED.value, reviewer="broker", reason=reason, resolved_at=now)
        )
        if res.rowcount == 1:
            cancelled.append(r)
    return cancelled


def set_escalation(conn: Connection, review_id: str, escalation: Mapping[str, Any]) -> None:
    conn.execute(update(t.reviews).where(R.review_id == review_id).values(escalation=dict(escalation)))
