"""People: the humans who approve, review, audit and administer — authenticated, never typed.

- :class:`Role` — the closed set of what a person may do (``admin``, ``approver``, ``reviewer``,
  ``auditor``); assigned by an admin, stored with the person.
- :class:`Person` — a registered person: a name (the broker's stable id for them), their roles and
  the OIDC identities (issuer + subject) they sign in with.
- :class:`Caller` — who made *this* request, as established by authentication: a person (through
  one of their API tokens or an ID token from a human issuer) or the shared admin token.

An agent's bound owner is :class:`broker.models.OwnerIdentity` (the kernel: agents carry it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NewType

PersonName = NewType("PersonName", str)
TokenId = NewType("TokenId", str)

ADMIN_TOKEN_ACTOR: Final = "admin-token"
PERSON_ISSUER: Final = "nhi-broker:person"  # the "issuer" of a person authenticated by an API token


class Role(enum.StrEnum):
    ADMIN = "admin"  # people, their tokens and roles; the registry
    APPROVER = "approver"  # approve or deny step-up approvals
    REVIEWER = "reviewer"  # resolve the post-action review queue
    AUDITOR = "auditor"  # read everything, change nothing


class Via(enum.StrEnum):
    TOKEN = "person_token"  # a per-person API token
    OIDC = "oidc"  # an ID token from a configured human issuer
    ADMIN_TOKEN = "admin_token"  # the shared bootstrap token (not a person)
    SYSTEM = "system"  # the broker itself (the demo seed); never authenticated over HTTP


@dataclass(frozen=True, slots=True)
class PersonIdentity:
    issuer: str
    subject: str

    def to_dict(self) -> dict[str, str]:
        return {"issuer": self.issuer, "subject": self.subject}


@dataclass(frozen=True, slots=True)
class Person:
    name: PersonName
    roles: frozenset[Role]
    identities: tuple[PersonIdentity, ...]
    display_name: str
    disabled: bool
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "roles": sorted(r.value for r in self.roles),
            "identities": [i.to_dict() for i in self.identities],
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class PersonToken:
    """A per-person API token as stored: never the secret, only its salted HMAC."""

    token_id: TokenId
    person: PersonName
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"

    def to_dict(self, now: datetime) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {
            "token_id": self.token_id,
            "person": self.person,
            "description": self.description,
            "state": self.state_at(now),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
        }


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of a people route. ``person`` is None only for the admin token."""

    via: Via
    person: Person | None
    issuer: str  # the OIDC issuer, or PERSON_ISSUER for an API token, or "" for the admin token
    subject: str  # the OIDC subject, or the person's name for an API token
    token_id: TokenId | None = None

    @classmethod
    def system(cls, name: str) -> Caller:
        """The broker acting by itself (e.g. ``seed``): an audit actor, no roles."""
        return cls(via=Via.SYSTEM, person=None, issuer="", subject=name)

    @property
    def is_admin_token(self) -> bool:
        return self.via is Via.ADMIN_TOKEN

    @property
    def roles(self) -> frozenset[Role]:
        if self.via is Via.ADMIN_TOKEN:  # the bootstrap token: administration and reading, never a vote
            return frozenset({Role.ADMIN, Role.AUDITOR})
        return self.person.roles if self.person is not None else frozenset()

    @property
    def actor(self) -> str:
        """The audit ``actor`` of what this caller does."""
        if self.person is not None:
            return f"person:{self.person.name}"
        return ADMIN_TOKEN_ACTOR if self.via is Via.ADMIN_TOKEN else self.subject

    def subject_keys(self) -> frozenset[tuple[str, str]]:
        """Every (issuer, subject) this caller is known as: compared for four-eyes."""
        keys = {(self.issuer, self.subject)}
        if self.person is not None:
            keys.add((PERSON_ISSUER, self.person.name))
            keys.update((i.issuer, i.subject) for i in self.person.identities)
        return frozenset(keys)

    def to_dict(self) -> dict[str, Any]:
        """The authenticated subject as it goes into audit records and votes (no secret)."""
        out: dict[str, Any] = {"via": self.via.value, "issuer": self.issuer, "subject": self.subject}
        if self.person is not None:
            out["person"] = self.person.name
        if self.token_id is not None:
            out["token_id"] = self.token_id
        return out


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A console session as stored: the HMAC of its id, never the id (broker/people/sessions.py)."""

    id_hash: str
    person: PersonName
    identity: PersonIdentity  # the OIDC identity the person signed in with
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None
