"""``nhi-broker mcp``: the broker's agent API as MCP tools (official ``mcp`` SDK, stdio and streamable HTTP).

The model behind an MCP host gets tools, never standing secrets: ``call_api`` goes through the
broker's gateway, which injects the credential and redacts the response. The server proves the
agent's identity once (a workload token file, re-read when it changes, or the dev issuer),
exchanges it for a DPoP-bound access token (RFC 8693 + RFC 9449) and keeps the key in memory.

Over streamable HTTP (``serve_http``) the server is an OAuth resource server (MCP authorization):
each client presents a bearer token the broker issued *for this server* (``aud`` = its resource
URL); the server verifies it, exchanges it (proving its own identity) for a DPoP-bound broker
token of that agent, and acts as that agent only. The client's token is never passed through.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AnyHttpUrl, BaseModel, Field

from broker.client import ACCESS_TOKEN_TYPE, JWT_TYPE, BrokerClient, BrokerClientError
from broker.identity import DevIssuer
from broker.identity.access_tokens import ALGORITHM, TOKEN_TYPE
from broker.logging import quiet_http_clients
from broker.secrets import Secret

MAX_BODY_CHARS = 100_000  # what one tool result may carry back to the model
APPROVAL_WAIT_SECONDS = 600  # how long call_api waits for a human when the user chose to wait
# streamable HTTP: what one client can make the server hold (the SDK's own defaults are 10,000
# sessions idle for 30 minutes); a session idle longer than a client token lives is closed
MAX_SESSIONS = 1000  # open MCP sessions, and cached per-token broker clients
SESSION_IDLE_SECONDS = 600.0
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # one JSON-RPC message (tool arguments included); larger: 413

INSTRUCTIONS = (
    "Tools of the nhi-broker credential broker. Open a task first (open_task), do the work with "
    "call_api (the broker calls the API for you and injects the credential: you never see it), and "
    "end the task (end_task). A call that needs a human's approval answers step_up with an "
    "approval_id: tell the user what you are about to do and why, then retry with that approval_id "
    "once approved. Every call is decided by consequence and recorded."
)


class TokenFile:
    """A workload identity token on disk (projected service-account token, JWT-SVID): re-read
    whenever the file changes, never cached past a change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._value = ""

    def __call__(self) -> str:
        with self._lock:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp != self._stamp:
                value = self.path.read_text().strip()
                if not value:
                    raise ToolError(f"identity token file {self.path} is empty")
                self._value, self._stamp = value, stamp
            return self._value


def identity_source(token_file: Path | None, data_dir: Path | None, agent: str | None) -> Callable[[], str]:
    if token_file is not None:
        return TokenFile(token_file)
    if data_dir is not None and agent:
        issuer = DevIssuer.load(data_dir)
        return lambda: issuer.mint(agent)
    raise ValueError("give --identity-token-file PATH, or --data-dir DIR with --agent NAME")


def _fail(exc: BrokerClientError) -> ToolError:
    return ToolError(f"broker refused ({exc.status} {exc.code}): {exc.message}")


