"""``POST /v1/token``: OAuth 2.0 Token Exchange (RFC 8693) of a workload identity for a broker
access token, optionally acting for a verified person and bound to a DPoP key (RFC 9449).

Errors are RFC 6749 §5.2 errors (``invalid_request``, ``invalid_grant``,
``unsupported_grant_type``, ``invalid_target``, ``invalid_scope``, ``invalid_dpop_proof``), each
audited. ``scope`` (optional) names the task profiles the token may open tasks under.

MCP over streamable HTTP (docs/mcp.md) adds two exchanges, both audience-bound (RFC 8707):

- ``resource`` (or ``audience``) = a registered MCP server's URL (``token_exchange.mcp_resources``):
  the workload identity is exchanged for a bearer token whose ``aud`` is that MCP server. The
  broker's own API refuses it (wrong audience); only that MCP server accepts it.
- ``subject_token_type`` = ``access_token`` with such a token as subject: the MCP server, proving
  its own workload identity as ``actor_token`` (it must be the resource's ``server_agent``) and
  binding the result to its DPoP key, gets a broker token for the *subject's* agent. The MCP
  server never passes the client's token through, and a stolen MCP token is useless elsewhere.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from broker.audit import AuditLog
from broker.errors import BrokerError, NotFound, Unauthenticated
from broker.identity.access_tokens import AccessToken, AccessTokens
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
        mcp_resources: Mapping[str, str] | None = None,
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
        self.mcp_resources = dict(mcp_resources or {})  # resource URL -> the agent the MCP server runs as

    def metadata(self, base_url: str) -> dict[str, Any]:
        """RFC 8414 authorization-server metadata."""
        return {
            "issuer": self.tokens.issuer,
            "token_endpoint": f"{base_url}/v1/token",
            "jwks_uri": f"{base_url}/.well-known/jwks.json",
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["none"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "subject_token_types_supported": [JWT_TYPE, ACCESS_TOKEN_TYPE],
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
        requested = form.get("requested_token_type")
        if requested and requested != ACCESS_TOKEN_TYPE:
            raise OAuthError("invalid_request", f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
        audience = self._target(form)
        if form.get("subject_token_type") == ACCESS_TOKEN_TYPE:
            if audience is not None:
                raise OAuthError("invalid_target", "an MCP server exchanges a token for this broker only")
            return self._from_mcp(subject, form, dpop_proof, url)
        if form.get("subject_token_type") != JWT_TYPE:
            raise OAuthError("invalid_request", f"subject_token_type must be {JWT_TYPE} or {ACCESS_TOKEN_TYPE}")
        if audience is not None and (form.get("delegation") or dpop_proof is not None):
            raise OAuthError(
                "invalid_request",
                "a token for an MCP server is a bearer token of the agent itself: send no DPoP proof and no delegation",
            )
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
            jkt = self._proof(dpop_proof, url)
        elif self.require_dpop and audience is None:  # MCP clients send bearer tokens (MCP authorization)
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
            audience=audience,
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
                "audience": audience or self.tokens.issuer,
            },
        )
        return self._response(token, scope)

    def _response(self, token: AccessToken, scope: tuple[str, ...] | None) -> TokenResponse:
        body = {
            "access_token": token.token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "DPoP" if token.bound else "Bearer",
            "expires_in": token.expires_in,
        }
        if scope is not None:
            body["scope"] = " ".join(scope)
        return TokenResponse(body)

    def _target(self, form: Mapping[str, str]) -> str | None:
        """The audience asked for: None for this broker, else a registered MCP server's URL."""
        wanted = {form[t].rstrip("/") for t in ("audience", "resource") if form.get(t)}
        if len(wanted) > 1:
            raise OAuthError("invalid_target", "audience and resource name different targets")
        if not wanted or wanted == {self.tokens.issuer.rstrip("/")}:
            return None
        (target,) = wanted
        if target not in self.mcp_resources:
            raise OAuthError(
                "invalid_target", f"resource must be this broker ({self.tokens.issuer}) or a registered MCP server"
            )
        return target

    def _proof(self, dpop_proof: str, url: str) -> str:
        try:
            return self.dpop.verify(dpop_proof, method="POST", url=url)
        except Unauthenticated as exc:
            raise OAuthError("invalid_dpop_proof", exc.message) from None

    def _from_mcp(self, subject: str, form: Mapping[str, str], dpop_proof: str | None, url: str) -> TokenResponse:
        """An MCP server exchanges the token a client presented to it (``aud`` = that server) for a
        broker token of the same agent, bound to the MCP server's own DPoP key."""
        resource = self._subject_audience(subject)
        try:
            claims = self.tokens.verify(subject, audience=resource)
        except Unauthenticated as exc:
            raise OAuthError("invalid_grant", f"subject_token: {exc.message}") from None
        actor = form.get("actor_token")
        if not actor or form.get("actor_token_type") != JWT_TYPE:
            raise OAuthError(
                "invalid_request", f"actor_token (the MCP server's workload identity, {JWT_TYPE}) is required"
            )
        try:
            server = self.agents.agent_for(self.workloads.verify(actor, spend_jti=False))
        except Unauthenticated as exc:
            raise OAuthError("invalid_grant", f"actor_token: {exc.message}") from None
        if not hmac.compare_digest(server.name, self.mcp_resources[resource]):
            raise OAuthError("invalid_grant", f"actor_token: agent {server.name!r} is not the MCP server of {resource}")
        if dpop_proof is None:
            raise OAuthError("invalid_dpop_proof", "an MCP server's exchange must be DPoP-bound: send a DPoP header")
        jkt = self._proof(dpop_proof, url)
        if form.get("scope"):
            raise OAuthError("invalid_scope", "the scope of an MCP server's exchange is the subject token's")
        if form.get("delegation"):
            raise OAuthError("invalid_request", "an MCP server's exchange takes no delegation")
        token = self.tokens.mint(
            agent=claims.agent,
            workload_issuer=claims.workload.get("iss", ""),
            workload_subject=claims.workload.get("sub", ""),
            subject_expires_at=claims.expires_at,
            human=claims.human,
            jkt=jkt,
            scope=claims.scope,
        )
        self.audit.record(
            "token.exchanged",
            actor=claims.agent,
            outcome="issued",
            data={
                "workload": claims.workload,
                "acting_for": claims.human.principal if claims.human else None,
                "dpop_bound": token.bound,
                "task_id": None,
                "delegated_by": [],
                "expires_in": token.expires_in,
                "audience": self.tokens.issuer,
                "via_mcp": {"resource": resource, "server_agent": server.name},
            },
        )
        return self._response(token, claims.scope)

    def _subject_audience(self, subject: str) -> str:
        """Which registered MCP server the subject token claims to be for (verified afterwards)."""
        aud = self.tokens.claimed_audience(subject)
        if aud is None or aud.rstrip("/") not in self.mcp_resources:
            raise OAuthError("invalid_grant", "subject_token is not a token for a registered MCP server")
        return aud.rstrip("/")

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
