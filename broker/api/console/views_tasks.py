"""View models of the console's Tasks pages: the task list and a task's timeline.

Built from the services and the store's typed rows, read-only. A timeline merges, in time order,
the task's decisions (with the grants each produced), its chain events (reported steps, leaks,
reviews, delegations, gateway calls), its escalations, its approvals and reviews, and every
revocation the outbox queued with the time the backend confirmed it. The templates render these
dataclasses; nothing here builds HTML.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.api.console.query import check_limit, keyset
from broker.approvals import store as approvals_db
from broker.approvals.model import Approval, Review
from broker.chain.model import ChainEvent, StepKind
from broker.container import Container
from broker.errors import InvalidInput
from broker.models import Grant, Outcome, Task, TaskState
from broker.services.tasks import DelegationNode
from broker.store import outbox
from broker.store.rows import Revocation, RevocationState, StoredDecision

MAX_TIMELINE = 2000  # entries shown of one task; the rest are counted, not loaded into the page


class TaskFilter(enum.StrEnum):
    """The task list's state filter: ``ended`` is every task that is no longer active."""

    ALL = "all"
    ACTIVE = "active"
    ENDED = "ended"
    QUARANTINED = "quarantined"

    @property
    def states(self) -> tuple[TaskState, ...]:
        if self is TaskFilter.ACTIVE:
            return (TaskState.ACTIVE,)
        if self is TaskFilter.ENDED:
            return (TaskState.ENDED, TaskState.QUARANTINED, TaskState.EXPIRED)
        if self is TaskFilter.QUARANTINED:
            return (TaskState.QUARANTINED,)
        return ()


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of the task list, newest first; ``next_before`` is the task id to continue after."""

    items: tuple[Task, ...]
    state: TaskFilter
    agent: str | None
    next_before: str | None


def task_page(c: Container, *, state: TaskFilter, agent: str | None, before: str | None, limit: int = 50) -> TaskPage:
    check_limit(limit)
    with c.store.read() as conn:
        cursor: tuple[datetime, str] | None = None
        if before is not None:
            last = c.store.get_task(conn, before)
            if last is None:
                raise InvalidInput("before", f'task "{before}" does not exist')
            cursor = (last.created_at, last.task_id)
        rows = c.store.list_tasks(conn, states=state.states, agent=agent, before=cursor, limit=limit + 1)
    items, after = keyset(rows, limit, lambda t: t.task_id)
    return TaskPage(items, state, agent, after)


# -- the timeline ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionEntry:
    """A credential request: its decision and the grants it produced (with their revocation)."""

    at: datetime
    decision: StoredDecision
    grants: tuple[Grant, ...]
    stopped_by: str | None  # the detector that denied it before issuance, if one did
    kind: str = "decision"

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(str(r) for r in self.decision.record.get("reasons") or ())

    @property
    def uses(self) -> int | None:
        value = self.decision.record.get("uses")
        return int(value) if isinstance(value, int) else None


@dataclass(frozen=True, slots=True)
class EventEntry:
    """A chain event: a reported step (length and fingerprint, never its text), a leak or review
    report, a delegation, a descendant's escalation, a gateway call."""

    at: datetime
    event: ChainEvent
    kind: str = "event"

    @property
    def step(self) -> str:
        return self.event.kind.value

    @property
    def facts(self) -> tuple[tuple[str, str], ...]:
        """The event's detail worth showing, as (label, text) pairs (no secret is ever stored)."""
        return tuple((k, _text(v)) for k, v in self.event.detail.items() if k in _EVENT_DETAIL)

    @property
    def linked_task(self) -> str | None:
        """The sub-task a delegation step or a descendant's escalation names."""
        value = self.event.detail.get("child_task_id")
        return str(value) if value else None


_EVENT_DETAIL = (
    "grant_id",
    "review_id",
    "finding",
    "detector",
    "method",
    "path",
    "status",
    "request_bytes",
    "response_bytes",
    "redactions",
    "actions",
    "ceiling",
    "agent",
    "leak",
    "error",
    "decision_id",
)


@dataclass(frozen=True, slots=True)
class EscalationStep:
    ref: str
    action: str | None
    resource: str | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class EscalationEntry:
    """The chain escalated: the detector, its rule and reason, the steps that triggered it, and
    the revocations it queued (each with the time its backend confirmed it)."""

    at: datetime
    event_id: str
    detector: str
    rule: str | None
    reason: str
    mode: str | None
    actor: str | None
    steps: tuple[EscalationStep, ...]
    revocations: tuple[Revocation, ...]
    kind: str = "escalation"

    @property
    def confirmed_at(self) -> datetime | None:
        """When the last of its revocations was confirmed (None while any is pending)."""
        if not self.revocations or any(r.state is RevocationState.PENDING for r in self.revocations):
            return None
        return max(r.completed_at for r in self.revocations if r.completed_at is not None)


@dataclass(frozen=True, slots=True)
class RevocationEntry:
    """A revocation in the outbox: queued at ``at``, confirmed at ``revocation.completed_at``."""

    at: datetime
    revocation: Revocation
    kind: str = "revocation"

    @property
    def confirmed_after_ms(self) -> float | None:
        done = self.revocation.completed_at
        return None if done is None else round((done - self.revocation.created_at).total_seconds() * 1000, 1)


@dataclass(frozen=True, slots=True)
class ApprovalEntry:
    at: datetime
    approval: Approval
    kind: str = "approval"


