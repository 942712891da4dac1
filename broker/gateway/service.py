"""``ANY /v1/tasks/{task_id}/gateway/{resource}/{path}``: decide, inject, forward, redact.

1. The path is normalised first and refused when it could leave the resource's base URL: dot
   segments (plain or encoded), encoded slashes or backslashes, empty segments, a scheme.
2. The resource's request rules map method + path to a catalog action; no rule, no call (403).
3. The action is decided exactly like a credential request, through the credential flow (tier,
   mode, Cedar, chain detectors, step-up approvals: a step-up answers 202 with the approval id;
   the agent retries with ``X-NHI-Approval-Id``). The credential comes back to this module only.
4. The request goes to the upstream with the credential injected, a timeout, no redirect
   followed, and a response size limit.
5. The response body passes the live scanner: secrets are redacted, and a broker-issued secret
   in it (the injected credential included) is a leak — the task escalates.
6. The call is recorded as a chain event (``gateway_call``) and an audit event (``gateway.called``)
   with method, path template, status and byte counts; never the credential, never the bodies.
"""

from __future__ import annotations

import base64
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import httpx

from broker.approvals.flow import CredentialFlow
from broker.audit import AuditLog
from broker.backends.http_api import KIND, HttpApiSettings
from broker.backends.sigv4 import sigv4_headers
from broker.chain import store as chain_store
from broker.chain.model import StepKind
from broker.config import GatewaySettings
from broker.errors import BrokerError, Denied, InvalidInput, NotFound, UpstreamError, UpstreamUnavailable
from broker.logging import get_logger
from broker.models import Agent, Outcome
from broker.secrets import Fingerprinter, Secret
from broker.services.scanning import LiveScanner
from broker.store.repo import Store
from scanners.known import GrantMatch

log = get_logger("nhi-broker.gateway")