async def _run(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """A broker call off the event loop (the client is synchronous), its errors as tool errors."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kw))
    except BrokerClientError as exc:
        raise _fail(exc) from exc


class WaitForApproval(BaseModel):
    """The elicitation form shown on a step-up (MCP elicitation, primitive fields only)."""

    wait: bool = Field(default=True, description="Wait here until a human approves or denies it")


def _answer(resp: Any) -> dict[str, Any]:
    text = resp.text
    return {
        "status": resp.status_code,
        "content_type": resp.headers.get("content-type"),
        "body": text[:MAX_BODY_CHARS],
        "truncated": len(text) > MAX_BODY_CHARS,
        "redactions": int(resp.headers.get("x-nhi-redactions", "0")),
        "task_escalated": resp.headers.get("x-nhi-task-escalated") == "true",
        "decision_id": resp.headers.get("x-nhi-decision-id"),
    }


async def _wait_for_approval(
    ctx: Context, client: BrokerClient, task_id: str, what: str, step_up: dict[str, Any]
) -> str | None:
    """With a client that supports elicitation, ask the user whether to wait for the approval and
    wait for a human's decision (long-poll). None: no elicitation, or the user chose not to wait."""
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        return None
    decision = step_up.get("decision") or {}
    answer = await ctx.elicit(
        f"Approval {step_up['approval_id']} is needed for {what} (risk tier {decision.get('tier', '?')}). "
        "A person approves it with `nhi-broker approvals approve` or the console. Wait for the decision?",
        WaitForApproval,
    )
    if answer.action != "accept" or not answer.data.wait:
        return None
    deadline = time.monotonic() + APPROVAL_WAIT_SECONDS
    state = "pending"
    while state == "pending" and time.monotonic() < deadline:
        status = await _run(client.approval_status, task_id, step_up["approval_id"], 30)
        state = str(status.get("state", "pending"))
    return state


def build_server(
    clients: BrokerClient | Callable[[], BrokerClient],
    *,
    auth: AuthSettings | None = None,
    token_verifier: TokenVerifier | None = None,
) -> MCPServer:
    """The MCP tools. ``clients``: the broker client of the one agent (stdio), or a function giving
    the client of the agent whose token authenticated the current HTTP request."""
    client_for: Callable[[], BrokerClient] = clients if callable(clients) else (lambda: clients)
    server: MCPServer = MCPServer("nhi-broker", instructions=INSTRUCTIONS, auth=auth, token_verifier=token_verifier)

    @server.tool(
        description=(
            "Open a task: one unit of work under a task profile, with its purpose. Consequence: none by "
            "itself; every later call is decided against this task and revoked with it. Returns task_id."
        )
    )
    async def open_task(profile: str, purpose: str) -> dict[str, Any]:
        return dict(await _run(client_for().open_task, profile, purpose))

    @server.tool(
        description=(
            "Call an HTTP API the platform registered (an http_api resource) through the broker: the broker "
            "maps METHOD + path to an action, decides it by consequence (observe/read: usually immediate; "
            "write, financial, export, privilege: may need a human's approval, then the answer is step_up with "
            "an approval_id, or, if your client supports it, a prompt to wait for the approval), injects the "
            "credential and returns the response with secrets redacted. You never hold the credential. "
            "Consequence: that of the mapped action (a POST to a payment path moves money)."
        )
    )
    async def call_api(
        task_id: str,
        resource: str,
        method: str,
        path: str,
        ctx: Context,
        body: str | dict[str, Any] | list[Any] | None = None,
        content_type: str = "application/json",
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        client = client_for()
        raw = body if isinstance(body, str) or body is None else json.dumps(body)  # JSON bodies as objects too
        call = functools.partial(
            client.call_api,
            task_id,
            resource,
            method.upper(),
            path,
            body=raw.encode() if raw is not None else None,
            headers={"Content-Type": content_type} if body is not None else None,
        )
        resp = await _run(call, approval_id=approval_id)
        if resp.status_code != 202 or "x-nhi-decision-id" in resp.headers:
            return _answer(resp)
        data = resp.json()
        step_up = {
            "step_up": True,
            "approval_id": data.get("approval_id"),
            "decision": data.get("decision"),
            "next": "a human must approve this; wait with approval_status, then call call_api again "
            "with the same arguments and approval_id",
        }
        state = await _wait_for_approval(ctx, client, task_id, f"{method.upper()} {path} on {resource}", step_up)
        if state == "approved":  # the user waited and a human approved: make the call once
            return {
                **_answer(await _run(call, approval_id=step_up["approval_id"])),
                "approval_id": step_up["approval_id"],
            }
        return step_up if state is None else {**step_up, "state": state}

    @server.tool(
        description=(
            "Request a credential for a backend where the agent itself must hold one (a database login, a "
            "cloud session). Consequence: that of the action; the credential is short-lived and revoked with "
            "the task. Returned only when the resource allows an agent to hold it (an http_api resource never "
            "does: use call_api). Prefer call_api whenever it fits."
        )
    )
    async def request_credential(
        task_id: str, action: str, resource: str, approval_id: str | None = None
    ) -> dict[str, Any]:
        cred = await _run(client_for().request_credential, task_id, action, resource, approval_id)
        if not cred.issued:
            return {"step_up": True, "approval_id": cred.approval_id, "decision": cred.decision}
        return {"decision": cred.decision, **cred.fields, **{name: cred.secret(name) for name in cred.secrets}}

    @server.tool(
        description=(
            "Report a step of your work to the broker's chain (kind: prompt, output, tool_call, tool_result); "
            "its text is scanned for leaked secrets and never stored. Consequence: observe; a broker-issued "
            "secret in the text escalates (ends) the task."
        )
    )
    async def report_event(
        task_id: str, kind: str, text: str | None = None, action: str | None = None, resource: str | None = None
    ) -> dict[str, Any]:
        return dict(await _run(client_for().report_event, task_id, kind, text, action, resource))

    @server.tool(
        description=(
            "Scan text for secrets before you show or send it; returns findings and a redacted copy. "
            "Consequence: observe; a broker-issued secret found escalates its task."
        )
    )
    async def scan_text(text: str) -> dict[str, Any]:
        return dict(await _run(client_for().scan, text))

    @server.tool(
        description=(
            "The state of a step-up approval (pending, approved, denied, expired, cancelled, collected), "
            "waiting up to wait_seconds (at most 30) for a human's decision. Poll this, not call_api: it is "
            "not a chain step. Consequence: observe."
        )
    )
    async def approval_status(task_id: str, approval_id: str, wait_seconds: int = 0) -> dict[str, Any]:
        return dict(await _run(client_for().approval_status, task_id, approval_id, max(0, min(wait_seconds, 30))))

    @server.tool(
        description=(
            "End the task: every credential it holds is revoked at its backend. Consequence: reversible "
            "for you (open another task), final for the credentials."
        )
    )
    async def end_task(task_id: str) -> dict[str, Any]:
        return dict(await _run(client_for().end_task, task_id))

    return server


def serve_stdio(url: str, identity: Callable[[], str]) -> None:
    with BrokerClient(url, identity, exchange=True) as client:
        server = build_server(client)
        quiet_http_clients()  # after the SDK configured logging: no request URLs on stderr
        server.run("stdio")


class BrokerTokenVerifier:
    """The MCP server as an OAuth resource server: accepts only the broker's access tokens whose
    audience is this server's resource URL (RFC 8707/9068), signature checked against the broker's
    JWKS (ES256 pinned, ``typ`` at+jwt), ``iss``, ``exp``. A broker-audience token, a token for
    another MCP server or a sender-constrained (DPoP) token is refused: 401 with the metadata URL."""

    REFRESH_AFTER = 30.0  # an unknown kid re-fetches the JWKS at most this often

    def __init__(self, http: httpx.Client, *, issuer: str, resource: str) -> None:
        self._http = http
        self.issuer = issuer
        self.resource = resource
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _key(self, kid: str) -> Any:
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched > self.REFRESH_AFTER:
                jwks = self._http.get("/.well-known/jwks.json").raise_for_status().json()
                self._keys = {
                    str(k["kid"]): jwt.PyJWK(k, algorithm=ALGORITHM).key
                    for k in jwks.get("keys", [])
                    if k.get("kid") and k.get("alg") == ALGORITHM
                }
                self._fetched = time.monotonic()
            return self._keys.get(kid)

    def check(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE or not isinstance(header.get("kid"), str):
            return None
        try:
            key = self._key(header["kid"])
        except (httpx.HTTPError, ValueError, jwt.PyJWTError):
            return None  # the broker's keys are unreachable: refuse (fail closed)
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                audience=self.resource,
                issuer=self.issuer,
                options={"require": ["iss", "aud", "sub", "exp", "iat", "jti", "agent"]},
            )
        except jwt.PyJWTError:
            return None
        if "cnf" in claims or not isinstance(claims.get("agent"), str):
            return None  # MCP clients send bearer tokens; a DPoP-bound token belongs elsewhere
        return AccessToken(
            token=token,
            client_id=str(claims["agent"]),
            scopes=[],
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=str(claims["sub"]),
            claims={"iss": claims["iss"], "agent": claims["agent"], "jti": claims["jti"]},
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        return await anyio.to_thread.run_sync(self.check, token)


class AgentSessions:
    """One broker client per presented MCP token (so per agent): the MCP server exchanges that token
    (``subject_token``, RFC 8693) proving its own identity (``actor_token``) for a broker token bound
    to its own DPoP key, and never forwards the client's token. Bounded; the oldest is dropped."""

    def __init__(self, http: httpx.Client, server_identity: Callable[[], str], *, max_sessions: int = 1024) -> None:
        self._http = http
        self._identity = server_identity
        self._max = max_sessions
        self._clients: OrderedDict[str, tuple[BrokerClient, int]] = OrderedDict()
        self._lock = threading.Lock()

    def current(self) -> BrokerClient:
        token = get_access_token()
        if token is None:  # the transport's auth refused it already; never act as nobody
            raise ToolError("this request carries no verified access token")
        key = hashlib.sha256(token.token.encode()).hexdigest()
        now = int(time.time())
        with self._lock:
            for stale in [k for k, (_, exp) in self._clients.items() if exp <= now]:
                del self._clients[stale]
            found = self._clients.get(key)
            if found is None:
                subject = Secret(token.token)
                client = BrokerClient(
                    str(self._http.base_url),
                    subject.reveal,
                    http=self._http,
                    exchange=True,
                    actor_token_source=self._identity,
                    subject_token_type=ACCESS_TOKEN_TYPE,
                    actor_token_type=JWT_TYPE,
                )
                found = (client, token.expires_at or now + 60)
                self._clients[key] = found
                while len(self._clients) > self._max:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(key)
            return found[0]


def http_app(
    url: str,
    identity: Callable[[], str],
    *,
    resource_url: str,
    http: httpx.Client | None = None,
    max_sessions: int = MAX_SESSIONS,
) -> Any:
    """The streamable HTTP app (Starlette): the tools at ``resource_url``'s path, protected-resource
    metadata (RFC 9728) at ``/.well-known/oauth-protected-resource/...`` naming the broker. Memory
    is bounded: at most ``max_sessions`` MCP sessions (more: refused until one ends or idles out)
    and as many cached agent clients, request bodies at most ``MAX_REQUEST_BYTES``."""
    http = http or httpx.Client(base_url=url, timeout=45.0)
    meta = http.get("/.well-known/oauth-authorization-server").raise_for_status().json()
    verifier = BrokerTokenVerifier(http, issuer=str(meta["issuer"]), resource=resource_url)
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(url),
        resource_server_url=AnyHttpUrl(resource_url),
        validate_token_resource=True,
    )
    sessions = AgentSessions(http, identity, max_sessions=max_sessions)
    server = build_server(sessions.current, auth=auth, token_verifier=verifier)
    path = urlsplit(resource_url).path or "/mcp"
    host = urlsplit(resource_url).hostname or "127.0.0.1"
    return server.streamable_http_app(
        streamable_http_path=path,
        host=host,
        max_sessions=max_sessions,
        session_idle_timeout=SESSION_IDLE_SECONDS,
        max_request_body_size=MAX_REQUEST_BYTES,
    )


def serve_http(
    url: str,
    identity: Callable[[], str],
    *,
    host: str,
    port: int,
    resource_url: str | None,
    max_sessions: int = MAX_SESSIONS,
) -> None:
    import uvicorn  # deferred: only the HTTP transport needs the server

    resource = (resource_url or f"http://{host}:{port}/mcp").rstrip("/")
    with httpx.Client(base_url=url, timeout=45.0) as http:
        app = http_app(url, identity, resource_url=resource, http=http, max_sessions=max_sessions)
        quiet_http_clients()
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


__all__ = [
    "AgentSessions",
    "BrokerTokenVerifier",
    "TokenFile",
    "build_server",
    "http_app",
    "identity_source",
    "serve_http",
    "serve_stdio",
]
