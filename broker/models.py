"""Domain types: closed sets as enums, records as frozen dataclasses, ids as NewTypes.

The vocabulary is the design card's: agent, task profile, task, action, resource, decision,
grant, approval, finding, audit event.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NewType

TaskId = NewType("TaskId", str)
GrantId = NewType("GrantId", str)
DecisionId = NewType("DecisionId", str)
ApprovalId = NewType("ApprovalId", str)


class Tier(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _TIER_RANK[self]

    @classmethod
    def from_rank(cls, rank: int) -> Tier:
        return _TIERS[max(0, min(rank, len(_TIERS) - 1))]


_TIERS = [Tier.LOW, Tier.MEDIUM, Tier.HIGH, Tier.CRITICAL]
_TIER_RANK = {t: i for i, t in enumerate(_TIERS)}


class Outcome(enum.StrEnum):
    ALLOW = "allow"
    STEP_UP = "step_up"
    DENY = "deny"


class Mode(enum.StrEnum):
    MONITOR = "monitor"
    INLINE = "inline"
    REVIEW = "review"


class Sensitivity(enum.StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class Environment(enum.StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Consequence(enum.StrEnum):
    OBSERVE = "observe"
    READ_SENSITIVE = "read-sensitive"
    WRITE = "write"
    EXECUTE = "execute"
    FINANCIAL = "financial"
    SECRET_ACCESS = "secret-access"
    EXPORT = "export"
    PRIVILEGE = "privilege"


class TaskState(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"
    QUARANTINED = "quarantined"
    EXPIRED = "expired"


class GrantState(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class LeakAction(enum.StrEnum):
    """What the broker did about one of its own secrets seen where it should not be."""

    NONE = "none"  # the grant was no longer active
    TASK_ESCALATED = "task_escalated"  # the grant revoked and its task escalated (leaked_secret)
    GRANT_REVOKED = "grant_revoked"  # the task was no longer active: the grant alone revoked


class FindingStatus(enum.StrEnum):
    """A scheduled scan's finding."""

    OPEN = "open"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"
    REVOKED = "revoked"
    ROTATED = "rotated"


class TrustLevel(enum.StrEnum):
    LOW = "low"
    STANDARD = "standard"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class IdentityBinding:
    issuer: str
    subject: str
    claims: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OwnerIdentity:
    """An agent's bound owner (four-eyes compares it with the authenticated approver, never a typed
    name): ``person`` (a registered person's name) or an OIDC ``issuer`` + ``subject``."""

    person: str | None = None
    issuer: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if (self.person is None) == (self.issuer is None or self.subject is None):
            raise ValueError("an owner identity is either a person or an issuer and a subject")

    def to_dict(self) -> dict[str, str]:
        if self.person is not None:
            return {"person": self.person}
        assert self.issuer is not None and self.subject is not None
        return {"issuer": self.issuer, "subject": self.subject}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> OwnerIdentity:
        if raw.get("person"):
            return cls(person=str(raw["person"]))
        return cls(issuer=str(raw["issuer"]), subject=str(raw["subject"]))


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    owner: str  # the accountable team or person, as text (display only)
    trust_level: TrustLevel
    bindings: tuple[IdentityBinding, ...]
    profiles: tuple[str, ...]
    description: str = ""
    owner_identity: OwnerIdentity | None = None  # the bound owner; without it nothing is approvable


@dataclass(frozen=True, slots=True)
class TaskProfile:
    name: str
    allowed_actions: tuple[str, ...]
    ceiling: Tier
    max_lifetime_seconds: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    kind: str
    sensitivity: Sensitivity
    environment: Environment
    settings: dict[str, Any]
    description: str = ""
    external: bool = False
    # may the agent be handed this resource's credential (POST .../credentials, the MCP tool
    # request_credential)? False: only the broker uses it (the gateway injects it). http_api: always False
    agent_may_hold: bool = True


@dataclass(frozen=True, slots=True)
class VerifiedHuman:
    """A person proven by an ID token from a configured human issuer (never a typed name)."""

    issuer: str
    subject: str
    attributes: Mapping[str, Any] = field(default_factory=dict)  # the configured claims (groups, email)

    @property
    def principal(self) -> str:
        return f"{self.issuer}#{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        return {"iss": self.issuer, "sub": self.subject, **self.attributes}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> VerifiedHuman:
        return cls(str(raw["iss"]), str(raw["sub"]), {k: v for k, v in raw.items() if k not in ("iss", "sub")})


@dataclass(frozen=True, slots=True)
class Delegation:
    """The narrower scope a task's agent handed to a sub-agent: actions ⊆ the parent's, ceiling ≤."""

    actions: tuple[str, ...]
    ceiling: Tier
    delegated_by: str  # the parent task's agent

    def to_dict(self) -> dict[str, Any]:
        return {"actions": list(self.actions), "ceiling": self.ceiling.value, "delegated_by": self.delegated_by}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Delegation:
        return cls(tuple(raw["actions"]), Tier(raw["ceiling"]), str(raw["delegated_by"]))


@dataclass(frozen=True, slots=True)
class Task:
    task_id: TaskId
    agent: str
    profile: str
    purpose: str
    on_behalf_of: str | None  # as the agent stated it; proven only when ``acting_for`` is set
    state: TaskState
    created_at: datetime
    expires_at: datetime
    state_reason: str | None = None
    acting_for: VerifiedHuman | None = None  # the person an exchanged token proved (docs/identity.md)
    parent_task_id: TaskId | None = None  # set on a delegated sub-task
    delegation: Delegation | None = None  # what the parent handed down (narrower than its own)


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    consequence: Consequence
    reversible: bool
    description: str = ""


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    tier: Tier
    score: int
    factors: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Grant:
    """An issued credential as the broker recorded it (never the secret: its fingerprints)."""

    grant_id: GrantId
    task_id: TaskId
    decision_id: DecisionId
    backend: str
    resource: str
    action: str
    lease_id: str | None
    accessor: str | None
    fingerprints: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    state: GrantState
    revocation: Mapping[str, Any] = field(default_factory=dict)  # the backend's reference (opaque)
    covered_by_task_handle: bool = False
    public: Mapping[str, Any] = field(default_factory=dict)
    secret_lengths: Mapping[str, int] = field(default_factory=dict)  # {fingerprint: length}
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state is GrantState.ACTIVE


def effective_profile(profile: TaskProfile, task: Task) -> TaskProfile:
    """The profile a task is decided under: a delegated task's is narrowed to what it was handed."""
    if task.delegation is None:
        return profile
    d = task.delegation
    ceiling = min(profile.ceiling, d.ceiling, key=lambda t: t.rank)
    return TaskProfile(
        name=profile.name,
        allowed_actions=tuple(a for a in d.actions if a in profile.allowed_actions),
        ceiling=ceiling,
        max_lifetime_seconds=profile.max_lifetime_seconds,
        description=f"{profile.description} (delegated by {d.delegated_by})".strip(),
    )
