"""Decisions: the port between the request flow and whatever decides (risk table, Cedar).

A :class:`DecisionEngine` takes a fully resolved :class:`DecisionInput` and returns a
:class:`Decision` with its reasons. It never raises for a "no": any error inside evaluation
becomes a ``deny`` whose reasons say why (fail closed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from broker.models import Action, Agent, DecisionId, Mode, Outcome, Resource, Task, TaskProfile, Tier


class Detection(enum.StrEnum):
    """When the chain detectors ran for a decision (``chain.yaml`` ``detection``)."""

    PRE_ISSUANCE = "pre_issuance"  # before anything was issued: a hit denies this request
    POST_ISSUANCE = "post_issuance"  # right after issuance: a hit revokes every grant of the task


@dataclass(frozen=True, slots=True)
class ChainSummary:
    """What the task already did; the policy engine receives it as context.

    ``actions``/``consequences`` go to Cedar and into the decision record as sets (each once, in
    order of first appearance): Cedar sets ignore repeats, and a list with one entry per step
    would make every decision of a long task cost more (context parsed, record written) as its
    history grows (benchmarks/cost_growth.py)."""

    steps: int = 0
    actions: tuple[str, ...] = ()
    consequences: tuple[str, ...] = ()
    max_tier: Tier | None = None
    grants_active: int = 0

    @property
    def distinct_actions(self) -> list[str]:
        return list(dict.fromkeys(self.actions))

    @property
    def distinct_consequences(self) -> list[str]:
        return list(dict.fromkeys(self.consequences))

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "actions": self.distinct_actions,
            "consequences": self.distinct_consequences,
            "max_tier": self.max_tier.value if self.max_tier else None,
            "grants_active": self.grants_active,
        }


@dataclass(frozen=True, slots=True)
class ApprovalContext:
    approval_id: str
    approved: bool


@dataclass(frozen=True, slots=True)
class DecisionInput:
    decision_id: DecisionId
    agent: Agent
    profile: TaskProfile
    task: Task
    action_name: str
    resource_name: str
    action: Action | None  # None: not in the catalog
    resource: Resource | None  # None: not registered
    chain: ChainSummary
    now: datetime
    approval: ApprovalContext | None = None

    @property
    def human_present(self) -> bool:
        """Only a person the broker verified counts (a typed ``on_behalf_of`` proves nothing)."""
        return self.task.acting_for is not None

    def to_record(self) -> dict[str, Any]:
        return {
            "agent": self.agent.name,
            "agent_trust": self.agent.trust_level.value,
            "task_id": self.task.task_id,
            "profile": self.profile.name,
            "action": self.action_name,
            "resource": self.resource_name,
            "consequence": self.action.consequence.value if self.action else None,
            "sensitivity": self.resource.sensitivity.value if self.resource else None,
            "environment": self.resource.environment.value if self.resource else None,
            "on_behalf_of": self.task.on_behalf_of,
            "acting_for": self.task.acting_for.to_dict() if self.task.acting_for is not None else None,
            "chain": self.chain.to_dict(),
            "approval_id": self.approval.approval_id if self.approval else None,
            # what replay needs to rebuild this input faithfully (broker.policy.replay)
            "agent_owner": self.agent.owner,
            "agent_profiles": list(self.agent.profiles),
            "profile_allowed_actions": list(self.profile.allowed_actions),
            "profile_ceiling": self.profile.ceiling.value,
            "profile_max_lifetime_seconds": self.profile.max_lifetime_seconds,
            "resource_kind": self.resource.kind if self.resource else None,
            "resource_external": self.resource.external if self.resource else None,
            "reversible": self.action.reversible if self.action else None,
            "task_purpose": self.task.purpose,
            "task_expires_at": self.task.expires_at.isoformat(),
            "decided_at": self.now.isoformat(),
            "approval_approved": self.approval.approved if self.approval else None,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: DecisionId
    outcome: Outcome
    tier: Tier
    score: int
    factors: dict[str, Any]
    mode: Mode
    ttl_seconds: int
    uses: int
    reasons: tuple[str, ...]
    policy_ids: tuple[str, ...] = ()
    bundle_hash: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    detection: Detection | None = None  # set by the chain gate; None before it has seen the decision

    def public(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "outcome": self.outcome.value,
            "tier": self.tier.value,
            "score": self.score,
            "mode": self.mode.value,
            "ttl_seconds": self.ttl_seconds,
            "uses": self.uses,
            "reasons": list(self.reasons),
            "policy_ids": list(self.policy_ids),
            "bundle_hash": self.bundle_hash,
            "detection": self.detection.value if self.detection else None,
        }

    def record(self) -> dict[str, Any]:
        return {**self.public(), "factors": self.factors, "inputs": self.inputs}


class DecisionEngine(Protocol):
    bundle_hash: str

    def decide(self, request: DecisionInput) -> Decision: ...
