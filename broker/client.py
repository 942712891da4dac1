"""A small typed Python client for the broker (agent and admin APIs).

    with BrokerClient(url, token_source=lambda: mint()) as broker:
        with broker.task("demo", purpose="nightly report") as task:
            cred = task.credential("db.read", "demo-data")
            use(cred.secret("token"))
        # the task is ended (every credential revoked) when the block exits

Two ways to authenticate (docs/identity.md):

- ``exchange=True`` (recommended): the client exchanges the workload identity from
  ``token_source`` once for a short-lived broker access token bound to a key it holds in memory
  (RFC 8693 + DPoP, RFC 9449), signs a fresh DPoP proof per request and exchanges again shortly
  before the token expires. The workload token may be reused (SPIRE, Kubernetes, CI tokens).
- the simple mode (default): a fresh, single-use workload token per request from ``token_source``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from broker.identity.dpop import make_proof
from broker.secrets import Secret

GATEWAY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a task id or a resource name: one plain segment
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]{0,1024}$")  # no CR, LF or other control characters
MAX_GATEWAY_PATH = 2048

SECRET_FIELDS = frozenset({"token", "password", "secret_access_key", "session_token", "wrapping_token"})


class BrokerClientError(Exception):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body or {}


class Unauthenticated(BrokerClientError): ...


class NotFound(BrokerClientError): ...


class InvalidRequest(BrokerClientError): ...


class TaskNotActive(BrokerClientError): ...


class BackendUnavailable(BrokerClientError): ...


class CredentialDenied(BrokerClientError):
    @property
    def decision(self) -> dict[str, Any]:
        return dict(self.body.get("decision") or {})


_BY_STATUS: dict[int, type[BrokerClientError]] = {
    401: Unauthenticated,
    403: CredentialDenied,
    404: NotFound,
    409: TaskNotActive,
    422: InvalidRequest,
    502: BackendUnavailable,
    503: BackendUnavailable,
}


@dataclass(frozen=True)
class Credential:
    decision: dict[str, Any]
    fields: dict[str, Any]  # non-secret fields
    secrets: dict[str, Secret] = field(repr=False)
    approval_id: str | None = None

    def secret(self, name: str) -> str:
        return self.secrets[name].reveal()

    @property
    def issued(self) -> bool:
        return bool(self.fields)


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = {}
    err = body.get("error") or {}
    cls = _BY_STATUS.get(resp.status_code, BrokerClientError)
    raise cls(resp.status_code, str(err.get("code", "error")), str(err.get("message", resp.text[:200])), body)


GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class DPoPSession:
    """An exchanged, DPoP-bound access token and the in-memory key it is bound to."""

    def __init__(
        self,
        http: httpx.Client,
        identity_source: Callable[[], str],
        *,
        actor_token_source: Callable[[], str] | None = None,
        refresh_margin_seconds: float = 30.0,
        subject_token_type: str = JWT_TYPE,
        actor_token_type: str = ID_TOKEN_TYPE,
    ) -> None:
        self._http = http
        self._identity = identity_source
        self._actor = actor_token_source
        self._types = (subject_token_type, actor_token_type)
        self._margin = refresh_margin_seconds
        self._key = ec.generate_private_key(ec.SECP256R1())  # never leaves this process
        self._jwk = jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self._token: Secret | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def _url(self, path: str) -> str:
        return str(self._http.base_url.join(path))

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        return make_proof(self._key, self._jwk, method=method, url=url, access_token=access_token)

    def access_token(self) -> str:
        with self._lock:
            if self._token is None or time.time() > self._expires - self._margin:
                self._exchange()
            assert self._token is not None
            return self._token.reveal()

    def _exchange(self) -> None:
        form = {"grant_type": GRANT_TYPE, "subject_token": self._identity(), "subject_token_type": self._types[0]}
        if self._actor is not None:
            form |= {"actor_token": self._actor(), "actor_token_type": self._types[1]}
        url = self._url("/v1/token")
        resp = self._http.post("/v1/token", data=form, headers={"DPoP": self.proof("POST", url)})
        if resp.status_code != 200:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            raise Unauthenticated(
                resp.status_code,
                str(body.get("error", "invalid_grant")),
                str(body.get("error_description", resp.text[:200])),
                body,
            )
        body = resp.json()
        self._token = Secret(body["access_token"])
        self._expires = time.time() + float(body["expires_in"])

    def headers(self, method: str, path: str) -> dict[str, str]:
        token = self.access_token()
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof(method, self._url(path), token)}


class BrokerClient:
    def __init__(
        self,
        base_url: str,
        token_source: Callable[[], str],
        *,
        timeout: float = 15.0,
        http: httpx.Client | None = None,
        exchange: bool = False,
        actor_token_source: Callable[[], str] | None = None,
        subject_token_type: str = JWT_TYPE,
        actor_token_type: str = ID_TOKEN_TYPE,
    ) -> None:
        self._token = token_source
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._dpop = (
            DPoPSession(
                self._http,
                token_source,
                actor_token_source=actor_token_source,
                subject_token_type=subject_token_type,
                actor_token_type=actor_token_type,
            )
            if exchange
            else None
        )

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def _call(
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        headers = (
            self._dpop.headers(method, path) if self._dpop is not None else {"Authorization": f"Bearer {self._token()}"}
        )
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        resp = self._http.request(method, path, json=json, params=params, headers=headers, **extra)
        _raise_for(resp)
        return resp

    def open_task(self, profile: str, purpose: str, on_behalf_of: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"profile": profile, "purpose": purpose}
        if on_behalf_of:
            body["on_behalf_of"] = on_behalf_of
        return dict(self._call("POST", "/v1/tasks", body).json())

    def request_credential(
        self, task_id: str, action: str, resource: str, approval_id: str | None = None
    ) -> Credential:
        body: dict[str, Any] = {"action": action, "resource": resource}
        if approval_id:
            body["approval_id"] = approval_id
        data = self._call("POST", f"/v1/tasks/{_seg('task_id', task_id)}/credentials", body).json()
        cred = data.get("credential") or {}
        return Credential(
            decision=data["decision"],
            fields={k: v for k, v in cred.items() if k not in SECRET_FIELDS},
            secrets={k: Secret(v) for k, v in cred.items() if k in SECRET_FIELDS and v},
            approval_id=data.get("approval_id"),
        )

    def approval_status(self, task_id: str, approval_id: str, wait: int = 0) -> dict[str, Any]:
        """The state of a step-up approval of the task (``pending``, ``approved``, ``denied``,
        ``expired``, ``cancelled``, ``collected``); with ``wait`` (at most 30 s) the broker answers
        as soon as it is decided. Not a chain step: poll this, not the credential request."""
        return dict(
            self._call(
                "GET",
                f"/v1/tasks/{_seg('task_id', task_id)}/approvals/{_seg('approval_id', approval_id)}",
                params={"wait": int(wait)} if wait else None,
                timeout=wait + 15.0,
            ).json()
        )

    def report_event(
        self, task_id: str, kind: str, text: str | None = None, action: str | None = None, resource: str | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"kind": kind, "text": text, "action": action, "resource": resource}.items() if v}
        return dict(self._call("POST", f"/v1/tasks/{_seg('task_id', task_id)}/events", body).json())

    def report_unwrap_failed(self, task_id: str, grant_id: str) -> dict[str, Any]:
        """Unwrapping a wrapped secret failed: the broker judges tampering (and escalates)."""
        return dict(
            self._call(
                "POST", f"/v1/tasks/{_seg('task_id', task_id)}/credentials/{_seg('grant_id', grant_id)}/unwrap-failed"
            ).json()
        )

    def end_task(self, task_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/tasks/{_seg('task_id', task_id)}").json())

    def scan(self, text: str) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/scan", {"text": text}).json())

    def call_api(
        self,
        task_id: str,
        resource: str,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        approval_id: str | None = None,
    ) -> httpx.Response:
        """One call through the broker's gateway (the broker injects the credential). Returns the
        upstream's (redacted) response, or the 202 of a step-up; raises for the broker's own errors
        (no rule, denied, path refused, upstream unreachable...).

        The arguments may come from a model (``nhi-broker mcp``): they are checked here so the
        request can only ever be a gateway call. httpx resolves dot segments before sending, so
        ``path="../../credentials"`` would otherwise reach another broker endpoint as this agent."""
        route = gateway_route(task_id, resource, method, path, headers)
        if approval_id:
            _seg("approval_id", approval_id)
        auth = (
            self._dpop.headers(method, route)
            if self._dpop is not None
            else {"Authorization": f"Bearer {self._token()}"}
        )
        extra = {"X-NHI-Approval-Id": approval_id} if approval_id else {}
        resp = self._http.request(
            method, route, params=query, content=body, headers={**(headers or {}), **extra, **auth}
        )
        if "x-nhi-decision-id" not in resp.headers and resp.status_code != 202:
            _raise_for(resp)  # not the upstream's answer: the broker's own error
        return resp

    @contextmanager
    def task(self, profile: str, purpose: str, on_behalf_of: str | None = None) -> Iterator[TaskSession]:
        info = self.open_task(profile, purpose, on_behalf_of)
        session = TaskSession(self, info)
        try:
            yield session
        finally:
            # already ended, quarantined or expired: nothing left to revoke from here
            with contextlib.suppress(TaskNotActive):
                self.end_task(session.task_id)


@dataclass
class TaskSession:
    client: BrokerClient
    info: dict[str, Any]

    @property
    def task_id(self) -> str:
        return str(self.info["task_id"])

    def credential(self, action: str, resource: str, approval_id: str | None = None) -> Credential:
        return self.client.request_credential(self.task_id, action, resource, approval_id)

    def event(self, kind: str, text: str | None = None, **kw: str) -> dict[str, Any]:
        return self.client.report_event(self.task_id, kind, text, **kw)


def _refuse(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(422, "invalid_input", f"{field}: {message}")


def _seg(field: str, value: str) -> str:
    """An id or name that goes into a route: one plain path segment (from a model, it could be
    ``x/../../elsewhere``, which httpx would resolve into another endpoint)."""
    if not isinstance(value, str) or not _NAME.match(value) or value in (".", ".."):
        raise _refuse(field, "must be one name of letters, digits, '_', '.' or '-' (at most 128)")
    return value


def gateway_route(task_id: str, resource: str, method: str, path: str, headers: dict[str, str] | None = None) -> str:
    """The gateway route of one call, or ``InvalidRequest`` naming the argument that could make it
    anything else (another broker endpoint, another task, a smuggled header)."""
    _seg("task_id", task_id)
    _seg("resource", resource)
    if not isinstance(method, str) or method.upper() not in GATEWAY_METHODS:
        raise _refuse("method", f"must be one of {', '.join(GATEWAY_METHODS)}")
    if not isinstance(path, str) or len(path) > MAX_GATEWAY_PATH:
        raise _refuse("path", f"must be at most {MAX_GATEWAY_PATH} characters")
    bare = path.split("?", 1)[0]
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path) or "#" in path or "\\" in bare:
        raise _refuse("path", "control characters, '#' and backslashes are refused")
    if any(seg in (".", "..") for seg in bare.split("/")):
        raise _refuse("path", 'dot segments ("." and "..") are refused')
    for name, value in (headers or {}).items():
        if not _HEADER_VALUE.match(value):
            raise _refuse(f"header {name}", "must be printable ASCII without CR or LF, at most 1024 characters")
    return f"/v1/tasks/{task_id}/gateway/{resource}/{path.lstrip('/')}"


def mcp_access_token(
    mcp_url: str, identity_token: str, *, authorization_server: str | None = None, timeout: float = 15.0
) -> Secret:
    """A bearer token for an MCP server over streamable HTTP, found the way the MCP authorization
    spec describes: the server's ``401`` names its protected-resource metadata (RFC 9728), which
    names the broker as authorization server (RFC 8414 metadata: its token endpoint); the workload
    identity is exchanged there for a token whose audience is that MCP server (RFC 8707 ``resource``).

    What the MCP server says is checked before the identity goes anywhere: the metadata's
    ``resource`` must be ``mcp_url`` itself (RFC 9728 §3.3; otherwise a server could obtain a token
    for *another* MCP server through this client), the authorization server's token endpoint must be
    on the origin its metadata was fetched from, and, when
    ``authorization_server`` (the broker the caller trusts) is given, it must be that broker: an MCP
    server must not be able to point the client at a token endpoint that collects identities."""

    def refuse(code: str, message: str) -> Unauthenticated:
        return Unauthenticated(401, code, message)

    def same(a: str, b: str) -> bool:
        return a.rstrip("/") == b.rstrip("/")

    with httpx.Client(timeout=timeout) as http:
        challenge = http.post(mcp_url, json={})
        header = challenge.headers.get("www-authenticate", "")
        match = re.search(r'resource_metadata="([^"]+)"', header)
        if challenge.status_code != 401 or match is None:
            raise refuse("no_challenge", f"{mcp_url} sent no resource_metadata")
        resource = http.get(match.group(1)).raise_for_status().json()
        if not same(str(resource.get("resource", "")), mcp_url):
            raise refuse("resource_mismatch", f"{mcp_url} described itself as another resource; no token asked")
        servers = [str(s) for s in resource.get("authorization_servers") or []]
        if authorization_server is not None:
            servers = [s for s in servers if same(s, authorization_server)]
        if not servers:
            raise refuse(
                "untrusted_authorization_server",
                f"{mcp_url} names no authorization server"
                + (f" that is {authorization_server}" if authorization_server is not None else ""),
            )
        server = servers[0].rstrip("/")
        meta = http.get(f"{server}/.well-known/oauth-authorization-server").raise_for_status().json()
        endpoint = httpx.URL(str(meta.get("token_endpoint", "")))
        if (endpoint.scheme, endpoint.netloc) != (httpx.URL(server).scheme, httpx.URL(server).netloc):
            raise refuse("token_endpoint_mismatch", f"the metadata of {server} names a token endpoint elsewhere")
        form = {
            "grant_type": GRANT_TYPE,
            "subject_token": identity_token,
            "subject_token_type": JWT_TYPE,
            "resource": mcp_url.rstrip("/"),
        }
        resp = http.post(str(endpoint), data=form)
        if resp.status_code != 200:
            body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
            raise Unauthenticated(
                resp.status_code, str(body.get("error", "invalid_grant")), str(body.get("error_description", ""))
            )
        return Secret(str(resp.json()["access_token"]))


class AdminClient:
    def __init__(self, base_url: str, admin_token: str | Secret, *, timeout: float = 15.0) -> None:
        token = admin_token.reveal() if isinstance(admin_token, Secret) else admin_token
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, json: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        resp = self._http.request(method, path, json=json, params=params)
        _raise_for(resp)
        return resp.json() if resp.content else None

    def put(self, entity: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("PUT", f"/v1/admin/{entity}/{name}", body))

    def get(self, entity: str, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/admin/{entity}/{name}"))

    def delete(self, entity: str, name: str) -> None:
        self.request("DELETE", f"/v1/admin/{entity}/{name}")

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/admin/tasks/{task_id}"))

    def revoke_task(self, task_id: str, reason: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/admin/tasks/{task_id}/revoke", {"reason": reason}))

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/audit", params=params)["items"])

    def decision(self, decision_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/decisions/{decision_id}"))
