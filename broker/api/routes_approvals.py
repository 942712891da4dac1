"""People's API for step-up approvals and the post-action review queue.

The caller authenticates as themselves (``Authorization: Bearer`` a per-person API token or an ID
token from a human issuer; docs/people.md) and the role decides what they may do: ``approver``
approves and denies, ``reviewer`` resolves reviews, ``auditor`` and ``admin`` (and the admin token)
read. There is no name in any body: the authenticated subject is who acted, recorded on the
approval or review and in the audit trail.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from broker.api.deps import ApproverDep, ContainerDep, QueueReaderDep, ReviewerDep
from broker.api.presenters import approval_body, review_body
from broker.api.schemas import Strict
from broker.approvals.model import ApprovalState, ReviewState

router = APIRouter(prefix="/v1", tags=["approvals"])


class ApprovalActIn(Strict):
    reason: str = Field(min_length=1, max_length=2000, description="why (required; audited)")


class ReviewActIn(Strict):
    reason: str = Field(min_length=1, max_length=2000, description="why (required; audited)")


Limit = Annotated[int, Query(ge=1, le=5000)]


@router.get("/approvals")
def list_approvals(
    _: QueueReaderDep, c: ContainerDep, status: ApprovalState | None = None, limit: Limit = 500
) -> dict[str, Any]:
    """Approvals, oldest first; ``status=pending`` for the ones waiting for an approver."""
    return {"items": [approval_body(a) for a in c.approvals.list(status, limit)]}


@router.get("/approvals/{approval_id}")
def get_approval(approval_id: str, _: QueueReaderDep, c: ContainerDep) -> dict[str, Any]:
    c.approvals.expire_due()
    return approval_body(c.approvals.view(approval_id))


@router.post(
    "/approvals/{approval_id}/approve",
    responses={
        401: {"description": "not an authenticated person (or the admin token)"},
        403: {
            "description": "role_required, four_eyes_required (the agent's bound owner or the agent), "
            "owner_unbound (the agent has no bound owner)"
        },
        409: {"description": "not pending (approved, denied, expired or collected)"},
    },
)
def approve(approval_id: str, body: ApprovalActIn, who: ApproverDep, c: ContainerDep) -> dict[str, Any]:
    return approval_body(c.approvals.approve(approval_id, who, body.reason))


@router.post("/approvals/{approval_id}/deny", responses={409: {"description": "no longer open"}})
def deny(approval_id: str, body: ApprovalActIn, who: ApproverDep, c: ContainerDep) -> dict[str, Any]:
    return approval_body(c.approvals.deny(approval_id, who, body.reason))


@router.get("/reviews")
def list_reviews(
    _: QueueReaderDep,
    c: ContainerDep,
    status: ReviewState | None = None,
    task_id: str | None = None,
    limit: Limit = 500,
) -> dict[str, Any]:
    """Actions decided in mode ``review`` (and allowed), oldest first."""
    return {"items": [review_body(r) for r in c.reviews.list(status, task_id, limit)]}


@router.get("/reviews/{review_id}")
def get_review(review_id: str, _: QueueReaderDep, c: ContainerDep) -> dict[str, Any]:
    return review_body(c.reviews.get(review_id))


@router.post("/reviews/{review_id}/fine", responses={409: {"description": "already resolved"}})
def mark_fine(review_id: str, body: ReviewActIn, who: ReviewerDep, c: ContainerDep) -> dict[str, Any]:
    return review_body(c.reviews.mark_fine(review_id, who, body.reason))


@router.post("/reviews/{review_id}/flag", responses={409: {"description": "already resolved"}})
def flag(review_id: str, body: ReviewActIn, who: ReviewerDep, c: ContainerDep) -> dict[str, Any]:
    """Flag the action: the task escalates (every grant revoked, the task quarantined, an alert)."""
    return review_body(c.reviews.flag(review_id, who, body.reason))