APPROVAL_HEADER = "x-nhi-approval-id"
# request headers an agent may pass through; everything else (Authorization, Cookie, DPoP...) stays here
FORWARDED_REQUEST_HEADERS = frozenset(
    {"accept", "accept-language", "content-type", "if-match", "if-none-match", "idempotency-key", "x-request-id"}
)
RETURNED_RESPONSE_HEADERS = frozenset({"content-type", "etag", "last-modified", "retry-after"})
REDACTED_CREDENTIAL = "[REDACTED:injected-credential]"
# %2f %5c %2e %00, and the same encoded twice (%252e...): an upstream or proxy that decodes again
# would see a slash or a dot segment the rules never saw
_BAD_ESCAPES = re.compile(r"%(25)?(2f|5c|2e|00)", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
MAX_PATH = 2048


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    method: str
    raw_path: str  # the path after ``/gateway/{resource}``, still percent-encoded, as the agent sent it
    query: str  # the raw query string
    headers: Mapping[str, str]
    body: bytes
    approval_id: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    approval_id: str | None = None
    decision: dict[str, Any] | None = None


def normalise_path(raw: str) -> tuple[str, str]:
    """(decoded path for the rules, raw path to forward); refuses anything that could escape the base."""
    path = raw if raw.startswith("/") else "/" + raw
    if len(path) > MAX_PATH:
        raise InvalidInput("path", f"must be at most {MAX_PATH} characters")
    if path.startswith("//") or _SCHEME.match(path.lstrip("/")) or "://" in path:
        raise InvalidInput("path", "must be a path under the resource's base URL, not an absolute URL")
    if _BAD_ESCAPES.search(path) or "\\" in path:
        raise InvalidInput("path", "encoded slashes, backslashes, dots or NUL (once or twice encoded) are refused")
    decoded = unquote(path)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        raise InvalidInput("path", "control characters are refused")
    segments = decoded.split("/")[1:]
    # "..;x" is ".." to servlet containers (path parameters are cut before the dot segments go)
    if any(s.split(";", 1)[0] in (".", "..") for s in segments):
        raise InvalidInput("path", 'dot segments ("." and "..") are refused')
    if any(s == "" for s in segments[:-1]):
        raise InvalidInput("path", "empty path segments (//) are refused")
    return decoded, path


def _decompressor(encoding: str, resource: str) -> Callable[[bytes, int], tuple[bytes, bytes]]:
    """``(data, at_most) -> (decoded, rest)`` for the response's Content-Encoding (identity, gzip,
    deflate: what the gateway accepts); any other encoding is refused, never passed on undecoded."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return lambda data, at_most: (data[:at_most], data[at_most:])
    if name not in ("gzip", "x-gzip", "deflate"):
        raise UpstreamError(f'upstream of resource "{resource}" answered with unsupported Content-Encoding "{name}"')
    d = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib header, detected

    def inflate(data: bytes, at_most: int) -> tuple[bytes, bytes]:
        try:
            out = d.decompress(data, max(at_most, 1))
        except zlib.error as exc:
            raise UpstreamError(f'upstream response of resource "{resource}" is not valid {name}') from exc
        return out, d.unconsumed_tail

    return inflate


class Gateway:
    def __init__(
        self,
        flow: CredentialFlow,
        store: Store,
        audit: AuditLog,
        scanning: LiveScanner,
        fingerprint: Fingerprinter,
        settings: GatewaySettings,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.flow = flow
        self.store = store
        self.audit = audit
        self.scanning = scanning
        self.fingerprint = fingerprint
        self.settings = settings
        self.http = httpx.Client(
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            timeout=httpx.Timeout(settings.timeout_seconds),
        )

    def close(self) -> None:
        self.http.close()

    def call(self, agent: Agent, task_id: str, resource_name: str, req: GatewayRequest) -> GatewayResponse:
        self.flow.tasks.task_for(agent, task_id)  # another agent's task is a 404 before anything is recorded
        with self.store.read() as conn:
            resource = self.store.get_resource(conn, resource_name)
        if resource is None or resource.kind != KIND:
            raise NotFound(f'"{resource_name}" is not an {KIND} resource')
        method = req.method.upper()
        if len(req.body) > self.settings.max_request_bytes:
            raise InvalidInput(
                "body", f"must be at most {self.settings.max_request_bytes} bytes (gateway.max_request_bytes)"
            )
        decoded, raw = normalise_path(req.raw_path)
        api = HttpApiSettings.of(resource.settings)
        rule = api.match(method, decoded)
        if rule is None:
            reason = f'no request rule of resource "{resource_name}" allows {method} {decoded}'
            with self.store.write() as conn:
                self.audit.append(
                    conn,
                    "gateway.refused",
                    actor=agent.name,
                    task_id=task_id,
                    outcome="denied",
                    data={"resource": resource_name, "method": method, "reason": "no rule"},
                )
            raise Denied(reason, details={"decision": {"outcome": "deny", "reasons": [reason]}})
        result = self.flow.request(agent, task_id, rule.action, resource_name, req.approval_id, injected=True)
        decision = result.decision.public()
        if result.decision.outcome is Outcome.DENY:
            raise Denied(
                "; ".join(result.decision.reasons[1:] or result.decision.reasons), details={"decision": decision}
            )
        if result.credential is None:  # step-up: the approval id goes back, nothing was called
            return GatewayResponse(status=202, body=b"", approval_id=result.approval_id, decision=decision)
        secrets = result.credential.secrets
        secret = secrets["credential"]
        grant_id = result.grant_id or ""
        record = {
            "method": method,
            "path_template": rule.pattern,
            "request_bytes": len(req.body),
            "grant_id": grant_id,
            "decision_id": result.decision.decision_id,
        }
        upstream = self._request(api, method, raw, req, secrets)
        try:
            status, content, headers = self._send(upstream, resource_name)
        except BrokerError as exc:  # refused redirect, oversized, unreachable: the failed call is a step too
            self._record(agent, task_id, resource_name, rule.action, {**record, "status": None, "error": exc.code})
            raise
        body, redactions, leaked = self._redact(content, secrets, agent, task_id, resource_name, grant_id)
        del secret, secrets, upstream
        self._record(
            agent,
            task_id,
            resource_name,
            rule.action,
            {**record, "status": status, "response_bytes": len(content), "redactions": redactions, "leak": leaked},
        )
        headers["X-NHI-Decision-Id"] = result.decision.decision_id
        headers["X-NHI-Redactions"] = str(redactions)
        if leaked:
            headers["X-NHI-Task-Escalated"] = "true"
        return GatewayResponse(status=status, body=body, headers=headers, decision=decision)

    def _record(self, agent: Agent, task_id: str, resource: str, action: str, detail: dict[str, Any]) -> None:
        """The call as a chain event and an audit event: no credential, no bodies, no query."""
        with self.store.write() as conn:
            chain_store.add_event(
                conn, task_id=task_id, kind=StepKind.GATEWAY_CALL, action=action, resource=resource, detail=detail
            )
            self.audit.append(
                conn,
                "gateway.called",
                actor=agent.name,
                task_id=task_id,
                outcome=str(detail.get("status") or detail.get("error")),
                data={"resource": resource, "action": action, **detail},
            )

    # -- the upstream call ---------------------------------------------------------------------
    def _request(
        self, api: HttpApiSettings, method: str, raw: str, req: GatewayRequest, secrets: Mapping[str, Secret]
    ) -> httpx.Request:
        base = httpx.URL(api.base_url)
        url = httpx.URL(api.base_url.rstrip("/") + raw)
        base_path = base.path.rstrip("/")
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) or not (
            url.path == base_path or url.path.startswith(base_path + "/")
        ):
            raise InvalidInput("path", "must stay under the resource's base URL")
        query = [
            (k, v)
            for k, v in parse_qsl(req.query, keep_blank_values=True)
            if not (api.auth == "query" and k == api.auth_name)
        ]
        headers = {k: v for k, v in req.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
        headers["Accept-Encoding"] = "gzip, deflate"  # what _send decodes within the size limit
        secret = secrets["credential"]
        value = secret.reveal()
        if api.auth == "bearer":
            headers["Authorization"] = f"Bearer {value}"
        elif api.auth == "header" and api.auth_name:
            headers = {k: v for k, v in headers.items() if k.lower() != api.auth_name.lower()}
            headers[api.auth_name] = value
        elif api.auth == "basic":
            pair = f"{api.username}:{value}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif api.auth == "query" and api.auth_name:
            query.append((api.auth_name, value))
        if query:
            url = url.copy_with(query=urlencode(query).encode())
        if api.auth == "sigv4" and api.region and api.service:  # signs the exact URL, headers and body sent
            headers = sigv4_headers(
                method,
                str(url),
                headers,
                req.body,
                access_key_id=secrets["access_key_id"],
                secret_access_key=secret,
                session_token=secrets.get("session_token"),
                region=api.region,
                service=api.service,
            )
        return self.http.build_request(method, url, headers=headers, content=req.body or None)

    def _send(self, request: httpx.Request, resource: str) -> tuple[int, bytes, dict[str, str]]:
        limit = self.settings.max_response_bytes
        # httpx's timeout is per operation; a slow-drip upstream must not hold the call past one total
        deadline = time.monotonic() + self.settings.timeout_seconds
        try:
            resp = self.http.send(request, stream=True)
            try:
                if resp.is_redirect:
                    target = resp.headers.get("location", "")
                    where = httpx.URL(target) if target else None
                    other = where is not None and where.host not in ("", request.url.host)
                    raise UpstreamError(
                        f'upstream of resource "{resource}" answered {resp.status_code} redirecting to '
                        + (f'another host ("{where.host if where else ""}")' if other else "another location")
                        + "; the gateway does not follow redirects"
                    )
                too_big = UpstreamError(
                    f'upstream response of resource "{resource}" exceeds '
                    f"gateway.max_response_bytes ({limit} bytes); cut, nothing returned"
                )
                # decoded here, never more than the limit at a time: httpx would inflate a whole
                # compressed chunk first (a 64 KiB gzip chunk can hold 64 MiB)
                inflate = _decompressor(resp.headers.get("content-encoding", ""), resource)
                chunks: list[bytes] = []
                size = 0
                for raw in resp.iter_raw():
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("total deadline", request=request)
                    while raw:
                        chunk, raw = inflate(raw, limit - size + 1)
                        size += len(chunk)
                        if size > limit:
                            raise too_big
                        chunks.append(chunk)
                headers = {k: v for k, v in resp.headers.items() if k.lower() in RETURNED_RESPONSE_HEADERS}
                return resp.status_code, b"".join(chunks), headers
            finally:
                resp.close()
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(
                f'upstream of resource "{resource}" did not answer within {self.settings.timeout_seconds}s'
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f'upstream of resource "{resource}" cannot be reached ({type(exc).__name__})'
            ) from exc

    # -- the response ----------------------------------------------------------------------------
    def _redact(
        self,
        content: bytes,
        secrets: Mapping[str, Secret],
        agent: Agent,
        task_id: str,
        resource: str,
        grant_id: str,
    ) -> tuple[bytes, int, bool]:
        """The body with every secret the scanner finds redacted (and the injected credential's
        values, even if no rule knows their shape). A broker-issued secret in it escalates the task."""
        if not content:
            return content, 0, False
        text = content.decode("utf-8", "surrogateescape")
        source = f"gateway:{task_id}:{resource}"
        outcome = self.scanning.scan_sync(text, source=source)
        findings = outcome.result.findings
        redacted = outcome.result.redacted_text if findings else text
        leaked = bool(outcome.leaks)
        # the key id of an AWS session is an identifier, not a secret (AWS echoes it in places)
        injected = [v for v in (sec.reveal() for name, sec in secrets.items() if name != "access_key_id") if v]
        present = [v for v in injected if v in redacted]
        for value in present:
            redacted = redacted.replace(value, REDACTED_CREDENTIAL)
        if present and not leaked:
            match = GrantMatch(grant_id, task_id, agent.name)
            self.scanning.on_leak(match, self.fingerprint(secrets["credential"]), source)
            leaked = True
        count = len(findings) + (len([v for v in injected if v in text]) if not findings else 0)
        if leaked:
            log.warning("gateway.leak_in_response", resource=resource, redactions=count)
        return redacted.encode("utf-8", "surrogateescape"), count, leaked
