"""Caller → registered agent. Every failure is a 401 and an ``auth.failed`` event.

Three ways in (docs/identity.md):

- ``Authorization: Bearer <workload JWT>`` — the simple mode: a fresh identity token per call (its
  ``jti`` is spent when the issuer requires one);
- ``Authorization: Bearer <broker access token>`` — from ``POST /v1/token`` without a DPoP proof;
- ``Authorization: DPoP <broker access token>`` + ``DPoP: <proof>`` — the token is bound to the
  key whose thumbprint is its ``cnf.jkt``; a bound token presented as Bearer is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from broker.audit import AuditLog
from broker.errors import Unauthenticated
from broker.identity.access_tokens import AccessClaims, AccessTokens
from broker.identity.dpop import DPoPVerifier
from broker.models import Agent, TaskState, VerifiedHuman
from broker.secrets import constant_time_equals
from broker.services.auth_failures import AuthFailureLog
from broker.store.repo import Store


class Verified(Protocol):
    @property
    def issuer(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def claims(self) -> dict[str, Any]: ...


class Verifier(Protocol):
    def verify(self, token: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Principal:
    agent: Agent
    human: VerifiedHuman | None = None  # proven by an actor token at the exchange, never typed
    scope: tuple[str, ...] | None = None  # task profiles an exchanged token was narrowed to
    task_id: str | None = None  # a token for one delegated sub-task only


class AgentAuthenticator:
    def __init__(
        self,
        verifier: Verifier,
        store: Store,
        audit: AuditLog,
        access: AccessTokens,
        dpop: DPoPVerifier,
        failures: AuthFailureLog | None = None,
    ) -> None:
        """``failures``: where ``auth.failed`` goes, aggregated per source and reason
        (:mod:`broker.services.auth_failures`); default: one written per minute and reason."""
        self.verifier = verifier
        self.store = store
        self.audit = audit
        self.access = access
        self.dpop = dpop
        self.failures = failures if failures is not None else AuthFailureLog(audit)

    def authenticate(self, token: str | None, *, source: str = "", address: str = "") -> Agent:
        """The simple mode only (a workload JWT as bearer)."""
        return self.authenticate_http(
            f"Bearer {token}" if token else None, None, method="", url="", source=source, address=address
        ).agent

    def authenticate_http(
        self,
        authorization: str | None,
        dpop_proof: str | None,
        *,
        method: str,
        url: str,
        source: str = "",
        address: str = "",
    ) -> Principal:
        try:
            if not authorization:
                raise Unauthenticated(
                    "missing bearer token: send Authorization: Bearer <identity JWT> "
                    "(or DPoP <access token> with a DPoP proof)"
                )
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if not token:
                raise Unauthenticated("authorization header must be: Bearer <token> or DPoP <token>")
            if scheme.lower() == "dpop":
                return self._dpop(token, dpop_proof, method, url)
            if scheme.lower() != "bearer":
                raise Unauthenticated("authorization header must be: Bearer <token> or DPoP <token>")
            if self.access.is_ours(token):
                claims = self.access.verify(token)
                if claims.jkt is not None:
                    raise Unauthenticated(
                        "this access token is DPoP-bound: send Authorization: DPoP <token> with a DPoP proof"
                    )
                return self._principal(claims)
            return Principal(self.agent_for(self.verifier.verify(token)))
        except Unauthenticated as exc:
            self.failures.record(reason=exc.message, address=address, path=source)
            raise

    def _dpop(self, token: str, proof: str | None, method: str, url: str) -> Principal:
        claims = self.access.verify(token)
        if claims.jkt is None:
            raise Unauthenticated("this access token is not DPoP-bound: send it as Bearer")
        thumbprint = self.dpop.verify(proof, method=method, url=url, access_token=token)
        if not constant_time_equals(thumbprint, claims.jkt):
            raise Unauthenticated("DPoP proof is signed by another key than the one the token is bound to")
        return self._principal(claims)

    def _principal(self, claims: AccessClaims) -> Principal:
        if claims.task_id is not None:
            # a sub-task's token dies with its task, on every replica (the state is in the store)
            with self.store.read() as conn:
                task = self.store.get_task(conn, claims.task_id)
            if task is None or task.state is not TaskState.ACTIVE:
                state = task.state.value if task is not None else "gone"
                raise Unauthenticated(f"the task this access token was issued for is {state}")
        return Principal(self._agent_named(claims.agent), claims.human, claims.scope, claims.task_id)

    def _agent_named(self, name: str) -> Agent:
        with self.store.read() as conn:
            agent = self.store.cached_agent(self.store.registry(conn), name)
        if agent is None:
            raise Unauthenticated("the access token's agent is no longer registered")
        return agent

    def agent_for(self, identity: Verified) -> Agent:
        with self.store.read() as conn:  # one statement when the registry is cached and unchanged
            registry = self.store.registry(conn)
            name = self.store.cached_identity_owner(registry, identity.issuer, identity.subject)
            agent = self.store.cached_agent(registry, name) if name else None
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
