"""Approval and review records: frozen dataclasses over closed state sets.

An approval is bound to the exact request that needed it: (task, agent, action, resource) and the
**scope hash** — SHA-256 over the canonical JSON of what the credential would reach (the
resource's kind, backend settings, sensitivity and environment). If an administrator re-points
the resource between approval and collection, the hash no longer matches and the approval does
not carry over.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NewType

from broker.models import ApprovalId, Resource, TaskId, Tier

ReviewId = NewType("ReviewId", str)


class ApprovalState(enum.StrEnum):
    PENDING = "pending"  # waiting for an approver
    APPROVED = "approved"  # granted; the agent may collect once before it expires
    DENIED = "denied"
    EXPIRED = "expired"
    COLLECTED = "collected"  # consumed by one credential request (single use)
    CANCELLED = "cancelled"  # its task was quarantined, ended or expired before it was used


class ReviewState(enum.StrEnum):
    PENDING = "pending"
    FINE = "fine"
    FLAGGED = "flagged"
    CANCELLED = "cancelled"  # its task was quarantined, ended or expired while it waited


def scope_hash(action: str, resource: Resource) -> str:
    scope = {
        "action": action,
        "resource": resource.name,
        "kind": resource.kind,
        "settings": resource.settings,
        "sensitivity": resource.sensitivity.value,
        "environment": resource.environment.value,
        "external": resource.external,
    }
    return hashlib.sha256(json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Vote:
    """One approver's decision: who (the authenticated subject, never a typed name), why, when."""

    approver: str  # the audit actor of the authenticated approver, e.g. "person:alice"
    subject: dict[str, Any]  # how they authenticated: via, issuer, subject, person, token_id
    reason: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "subject": dict(self.subject),
            "reason": self.reason,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Vote:
        # rows written before people were authenticated carry a typed name and no subject
        return cls(
            str(raw["approver"]),
            dict(raw.get("subject") or {"via": "typed_name (legacy)"}),
            str(raw["reason"]),
            datetime.fromisoformat(raw["at"]),
        )


@dataclass(frozen=True, slots=True)
class Approval:
    approval_id: ApprovalId
    task_id: TaskId
    agent: str
    owner: str
    action: str
    resource: str
    scope_hash: str
    decision_id: str
    tier: Tier
    reasons: tuple[str, ...]
    state: ApprovalState
    votes: tuple[Vote, ...]
    decided_by: str | None
    decided_by_subject: dict[str, Any] | None
    decision_reason: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    collected_at: datetime | None
    collected_decision_id: str | None
    grant_id: str | None
    collect_error: str | None

    def state_at(self, now: datetime) -> ApprovalState:
        """The stored state, with ``expired`` once the window passed for an open approval."""
        if self.state in (ApprovalState.PENDING, ApprovalState.APPROVED) and now >= self.expires_at:
            return ApprovalState.EXPIRED
        return self.state

    def as_of(self, now: datetime) -> Approval:
        """The approval as shown at ``now`` (``expired`` once the window passed while open)."""
        state = self.state_at(now)
        return self if state is self.state else replace(self, state=state)


@dataclass(frozen=True, slots=True)
class Review:
    review_id: ReviewId
    decision_id: str
    task_id: TaskId
    agent: str
    action: str
    resource: str
    tier: Tier
    grant_id: str | None
    state: ReviewState
    reviewer: str | None  # the audit actor of the authenticated reviewer, e.g. "person:dana"
    reviewer_subject: dict[str, Any] | None
    reason: str | None
    escalation: Mapping[str, Any] | None
    created_at: datetime
    resolved_at: datetime | None
