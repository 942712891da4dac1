"""Workload identity → registered agent. Every failure is a 401 and an ``auth.failed`` event."""

from __future__ import annotations

from typing import Any, Protocol

from broker.audit import AuditLog
from broker.errors import Unauthenticated
from broker.models import Agent
from broker.services.auth_failures import AuthFailureLog
from broker.store.repo import Store


class Verified(Protocol):
    issuer: str
    subject: str
    claims: dict[str, Any]


class Verifier(Protocol):
    def verify(self, token: str) -> Any: ...


class AgentAuthenticator:
    def __init__(self, verifier: Verifier, store: Store, audit: AuditLog,
                 failures: AuthFailureLog | None = None) -> None:
        self.verifier = verifier
        self.store = store
        self.audit = audit
        self.failures = failures if failures is not None else AuthFailureLog(audit)

    def authenticate(self, token: str | None, *, source: str = "", address: str = "") -> Agent:
        try:
            if not token:
                raise Unauthenticated("missing bearer token: send Authorization: Bearer <identity JWT>")
            identity = self.verifier.verify(token)
            return self._agent_for(identity)
        except Unauthenticated as exc:
            self.failures.record(reason=exc.message, address=address, path=source)
            raise

    def _agent_for(self, identity: Verified) -> Agent:
        with self.store.read() as conn:
            name = self.store.identity_owner(conn, identity.issuer, identity.subject)
            agent = self.store.get_agent(conn, name) if name else None
        if agent is None:
            raise Unauthenticated("identity is valid but not bound to a registered agent")
        binding = next(b for b in agent.bindings if b.issuer == identity.issuer and b.subject == identity.subject)
        for claim, expected in binding.claims.items():
            if not claim_matches(identity.claims.get(claim), expected):
                raise Unauthenticated(f'identity token claim "{claim}" does not match the agent\'s binding')
        return agent


def claim_matches(value: object, expected: str) -> bool:
    """A bound claim matches only a string equal to ``expected``, or an integer whose decimal form
    is (numeric ids such as GitHub's ``repository_id``). A missing claim, ``null``, a boolean, a
    list or an object never matches (``str(None) == "None"`` used to)."""
    if isinstance(value, str):
        return value == expected
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) == expected
    return False
