"""Typed rows: what the store hands upward, as frozen dataclasses.

The repositories (:mod:`broker.store.repo`, :mod:`broker.store.outbox`, :mod:`broker.chain.store`,
:mod:`broker.audit`) convert SQLAlchemy rows into these types at the boundary; nothing above the
store indexes a row by column name. Timestamps are timezone-aware (SQLite hands back naive UTC).
Opaque JSON a backend or a detector wrote (a revocation reference, an event's detail) stays a
read-only ``Mapping``; the HTTP presenters (:mod:`broker.api.presenters`) turn rows into bodies.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NewType

from sqlalchemy import RowMapping

from broker.models import (
    Agent,
    DecisionId,
    Grant,
    GrantId,
    GrantState,
    Mode,
    Outcome,
    Resource,
    TaskId,
    TaskProfile,
    Tier,
)

HandleId = NewType("HandleId", int)
RevocationId = NewType("RevocationId", int)


def aware_ts(value: datetime) -> datetime:
    """A NOT NULL timestamp column, made timezone-aware (SQLite stores UTC without the zone)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def aware_opt(value: datetime | None) -> datetime | None:
    return None if value is None else aware_ts(value)


class HandleState(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class RevocationState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


class FailureKind(enum.StrEnum):
    """Why the last revocation attempt failed: the backend could not be reached, or it said no."""

    UNAVAILABLE = "unavailable"
    ERROR = "error"


def grant_from_row(m: RowMapping) -> Grant:
    return Grant(
        grant_id=GrantId(m["grant_id"]),
        task_id=TaskId(m["task_id"]),
        decision_id=DecisionId(m["decision_id"]),
        backend=m["backend"],
        resource=m["resource"],
        action=m["action"],
        lease_id=m["lease_id"],
        accessor=m["accessor"],
        fingerprints=tuple(m["fingerprints"] or ()),
        issued_at=aware_ts(m["issued_at"]),
        expires_at=aware_ts(m["expires_at"]),
        state=GrantState(m["state"]),
        revocation=dict(m["revocation"] or {}),
        covered_by_task_handle=bool(m["covered_by_task_handle"]),
        public=dict(m["public"] or {}),
        secret_lengths=dict(m["secret_lengths"] or {}),
        revoked_at=aware_opt(m["revoked_at"]),
    )


@dataclass(frozen=True, slots=True)
class GrantFingerprints:
    """An active grant's fingerprints, for the known-secret index of the scanner."""

    grant_id: GrantId
    task_id: TaskId
    agent: str
    fingerprints: tuple[str, ...]
    secret_lengths: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class TaskHandle:
    """A task-level handle a backend created (e.g. the OpenBao parent token's accessor)."""

    id: HandleId
    task_id: TaskId
    backend: str
    reference: Mapping[str, Any]
    state: HandleState
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GrantToRevoke:
    grant_id: GrantId
    backend: str
    revocation: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Revocation:
    """A row of the revocation outbox: written before the backend is called, retried until done."""

    id: RevocationId
    task_id: TaskId
    grant_id: GrantId | None
    handle_id: HandleId | None
    backend: str
    reference: Mapping[str, Any]
    reason: str
    state: RevocationState
    attempts: int
    last_error: str | None
    last_error_kind: FailureKind | None
    created_at: datetime
    next_attempt_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_row(cls, m: RowMapping) -> Revocation:
        kind = m["last_error_kind"]
        return cls(
            id=RevocationId(m["id"]),
            task_id=TaskId(m["task_id"]),
            grant_id=GrantId(m["grant_id"]) if m["grant_id"] else None,
            handle_id=HandleId(m["handle_id"]) if m["handle_id"] is not None else None,
            backend=m["backend"],
            reference=dict(m["reference"] or {}),
            reason=m["reason"],
            state=RevocationState(m["state"]),
            attempts=int(m["attempts"]),
            last_error=m["last_error"],
            last_error_kind=FailureKind(kind) if kind else None,
            created_at=aware_ts(m["created_at"]),
            next_attempt_at=aware_ts(m["next_attempt_at"]),
            completed_at=aware_opt(m["completed_at"]),
        )


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision as recorded: the columns the store indexes and the full JSON ``record``
    (the decision's public fields plus its inputs, for explain and replay)."""

    decision_id: DecisionId
    task_id: TaskId
    agent: str
    action: str
    resource: str
    outcome: Outcome
    tier: Tier
    mode: Mode
    ttl_seconds: int
    bundle_hash: str
    record: Mapping[str, Any]
    created_at: datetime
    consequence: str | None  # NULL on rows before revision 0008: read the record
    sensitivity: str | None
    external: bool | None

    @classmethod
    def from_row(cls, m: RowMapping) -> StoredDecision:
        return cls(
            decision_id=DecisionId(m["decision_id"]),
            task_id=TaskId(m["task_id"]),
            agent=m["agent"],
            action=m["action"],
            resource=m["resource"],
            outcome=Outcome(m["outcome"]),
            tier=Tier(m["tier"]),
            mode=Mode(m["mode"]),
            ttl_seconds=int(m["ttl_seconds"]),
            bundle_hash=m["bundle_hash"],
            record=dict(m["record"] or {}),
            created_at=aware_ts(m["created_at"]),
            consequence=m["consequence"],
            sensitivity=m["sensitivity"],
            external=m["external"],
        )


@dataclass(frozen=True, slots=True)
class DecisionStep:
    """A chain's decision without its (large) JSON record: what the risk model counts."""

    action: str
    tier: Tier
    outcome: Outcome


class Entity(enum.StrEnum):
    """What the registry holds (the admin API's ``/v1/admin/{agents,profiles,resources}``)."""

    AGENT = "agent"
    PROFILE = "profile"
    RESOURCE = "resource"


@dataclass(frozen=True, slots=True)
class Registered:
    """A registry entry as stored: the agent, profile or resource, and when it was created and
    last changed."""

    item: Agent | TaskProfile | Resource
    created_at: datetime
    updated_at: datetime
