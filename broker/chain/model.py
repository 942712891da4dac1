"""Chain vocabulary: a step of a task's chain, a detector hit, and what a detector sees.

A task's chain is the ordered list of its steps: every credential request with its decision,
and every event the agent reported (prompt, output, tool call, tool result), plus the leak and
review reports and the escalations themselves. Detectors look at the history and one candidate
step (the request or event being handled now) and say whether the chain escalates.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from broker.models import Outcome, Resource, TaskId, TaskProfile, TaskState, Tier


class StepKind(enum.StrEnum):
    CREDENTIAL_REQUEST = "credential_request"
    PROMPT = "prompt"
    OUTPUT = "output"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    LEAK = "leak_reported"
    REVIEW = "review_flagged"
    ESCALATION = "escalation"
    DELEGATION = "delegation"  # this task handed a narrower sub-task to another agent
    DELEGATE_ESCALATED = "delegate_escalated"  # a descendant task escalated
    GATEWAY_CALL = "gateway_call"  # the gateway made a call for the task (its decision is the step before)


EVENT_KINDS = (StepKind.PROMPT, StepKind.OUTPUT, StepKind.TOOL_CALL, StepKind.TOOL_RESULT)


@dataclass(frozen=True, slots=True)
class ChainStep:
    ref: str  # decision_id for a request, event_id for an event
    kind: StepKind
    at: datetime
    action: str | None = None
    resource: str | None = None
    consequence: str | None = None  # None: action not in the catalog
    sensitivity: str | None = None  # None: resource not registered
    external: bool | None = None
    tier: Tier | None = None
    outcome: Outcome | None = None
    # a credential request naming an approval (an agent collecting or polling a step-up):
    # a repeat of a request already counted, never counted toward ``burst``
    collection: bool = False

    @property
    def done(self) -> bool:
        """Did the agent get to do this? (an allowed request, or a reported tool call)."""
        if self.kind is StepKind.CREDENTIAL_REQUEST:
            return self.outcome is Outcome.ALLOW
        return self.kind is StepKind.TOOL_CALL and self.action is not None

    @property
    def assessed(self) -> bool:
        """Known action and resource: the risk was really assessed (a typo is not a chain)."""
        return self.consequence is not None and self.sensitivity is not None

    def brief(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind.value,
            "action": self.action,
            "resource": self.resource,
            "tier": self.tier.value if self.tier else None,
            "outcome": self.outcome.value if self.outcome else None,
        }


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """A stored chain event: a reported prompt, output or tool step (its text's length and HMAC
    fingerprint, never the text), a leak or review report, or an escalation (``detail`` holds the
    detector's audit data)."""

    event_id: str
    task_id: TaskId
    kind: StepKind
    action: str | None
    resource: str | None
    text_length: int | None
    text_fingerprint: str | None
    detail: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Escalation:
    """What escalating a task did: the detector that fired, the task's state afterwards, and what
    revoking its grants queued, completed and left pending (the worker retries those)."""

    task_id: str
    task_state: TaskState | None
    detector: str
    revocations_queued: int
    revocations_completed: int
    revocations_pending: int

    def to_json(self) -> dict[str, Any]:
        """The escalation as it is kept (on a scan finding) and shown."""
        return {
            "task_id": self.task_id,
            "task_state": self.task_state.value if self.task_state else None,
            "detector": self.detector,
            "revocations_queued": self.revocations_queued,
            "revocations_completed": self.revocations_completed,
            "revocations_pending": self.revocations_pending,
        }


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A chain event the agent reported, as recorded (never its text), and the escalation a
    reported tool call set off, if any."""

    event_id: str
    task_id: str
    kind: StepKind
    at: datetime
    text_length: int | None
    text_fingerprint: str | None
    escalation: Escalation | None


@dataclass(frozen=True, slots=True)
class Hit:
    """A detector fired: its name (on the audit trail), why, and the steps that triggered it."""

    detector: str
    reason: str
    steps: tuple[ChainStep, ...]
    rule: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def audit_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"detector": self.detector, "steps": [s.brief() for s in self.steps]}
        if self.rule:
            data["rule"] = self.rule
        return {**data, **self.extra}


@dataclass(frozen=True, slots=True)
class ChainContext:
    history: tuple[ChainStep, ...]
    candidate: ChainStep
    ceiling: Tier
    now: datetime


class Detector(Protocol):
    name: str

    def check(self, ctx: ChainContext) -> Hit | None: ...


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What the credential request flow already read in its one read of the store (the task's
    history, its profile, the named resource): the chain gate uses it instead of reading again.
    ``profile``/``resource`` None: not registered."""

    history: list[ChainStep]
    profile: TaskProfile | None
    resource: Resource | None