@dataclass(frozen=True, slots=True)
class ReviewEntry:
    at: datetime
    review: Review
    kind: str = "review"


Entry = DecisionEntry | EventEntry | EscalationEntry | RevocationEntry | ApprovalEntry | ReviewEntry


@dataclass(frozen=True, slots=True)
class TaskTimeline:
    """A task, the task it was delegated from, its chain as a timeline, its delegation tree."""

    task: Task
    parent: Task | None
    entries: tuple[Entry, ...]
    omitted: int  # entries beyond MAX_TIMELINE, not shown
    delegations: tuple[DelegationNode, ...]
    grants_active: int
    grants_total: int
    revocations_pending: int
    max_tier: str | None

    @property
    def escalations(self) -> tuple[EscalationEntry, ...]:
        return tuple(e for e in self.entries if isinstance(e, EscalationEntry))


def task_timeline(c: Container, task_id: str) -> TaskTimeline:
    view = c.tasks.view(task_id)  # NotFound for an unknown task
    with c.store.read() as conn:
        revocations = outbox.for_task(conn, task_id, limit=MAX_TIMELINE)
        approvals = approvals_db.approvals_for_task(conn, task_id, limit=MAX_TIMELINE)
        reviews = approvals_db.list_reviews(conn, None, task_id, MAX_TIMELINE)
        parent = c.store.get_task(conn, view.task.parent_task_id) if view.task.parent_task_id else None
    chain = view.chain
    entries = _entries(chain.decisions, chain.events, chain.grants, revocations, approvals, reviews)
    return TaskTimeline(
        task=view.task,
        parent=parent,
        entries=tuple(entries[:MAX_TIMELINE]),
        omitted=max(0, len(entries) - MAX_TIMELINE),
        delegations=view.delegations,
        grants_active=sum(g.active for g in chain.grants),
        grants_total=len(chain.grants),
        revocations_pending=sum(r.state is RevocationState.PENDING for r in revocations),
        max_tier=view.summary.max_tier.value if view.summary.max_tier else None,
    )


def _entries(
    decisions: Sequence[StoredDecision],
    events: Sequence[ChainEvent],
    grants: Sequence[Grant],
    revocations: Sequence[Revocation],
    approvals: Sequence[Approval],
    reviews: Sequence[Review],
) -> list[Entry]:
    by_decision: dict[str, list[Grant]] = {}
    for g in grants:
        by_decision.setdefault(g.decision_id, []).append(g)
    escalations = [e for e in events if e.kind is StepKind.ESCALATION]
    stopped = {_stopping_ref(e): str(e.detail.get("detector", "")) for e in escalations}
    claimed: set[int] = set()
    entries: list[Entry] = []
    for d in decisions:
        stopped_by = stopped.get(d.decision_id) if d.outcome is Outcome.DENY else None
        entries.append(DecisionEntry(d.created_at, d, tuple(by_decision.get(d.decision_id, ())), stopped_by))
    for e in events:
        if e.kind is StepKind.ESCALATION:
            entry = _escalation(e, revocations, claimed)
            entries.append(entry)
        else:
            entries.append(EventEntry(e.created_at, e))
    entries.extend(RevocationEntry(r.created_at, r) for r in revocations if r.id not in claimed)
    entries.extend(ApprovalEntry(a.created_at, a) for a in approvals)
    entries.extend(ReviewEntry(r.created_at, r) for r in reviews)
    entries.sort(key=lambda x: (x.at, _ORDER[x.kind]))
    return entries


_ORDER = {"decision": 0, "approval": 1, "review": 2, "event": 3, "escalation": 4, "revocation": 5}


def _stopping_ref(e: ChainEvent) -> str | None:
    """The step an escalation was raised on (its last triggering step): a request the detectors
    stopped before anything was issued."""
    steps = e.detail.get("steps") or []
    last = steps[-1] if steps and isinstance(steps[-1], Mapping) else None
    return str(last.get("ref")) if last and last.get("ref") else None


def _escalation(e: ChainEvent, revocations: Sequence[Revocation], claimed: set[int]) -> EscalationEntry:
    d = e.detail
    reason = str(d.get("reason", ""))
    detector = str(d.get("detector", ""))
    # the outbox rows it queued carry "detector: reason" (RevocationService.revoke_task)
    mine = tuple(r for r in revocations if r.reason == f"{detector}: {reason}" and r.id not in claimed)
    claimed.update(r.id for r in mine)
    return EscalationEntry(
        at=e.created_at,
        event_id=e.event_id,
        detector=detector,
        rule=str(d["rule"]) if d.get("rule") else None,
        reason=reason,
        mode=str(d["mode"]) if d.get("mode") else None,
        actor=str(d["actor"]) if d.get("actor") else None,
        steps=tuple(_step(s) for s in d.get("steps") or () if isinstance(s, Mapping)),
        revocations=mine,
    )


def _step(s: Mapping[str, Any]) -> EscalationStep:
    def opt(key: str) -> str | None:
        value = s.get(key)
        return None if value is None else str(value)

    return EscalationStep(
        ref=str(s.get("ref", "")), action=opt("action"), resource=opt("resource"), outcome=opt("outcome")
    )


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return str(value)


def flatten(nodes: Sequence[DelegationNode], depth: int = 0) -> list[tuple[int, Task]]:
    """The delegation tree as (depth, task) rows, depth first (what the template indents)."""
    rows: list[tuple[int, Task]] = []
    for n in nodes:
        rows.append((depth, n.task))
        rows.extend(flatten(n.children, depth + 1))
    return rows
