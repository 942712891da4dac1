"""``POST /v1/token``: OAuth 2.0 Token Exchange (RFC 8693) of a workload identity for a broker
access token, optionally acting for a verified person and bound to a DPoP key (RFC 9449).

Errors are RFC 6749 §5.2 errors (``invalid_request``, ``invalid_grant``,
``unsupported_grant_type``, ``invalid_target``, ``invalid_scope``, ``invalid_dpop_proof``), each
audited. ``scope`` (optional) names the task profiles the token may open tasks under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from broker.audit import AuditLog
from broker.errors import BrokerError, NotFound, Unauthenticated
from broker.identity.access_tokens import AccessTokens
from broker.identity.dpop import DPoPVerifier
from broker.identity.verifier import VerifiedIdentity
from broker.models import Agent, Task, TaskState, VerifiedHuman

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
MAX_FIELD = 8192
MAX_CHAIN = 16  # delegation depth walked for the act chain


class OAuthError(BrokerError):
    """An RFC 6749 error: the token endpoint answers ``{"error": code, "error_description": ...}``."""

    status_code = 400

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.status_code = status


class IdentityVerifierPort(Protocol):
    def verify(self, token: str, *, spend_jti: bool = True) -> VerifiedIdentity: ...


class AgentResolver(Protocol):
    def agent_for(self, identity: VerifiedIdentity) -> Agent: ...


class TaskLookup(Protocol):
    def get(self, task_id: str) -> Task: ...


@dataclass(frozen=True, slots=True)
class TokenResponse:
    body: dict[str, Any]


class TokenExchangeService:
    def __init__(
        self,
        workloads: IdentityVerifierPort,
        agents: AgentResolver,
        humans: IdentityVerifierPort | None,
        human_claims: Mapping[str, tuple[str, ...]],
        tokens: AccessTokens,
        dpop: DPoPVerifier,
        audit: AuditLog,
        tasks: TaskLookup,
        *,
        require_dpop: bool,
    ) -> None:
        self.workloads = workloads
        self.agents = agents
        self.tasks = tasks
        self.humans = humans
        self.human_claims = human_claims
        self.tokens = tokens
        self.dpop = dpop
        self.audit = audit
        self.require_dpop = require_dpop

    def metadata(self, base_url: str) -> dict[str, Any]:
        """RFC 8414 authorization-server metadata."""
        return {
            "issuer": self.tokens.issuer,
            "token_endpoint": f"{base_url}/v1/token",
            "jwks_uri": f"{base_url}/.well-known/jwks.json",
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["none"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "subject_token_types_supported": [JWT_TYPE],
            "actor_token_types_supported": [ID_TOKEN_TYPE, JWT_TYPE],
        }

    def exchange(self, form: Mapping[str, str], *, dpop_proof: str | None, url: str, source: str) -> TokenResponse:
        try:
            return self._exchange(form, dpop_proof, url)
        except OAuthError as exc:
            self.audit.record(
                "token.refused", actor="unknown", outcome=exc.error, data={"reason": exc.message, "source": source}
            )
            raise

    def _exchange(self, form: Mapping[str, str], dpop_proof: str | None, url: str) -> TokenResponse:
        for name, value in form.items():
            if len(value) > MAX_FIELD:
                raise OAuthError("invalid_request", f"{name} is longer than {MAX_FIELD} characters")
        if form.get("grant_type") != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"grant_type must be {GRANT_TYPE}")
        subject = form.get("subject_token")
        if not subject:
            raise OAuthError("invalid_request", "subject_token is required")
        if form.get("subject_token_type") != JWT_TYPE:
            raise OAuthError("invalid_request", f"subject_token_type must be {JWT_TYPE}")
        requested = form.get("requested_token_type")
        if requested and requested != ACCESS_TOKEN_TYPE:
            raise OAuthError("invalid_request", f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
        for target in ("audience", "resource"):
            if form.get(target) and form[target] != self.tokens.issuer:
                raise OAuthError("invalid_target", f"{target} must be this broker ({self.tokens.issuer})")
        try:
            identity = self.workloads.verify(subject, spend_jti=False)
            agent = self.agents.agent_for(identity)
        except Unauthenticated as exc:
            raise OAuthError("invalid_grant", f"subject_token: {exc.message}") from None
        scope = None
        if form.get("scope"):
            scope = tuple(dict.fromkeys(form["scope"].split()))
            beyond = [p for p in scope if p not in agent.profiles]
            if beyond:
                raise OAuthError(
                    "invalid_scope",
                    f"scope names task profiles agent {agent.name!r} may not use: "
                    f"{', '.join(beyond)}; allowed: {', '.join(agent.profiles)}",
                )
        human = self._human(form)
        task_id: str | None = None
        delegated_by: tuple[str, ...] = ()
        if form.get("delegation"):
            if human is not None:
                raise OAuthError(
                    "invalid_request",
                    "a delegated token acts for the parent task's person; send no actor_token with delegation",
                )
            task_id = form["delegation"]
            human, delegated_by = self._delegation(task_id, agent)
        jkt = None
        if dpop_proof is not None:
            try:
                jkt = self.dpop.verify(dpop_proof, method="POST", url=url)
            except Unauthenticated as exc:
                raise OAuthError("invalid_dpop_proof", exc.message) from None
        elif self.require_dpop:
            raise OAuthError("invalid_dpop_proof", "a DPoP proof is required: send a DPoP header")
        token = self.tokens.mint(
            agent=agent.name,
            workload_issuer=identity.issuer,
            workload_subject=identity.subject,
            subject_expires_at=identity.expires_at,
            human=human,
            jkt=jkt,
            scope=scope,
            delegated_by=delegated_by,
            task_id=task_id,
        )
        self.audit.record(
            "token.exchanged",
            actor=agent.name,
            outcome="issued",
            data={
                "workload": {"iss": identity.issuer, "sub": identity.subject},
                "acting_for": human.principal if human else None,
                "dpop_bound": token.bound,
                "task_id": task_id,
                "delegated_by": list(delegated_by),
                "expires_in": token.expires_in,
            },
        )
        body = {
            "access_token": token.token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "DPoP" if token.bound else "Bearer",
            "expires_in": token.expires_in,
        }
        if scope is not None:
            body["scope"] = " ".join(scope)
        return TokenResponse(body)

    def _delegation(self, task_id: str, agent: Agent) -> tuple[VerifiedHuman | None, tuple[str, ...]]:
        """The sub-task delegated to ``agent``: its verified person and the agents up the tree."""
        try:
            task = self.tasks.get(task_id)
        except NotFound:
            raise OAuthError("invalid_grant", "delegation: no such task") from None
        if task.parent_task_id is None or task.agent != agent.name:
            raise OAuthError("invalid_grant", f"delegation: task {task_id} was not delegated to agent {agent.name!r}")
        if task.state is not TaskState.ACTIVE:
            raise OAuthError("invalid_grant", f"delegation: task {task_id} is {task.state.value}")
        chain: list[str] = []
        node = task
        while node.parent_task_id is not None and len(chain) < MAX_CHAIN:
            node = self.tasks.get(node.parent_task_id)
            chain.append(node.agent)
        return task.acting_for, tuple(chain)

    def _human(self, form: Mapping[str, str]) -> VerifiedHuman | None:
        actor = form.get("actor_token")
        if not actor:
            if form.get("actor_token_type"):
                raise OAuthError("invalid_request", "actor_token_type given without actor_token")
            return None
        if form.get("actor_token_type") not in (ID_TOKEN_TYPE, JWT_TYPE):
            raise OAuthError("invalid_request", f"actor_token_type must be {ID_TOKEN_TYPE} or {JWT_TYPE}")
        if self.humans is None:
            raise OAuthError("invalid_grant", "actor_token: no human issuer is configured on this broker")
        try:
            person = self.humans.verify(actor, spend_jti=False)
        except Unauthenticated as exc:
            raise OAuthError("invalid_grant", f"actor_token: {exc.message}") from None
        keep = self.human_claims.get(person.issuer, ())
        claims = {k: person.claims[k] for k in keep if k in person.claims and _plain(person.claims[k])}
        return VerifiedHuman(person.issuer, person.subject, claims)


def _plain(value: Any) -> bool:
    """Only strings and lists of strings become a person's attributes."""
    if isinstance(value, str):
        return len(value) <= 256
    return isinstance(value, list) and len(value) <= 64 and all(isinstance(v, str) and len(v) <= 256 for v in value)
