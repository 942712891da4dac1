"""Workload identity → registered agent. Every failure is a 401 and an ``auth.failed`` event."""

from __future__ import annotations

from typing import Any, Protocol

from broker.audit import AuditLog
from broker.errors import Unauthenticated
from broker.models import Agent
from broker.store.repo import Store


class Verified(Protocol):
    issuer: str
    subject: str
    claims: dict[str, Any]


class Verifier(Protocol):
    def verify(self, token: str) -> Any: ...


class AgentAuthenticator:
    def __init__(self, verifier: Verifier, store: Store, audit: AuditLog) -> None:
        self.verifier = verifier
        self.store = store
        self.audit = audit

    def authenticate(self, token: str | None, *, source: str = "") -> Agent:
        try:
            if not token:
                raise Unauthenticated("missing bearer token: send Authorization: Bearer <identity JWT>")
            identity = self.verifier.verify(token)
            return self._agent_for(identity)
        except Unauthenticated as exc:
            self.audit.record("auth.failed", actor="unknown", outcome="denied",
                              data={"reason": exc.message, "source": source})
            raise

    def _agent_for(self, identity: Verified) -> Agent:
        with self.store.read() as conn:
            name = self.store.identity_owner(conn, identity.issuer, identity.subject)
            agent = self.store.get_agent(conn, name) if name else None
        if agent is None:
            raise Unauthenticated("identity is valid but not bound to a registered agent")
        binding = next(b for b in agent.bindings if b.issuer == identity.issuer and b.subject == identity.subject)
        for claim, expected in binding.claims.items():
            if str(identity.claims.get(claim)) != expected:
                raise Unauthenticated(f'identity token claim "{claim}" does not match the agent\'s binding')
        return agent
