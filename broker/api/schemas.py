"""Request bodies (pydantic at the edge). Field errors become 422 naming the field."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from broker.backends.kinds import ResourceKind
from broker.models import Environment, OwnerIdentity, Sensitivity, Tier, TrustLevel
from broker.text import FREE_TEXT_FIELDS, first_bad
from broker.text import message as text_message

NAME = r"^[a-z0-9][a-z0-9._-]{0,127}$"
MAX_SEQ = 2**62  # audit sequence numbers: far beyond any trail, inside a signed 64-bit column
TEN_YEARS = 10 * 365 * 86400


class Strict(BaseModel):
    """Unknown fields refused; every string (nested ones too) free of control, invisible and
    bidi-override characters (broker/text.py), a 422 naming the field. ``_scanned_fields`` hold
    data the broker scans and never stores (event and scan text): they may hold anything."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    _scanned_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if name in cls._scanned_fields:
            return value
        free = name in FREE_TEXT_FIELDS
        found = first_bad(value, free_text=free)
        if found is not None:
            raise ValueError(text_message(found, free_text=free))
        return value


class IdentityIn(Strict):
    issuer: str = Field(min_length=1, max_length=512)
    subject: str = Field(min_length=1, max_length=512)
    claims: dict[str, str] = {}


class OwnerIdentityIn(Strict):
    """The agent's bound owner: a registered person, or an OIDC issuer + subject."""

    person: str | None = Field(default=None, pattern=NAME)
    issuer: str | None = Field(default=None, min_length=1, max_length=512)
    subject: str | None = Field(default=None, min_length=1, max_length=512)

    @model_validator(mode="after")
    def _one_form(self) -> OwnerIdentityIn:
        if (self.person is None) == (self.issuer is None or self.subject is None) or (
            self.person is not None and (self.issuer or self.subject)
        ):
            raise ValueError('owner_identity is either {"person"} or {"issuer", "subject"}')
        return self

    def to_model(self) -> OwnerIdentity:
        return OwnerIdentity(person=self.person, issuer=self.issuer, subject=self.subject)


class AgentIn(Strict):
    owner: str = Field(min_length=1, max_length=256)
    # the bound owner (four-eyes: never approves or reviews this agent's requests); without it,
    # nothing this agent asks is approvable (docs/people.md)
    owner_identity: OwnerIdentityIn | None = None
    trust_level: TrustLevel = TrustLevel.STANDARD
    description: str = Field(default="", max_length=2000)
    identities: list[IdentityIn] = Field(default=[], max_length=20)
    profiles: list[str] = Field(default=[], max_length=100)


class ProfileIn(Strict):
    allowed_actions: list[str] = Field(min_length=1, max_length=200)
    ceiling: Tier = Tier.HIGH
    max_lifetime_seconds: int = Field(default=3600, ge=60, le=86400)
    description: str = Field(default="", max_length=2000)


class ResourceIn(Strict):
    kind: ResourceKind  # the registry of kinds: broker/backends/kinds.py
    sensitivity: Sensitivity
    environment: Environment
    external: bool = False
    # may the agent be handed the credential? default: yes, except http_api (only ever injected)
    agent_may_hold: bool | None = None
    description: str = Field(default="", max_length=2000)
    vault: dict[str, Any] | None = None
    aws: dict[str, Any] | None = None
    http: dict[str, Any] | None = None  # kind http_api (docs/backends.md)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.vault is not None:
            out["vault"] = self.vault
        if self.aws is not None:
            out["aws"] = self.aws
        if self.http is not None:
            out["http"] = self.http
        return out


class TaskIn(Strict):
    profile: str = Field(min_length=1, max_length=128)
    purpose: str = Field(min_length=1, max_length=2000)
    on_behalf_of: str | None = Field(default=None, min_length=1, max_length=256)
    lifetime_seconds: int | None = Field(default=None, ge=60, le=86400)


class DelegationIn(Strict):
    agent: str = Field(min_length=1, max_length=128, description="the registered agent that gets the sub-task")
    actions: list[str] = Field(min_length=1, max_length=100, description="a subset of this task's actions")
    ceiling: Tier = Field(description="at most this task's ceiling")
    lifetime_seconds: int | None = Field(default=None, ge=60, le=86400, description="at most this task's remaining")
    purpose: str = Field(min_length=1, max_length=2000)


class CredentialIn(Strict):
    action: str = Field(min_length=1, max_length=128)
    resource: str = Field(min_length=1, max_length=128)
    approval_id: str | None = Field(default=None, min_length=1, max_length=128)


class RevokeIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class EventIn(Strict):
    """A chain step reported by the agent (``POST /v1/tasks/{task_id}/events``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    _scanned_fields: ClassVar[frozenset[str]] = frozenset({"text"})
    kind: Literal["prompt", "output", "tool_call", "tool_result"]
    text: str | None = Field(default=None, max_length=1_000_000)
    action: str | None = Field(default=None, min_length=1, max_length=128)
    resource: str | None = Field(default=None, min_length=1, max_length=128)


class ScanIn(Strict):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    _scanned_fields: ClassVar[frozenset[str]] = frozenset({"text"})
    text: str = Field(max_length=1_048_576, description="text to scan (up to 1 MiB)")
