"""Admin API for step-up approvals and the post-action review queue (bearer: admin token).

The admin token authenticates the *console*; the person acting is named in the body
(``approver`` / ``reviewer``) and recorded on the approval and in the audit trail. A production
deployment puts an identity provider in front of these routes (docs/approvals.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from broker.api.deps import AdminDep, ContainerDep
from broker.api.presenters import approval_body, review_body
from broker.api.schemas import Strict
from broker.approvals.model import ApprovalState, ReviewState

router = APIRouter(prefix="/v1", tags=["approvals"])


class ApprovalActIn(Strict):
    approver: str = Field(min_length=1, max_length=256, description="the person approving or denying")
    reason: str = Field(min_length=1, max_length=2000)


class ReviewActIn(Strict):
    reviewer: str = Field(min_length=1, max_length=256, description="the person reviewing")
    reason: str = Field(min_length=1, max_length=2000)


Limit = Annotated[int, Query(ge=1, le=5000)]


@router.get("/approvals")
def list_approvals(
    _: AdminDep, c: ContainerDep, status: ApprovalState | None = None, limit: Limit = 500
) -> dict[str, Any]:
    """Approvals, oldest first; ``status=pending`` for the ones waiting for an approver."""
    return {"items": [approval_body(a) for a in c.approvals.list(status, limit)]}


@router.get("/approvals/{approval_id}")
def get_approval(approval_id: str, _: AdminDep, c: ContainerDep) -> dict[str, Any]:
    c.approvals.expire_due()
    return approval_body(c.approvals.view(approval_id))


@router.post(
    "/approvals/{approval_id}/approve",
    responses={
        403: {"description": "four-eyes: the agent's owner cannot approve alone"},
        409: {"description": "not pending (approved, denied, expired or collected)"},
    },
)
def approve(approval_id: str, body: ApprovalActIn, _: AdminDep, c: ContainerDep) -> dict[str, Any]:
    return approval_body(c.approvals.approve(approval_id, body.approver, body.reason))


@router.post("/approvals/{approval_id}/deny", responses={409: {"description": "no longer open"}})
def deny(approval_id: str, body: ApprovalActIn, _: AdminDep, c: ContainerDep) -> dict[str, Any]:
    return approval_body(c.approvals.deny(approval_id, body.approver, body.reason))


@router.get("/reviews")
def list_reviews(
    _: AdminDep,
    c: ContainerDep,
    status: ReviewState | None = None,
    task_id: str | None = None,
    limit: Limit = 500,
) -> dict[str, Any]:
    """Actions decided in mode ``review`` (and allowed), oldest first."""
    return {"items": [review_body(r) for r in c.reviews.list(status, task_id, limit)]}


@router.get("/reviews/{review_id}")
def get_review(review_id: str, _: AdminDep, c: ContainerDep) -> dict[str, Any]:
    return review_body(c.reviews.get(review_id))


@router.post("/reviews/{review_id}/fine", responses={409: {"description": "already resolved"}})
def mark_fine(review_id: str, body: ReviewActIn, _: AdminDep, c: ContainerDep) -> dict[str, Any]:
    return review_body(c.reviews.mark_fine(review_id, body.reviewer, body.reason))


@router.post("/reviews/{review_id}/flag", responses={409: {"description": "already resolved"}})
def flag(review_id: str, body: ReviewActIn, _: AdminDep, c: ContainerDep) -> dict[str, Any]:
    """Flag the action: the task escalates (every grant revoked, the task quarantined, an alert)."""
    return review_body(c.reviews.flag(review_id, body.reviewer, body.reason))
