"""The credential backend port.

A backend turns an allowed decision into an ephemeral credential at a real system (OpenBao,
PostgreSQL through OpenBao's database engine, AWS STS) and revokes it again. The service layer
knows only this protocol; library types (hvac, boto3) stay inside the adapters, which translate
their exceptions into :mod:`broker.errors` (``UpstreamUnavailable`` when the backend cannot be
reached, ``UpstreamError`` when it answered with an error, ``InvalidInput`` for bad settings).

Revocation is described by *references*: small JSON-able dicts with no secret in them
(an accessor, a lease id, a role name). They are written to the store before the revocation is
attempted, so a worker can retry them after a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from broker.models import Action, Agent, DecisionId, GrantId, Resource, Task
from broker.secrets import Secret


@dataclass(frozen=True, slots=True)
class IssueRequest:
    task: Task
    agent: Agent
    action: Action
    resource: Resource
    ttl_seconds: int
    uses: int  # 0 = unlimited; 1 = single use where the backend can enforce it
    decision_id: DecisionId
    grant_id: GrantId
    # write-ahead hook: a backend that creates a task-level handle (e.g. a parent token) calls
    # this with the handle's revocation reference BEFORE issuing anything under it
    persist_handle: Callable[[dict[str, Any]], None] | None = None


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """What a backend issued. ``public`` goes back to the agent as is and may be logged;
    ``secrets`` goes back to the agent and is fingerprinted, never stored or logged."""

    kind: str
    public: dict[str, Any]
    secrets: dict[str, Secret]
    expires_at: datetime
    revocation: dict[str, Any]  # reference to revoke this grant later (no secret in it)
    lease_id: str | None = None
    accessor: str | None = None
    # task-level handle the backend created on the way (e.g. the OpenBao parent token's
    # accessor); persisted once per task and revoked when the task ends
    task_handle: dict[str, Any] | None = None
    # grants covered by a task handle need no call of their own when that handle is revoked
    covered_by_task_handle: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # when the backend itself stops honouring the credential, if later than ``expires_at`` (AWS:
    # STS sessions last at least 900 s); the grant's reference then says ``revoke_at_expiry`` and
    # the expiry sweeper revokes it when the broker's expiry passes
    backend_expires_at: datetime | None = None


class CredentialBackend(Protocol):
    """One per resource kind (the kinds and their adapters are listed in :mod:`broker.backends.kinds`)."""

    kind: str
    # True when the backend ends a credential by itself at its expiry (OpenBao token/lease TTL,
    # STS session duration); False asks the expiry sweeper to queue an explicit revocation
    self_expiring: bool

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check a resource's settings against the real backend (the role/policy/path exists)
        and return them normalised. Raise ``InvalidInput`` naming the field."""
        ...

    def issue(self, request: IssueRequest) -> IssuedCredential: ...

    def revoke(self, reference: Mapping[str, Any]) -> None:
        """Revoke what ``reference`` names. Idempotent: revoking something already gone is
        success. Raise ``UpstreamUnavailable``/``UpstreamError`` to be retried later."""
        ...

    def check_alive(self) -> None:
        """Raise ``UpstreamUnavailable`` when the backend cannot be reached."""
        ...


# -- optional capabilities: small protocols, checked once when the services are built -----------


@runtime_checkable
class TaskScopedBackend(Protocol):
    """A backend that keeps per-task state in process (a parent token, a cached session) and must
    drop it when the task's credentials are revoked."""

    def forget_task(self, task_id: str) -> None: ...


@runtime_checkable
class UnwrapJudge(Protocol):
    """A backend that hands out response-wrapped secrets and can tell, from the wrapping token's
    accessor, whether a failed unwrap means someone else unwrapped it (``tampered``)."""

    def judge_unwrap_failure(self, reference: Mapping[str, Any], *, expires_at: datetime, revoked: bool) -> str: ...
