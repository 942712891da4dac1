"""An upstream HTTP API the broker calls for the agent (resource kind ``http_api``).

The agent never holds this credential: the gateway (``broker/gateway``) asks the credential flow
for it, injects it into the one request it forwards, and drops it. Resource settings::

    {"http": {"base_url": "https://crm.internal/api",            # loopback or gateway.allowed_hosts
              "auth": "bearer" | "header" | "basic" | "query" | "sigv4",   # where the credential goes
              "auth_name": "X-Api-Key",                            # header / query parameter name
              "username": "svc",                                   # basic auth user name
              "source": "vault_kv" | "vault_token" | "aws_sts",    # where the credential comes from
              "mount": "secret", "path": "crm/api-key", "field": "api_key",   # source vault_kv
              "policies": ["crm-reader"],                           # source vault_token
              "role_arn": "arn:aws:iam::123456789012:role/reader",  # source aws_sts (auth sigv4)
              "region": "eu-west-1", "service": "s3",               #   the SigV4 scope
              "sts_endpoint_url": "...", "resources": ["arn:..."],  #   optional, as kind aws
              "rules": ["GET /v1/customers/* db.read", "POST /v1/charges payments.charge"]}}

A rule is ``METHOD PATTERN ACTION``: ``METHOD`` one HTTP method or ``*``; ``PATTERN`` an absolute
path where ``*`` matches one segment and a final ``**`` any rest; ``ACTION`` a catalog action.
The first rule that matches decides the action; a request no rule matches is denied.

``vault_kv``: the broker reads the field of the KV secret (a static API key). Nothing to revoke;
its fingerprint is known to the scanner, so it is recognised wherever it leaks.
``vault_token``: a child token under the task's parent token (as kind ``vault_token``), for
upstreams that accept OpenBao tokens; it dies with the task.
``aws_sts`` (with ``auth: sigv4``): an STS session of the role, exactly as kind ``aws`` issues it
(session policy for the action, task tags, revocation by the role's policy), which the gateway uses
to sign the one request with AWS Signature Version 4 (botocore's signer, ``broker/backends/sigv4.py``);
the upstream is an AWS API (or one that speaks SigV4). Needs the broker's ``aws`` backend enabled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac

from broker.backends.aws_sts import AwsStsBackend
from broker.backends.names import refuse_unknown, section, vault_path
from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.openbao_token import OpenBaoTokenBackend
from broker.backends.port import IssuedCredential, IssueRequest
from broker.errors import InvalidInput, UpstreamError
from broker.models import Action, Resource
from broker.netpolicy import check_outbound_url
from broker.secrets import Secret

KIND = "http_api"
AUTH_MODES = ("bearer", "header", "basic", "query", "sigv4")
SOURCES = ("vault_kv", "vault_token", "aws_sts")
AWS_FIELDS = {"role_arn": "role_arn", "region": "region", "sts_endpoint_url": "endpoint_url", "resources": "resources"}
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*")
MAX_RULES = 100
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.~@:+=,;!$'()-]+$")
_FIELD = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "cookie", "dpop"})
ALLOWED = {
    "base_url",
    "auth",
    "auth_name",
    "username",
    "source",
    "mount",
    "path",
    "field",
    "policies",
    "rules",
    "kv_version",
    "role_arn",
    "region",
    "sts_endpoint_url",
    "resources",
    "service",
    "aws",  # derived (the validated session settings): ignored on input, recomputed
}


@dataclass(frozen=True, slots=True)
class Rule:
    method: str
    pattern: str
    action: str

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        want = self.pattern.strip("/").split("/") if self.pattern != "/" else []
        got = path.strip("/").split("/") if path.strip("/") else []
        for i, seg in enumerate(want):
            if seg == "**":
                return len(got) >= i  # the rest, possibly empty
            if i >= len(got) or (seg != "*" and seg != got[i]):
                return False
        return len(got) == len(want)


def parse_rule(field: str, text: object) -> Rule:
    parts = text.split() if isinstance(text, str) else []
    if len(parts) != 3:
        raise InvalidInput(field, 'a rule is "METHOD /path/pattern action", e.g. "GET /v1/customers/* db.read"')
    method, pattern, action = parts[0].upper(), parts[1], parts[2]
    if method not in METHODS:
        raise InvalidInput(field, f'method "{parts[0]}" is not one of {list(METHODS)}')
    segs = pattern.strip("/").split("/") if pattern != "/" else []
    if (
        not pattern.startswith("/")
        or any(s in ("", ".", "..") or not (s in ("*", "**") or _SEGMENT.match(s)) for s in segs)
        or ("**" in segs[:-1])
    ):
        raise InvalidInput(
            field,
            f'path pattern "{pattern}" must be absolute, with plain segments, "*" for one '
            f'segment and "**" only at the end',
        )
    return Rule(method, pattern, action)


@dataclass(frozen=True, slots=True)
class HttpApiSettings:
    base_url: str
    auth: str
    auth_name: str | None
    username: str | None
    source: str
    rules: tuple[Rule, ...]
    region: str | None = None  # auth sigv4: the signature's region and service
    service: str | None = None

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> HttpApiSettings:
        h = settings["http"]
        return cls(
            base_url=h["base_url"],
            auth=h["auth"],
            auth_name=h.get("auth_name"),
            username=h.get("username"),
            source=h["source"],
            rules=tuple(parse_rule(f"http.rules[{i}]", r) for i, r in enumerate(h["rules"])),
            region=h.get("region"),
            service=h.get("service"),
        )

    def match(self, method: str, path: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(method, path)), None)


class HttpApiBackend:
    kind = KIND
    # vault_kv: a static secret the broker cannot end (nothing to revoke); vault_token: OpenBao TTL
    self_expiring = True

    def __init__(
        self,
        http: OpenBaoHTTP,
        tokens: OpenBaoTokenBackend,
        *,
        catalog: Callable[[], Mapping[str, Action]],
        allowed_hosts: Iterable[str] = (),
        aws: AwsStsBackend | None = None,
    ) -> None:
        """``aws``: the broker's AWS backend (shared with kind ``aws``), for source ``aws_sts``."""
        self.http = http
        self.tokens = tokens
        self.catalog = catalog
        self.allowed_hosts = tuple(allowed_hosts)
        self.aws = aws

    def __repr__(self) -> str:
        return f"HttpApiBackend(openbao={self.http.addr!r})"

    # -- settings ---------------------------------------------------------------------------
    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        h = section(
            settings,
            "http",
            KIND,
            '{"base_url": ..., "auth": "bearer", "source": "vault_kv", '
            '"mount": ..., "path": ..., "field": ..., "rules": [...]}',
        )
        refuse_unknown("http", h, ALLOWED, KIND)
        out: dict[str, Any] = {"base_url": check_outbound_url("http.base_url", h.get("base_url"), self.allowed_hosts)}
        auth = h.get("auth", "bearer")
        if auth not in AUTH_MODES:
            raise InvalidInput("http.auth", f'"{auth}" is not one of {list(AUTH_MODES)}')
        out["auth"] = auth
        if auth in ("header", "query"):
            name = h.get("auth_name")
            pattern = _HEADER_NAME if auth == "header" else _PARAM_NAME
            if not isinstance(name, str) or not pattern.match(name) or name.lower() in FORBIDDEN_HEADERS:
                raise InvalidInput(
                    "http.auth_name", f"required for auth {auth}: the {auth} name (letters, digits, - or _, at most 64)"
                )
            out["auth_name"] = name
        if auth == "basic":
            user = h.get("username")
            if not isinstance(user, str) or not user or len(user) > 128 or ":" in user:
                raise InvalidInput("http.username", "required for auth basic: a user name without ':'")
            out["username"] = user
        rules = h.get("rules")
        if not isinstance(rules, list) or not rules or len(rules) > MAX_RULES:
            raise InvalidInput("http.rules", f'required: 1 to {MAX_RULES} rules like "GET /v1/items/* db.read"')
        catalog = self.catalog()
        for i, text in enumerate(rules):
            rule = parse_rule(f"http.rules[{i}]", text)
            if rule.action not in catalog:
                raise InvalidInput(
                    f"http.rules[{i}]", f'action "{rule.action}" is not in the action catalog; known: {sorted(catalog)}'
                )
        out["rules"] = [" ".join(str(r).split()) for r in rules]
        source = h.get("source")
        if (auth == "sigv4") != (source == "aws_sts"):
            raise InvalidInput("http.auth", "auth sigv4 goes with source aws_sts (and only with it)")
        if source == "aws_sts":
            out.update(self._validate_aws(h))
        elif source == "vault_kv":
            out.update(self._validate_kv(h))
        elif source == "vault_token":
            try:
                checked = self.tokens.validate_settings({"vault": {"policies": h.get("policies")}})
            except InvalidInput as exc:  # the token adapter names its own block; name ours
                raise InvalidInput("http.policies", exc.message.split(": ", 1)[-1]) from exc
            out["policies"] = checked["vault"]["policies"]
        else:
            raise InvalidInput("http.source", f"required: one of {list(SOURCES)}")
        out["source"] = source
        return {"http": out}

    def _validate_aws(self, h: Mapping[str, Any]) -> dict[str, Any]:
        if self.aws is None:
            raise InvalidInput("http.source", "aws_sts needs the broker's aws backend (aws.enabled: true)")
        service = h.get("service")
        if not isinstance(service, str) or not _SERVICE.match(service):
            raise InvalidInput("http.service", 'required for auth sigv4: the AWS signing name, e.g. "s3" or "sts"')
        given = {inner: h[outer] for outer, inner in AWS_FIELDS.items() if h.get(outer) is not None}
        try:
            checked = self.aws.validate_settings({"aws": given})["aws"]
        except InvalidInput as exc:  # the aws adapter names its own block; name ours
            outer = {f"aws.{inner}": f"http.{name}" for name, inner in AWS_FIELDS.items()}.get(exc.field, "http")
            raise InvalidInput(outer, exc.message.split(": ", 1)[-1]) from exc
        out: dict[str, Any] = {"role_arn": checked["role_arn"], "region": checked["region"], "service": service}
        if "endpoint_url" in checked:
            out["sts_endpoint_url"] = checked["endpoint_url"]
        if h.get("resources") is not None:
            out["resources"] = checked["resources"]
        out["aws"] = checked
        return out

    def _validate_kv(self, h: Mapping[str, Any]) -> dict[str, Any]:
        mount = vault_path("http.mount", h.get("mount"), what="KV mount")
        path = vault_path("http.path", h.get("path"), what="secret path")
        field = h.get("field")
        if not isinstance(field, str) or not _FIELD.match(field):
            raise InvalidInput("http.field", "required for source vault_kv: the secret's field holding the credential")
        with self.http.client() as c:
            try:
                info = c.adapter.get(f"/v1/sys/mounts/{mount}")["data"]
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath) as exc:
                raise InvalidInput("http.mount", f'no secrets engine is mounted at "{mount}"') from exc
            version = 2 if str((info.get("options") or {}).get("version", "1")) == "2" else 1
            try:
                values = _kv_values(c.adapter.get(_kv_path(mount, path, version)), version)
            except (hvac.exceptions.InvalidPath, hvac.exceptions.Forbidden) as exc:
                raise InvalidInput("http.path", f'no secret the broker can read at "{path}" in "{mount}"') from exc
        if not isinstance(values.get(field), str) or not values[field]:
            raise InvalidInput("http.field", f'the secret at "{mount}/{path}" has no string field "{field}"')
        return {"mount": mount, "path": path, "field": field, "kv_version": version}

    # -- port -------------------------------------------------------------------------------
    def issue(self, request: IssueRequest) -> IssuedCredential:
        h = request.resource.settings["http"]
        if h["source"] == "aws_sts":
            return self._issue_aws(request, h)
        if h["source"] == "vault_token":
            inner = self.tokens.issue(
                IssueRequest(
                    task=request.task,
                    agent=request.agent,
                    action=request.action,
                    resource=_as_token_resource(request, h["policies"]),
                    ttl_seconds=request.ttl_seconds,
                    uses=0,
                    decision_id=request.decision_id,
                    grant_id=request.grant_id,
                    persist_handle=request.persist_handle,
                )
            )
            return IssuedCredential(
                kind=KIND,
                public={"injected": True, "source": "vault_token", "accessor": inner.accessor},
                secrets={"credential": inner.secrets["token"]},
                expires_at=inner.expires_at,
                revocation={**inner.revocation, "source": "vault_token"},
                accessor=inner.accessor,
                covered_by_task_handle=inner.covered_by_task_handle,
            )
        version = int(h.get("kv_version", 1))
        with self.http.client() as c:
            try:
                values = _kv_values(c.adapter.get(_kv_path(h["mount"], h["path"], version)), version)
            except (hvac.exceptions.InvalidPath, hvac.exceptions.Forbidden) as exc:
                raise UpstreamError(
                    f'the credential of resource "{request.resource.name}" is no longer '
                    f'readable at "{h["mount"]}/{h["path"]}"'
                ) from exc
        value = values.get(h["field"])
        del values
        if not isinstance(value, str) or not value:
            raise UpstreamError(f'the secret of resource "{request.resource.name}" has no field "{h["field"]}"')
        return IssuedCredential(
            kind=KIND,
            public={"injected": True, "source": "vault_kv"},
            secrets={"credential": Secret(value)},
            expires_at=datetime.now(UTC) + timedelta(seconds=request.ttl_seconds),
            revocation={"source": "vault_kv"},
        )

    def _issue_aws(self, request: IssueRequest, h: Mapping[str, Any]) -> IssuedCredential:
        if self.aws is None:
            raise UpstreamError(f'resource "{request.resource.name}" signs with AWS, but the aws backend is off')
        persist = request.persist_handle
        inner = self.aws.issue(
            replace(
                request,
                resource=replace(request.resource, settings={"aws": dict(h["aws"])}),
                persist_handle=(lambda ref: persist({**ref, "source": "aws_sts"})) if persist is not None else None,
            )
        )
        return IssuedCredential(
            kind=KIND,
            public={"injected": True, "source": "aws_sts", "assumed_role_arn": inner.public.get("assumed_role_arn")},
            # "credential" is the signing key; the key id and session token travel in the request
            secrets={
                "credential": inner.secrets["secret_access_key"],
                "access_key_id": inner.secrets["access_key_id"],
                "session_token": inner.secrets["session_token"],
            },
            expires_at=inner.expires_at,
            revocation={**inner.revocation, "source": "aws_sts"},
            accessor=inner.accessor,
            task_handle={**inner.task_handle, "source": "aws_sts"} if inner.task_handle is not None else None,
            covered_by_task_handle=inner.covered_by_task_handle,
            backend_expires_at=inner.backend_expires_at,
        )

    def revoke(self, reference: Mapping[str, Any]) -> None:
        if reference.get("source") == "aws_sts":  # an STS session (or its task's role), via the aws backend
            if self.aws is None:
                raise UpstreamError("an aws_sts grant cannot be revoked while the aws backend is off")
            self.aws.revoke({k: v for k, v in reference.items() if k != "source"})
            return
        if reference.get("accessor"):  # a vault_token grant, or the task's parent token (its handle)
            self.tokens.revoke({k: v for k, v in reference.items() if k != "source"})
        # vault_kv: a static secret; the grant ends at the broker (rotation is the remedy for a leak)

    def check_alive(self) -> None:
        self.http.health()

    def forget_task(self, task_id: str) -> None:
        if self.aws is not None:
            self.aws.forget_task(task_id)


def _as_token_resource(request: IssueRequest, policies: list[str]) -> Resource:
    return replace(request.resource, settings={"vault": {"policies": list(policies)}})


def _kv_path(mount: str, path: str, version: int) -> str:
    return f"/v1/{mount}/data/{path}" if version == 2 else f"/v1/{mount}/{path}"


def _kv_values(resp: Any, version: int) -> dict[str, Any]:
    data = (resp or {}).get("data") or {}
    values = data.get("data") if version == 2 else data
    return dict(values or {})
