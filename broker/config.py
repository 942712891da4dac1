"""Settings: pydantic-settings, from a YAML file (``serve --config``) and ``NHI_BROKER_*`` env.

Every credential is a ``SecretStr``. Outside dev mode, placeholder values are refused at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.errors import InvalidInput
from broker.netpolicy import OutboundPolicy
from policies import DEFAULT_BUNDLE

PLACEHOLDERS = {"", "changeme", "change-me", "root", "admin", "password", "secret", "token", "xxx"}


class IssuerSettings(BaseModel):
    issuer: str
    audiences: list[str] = Field(min_length=1)
    jwks_file: Path | None = None
    jwks_url: str | None = None
    public_key_pem: str | None = None
    algorithms: list[str] = ["RS256", "ES256", "EdDSA"]
    max_token_age_seconds: int = Field(default=3600, ge=10, le=86400)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    require_jti: bool = True
    jwks_cache_seconds: int = Field(default=300, ge=10, le=86400)

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerSettings:
        sources = [s for s in (self.jwks_file, self.jwks_url, self.public_key_pem) if s]
        if len(sources) != 1:
            raise ValueError("exactly one of jwks_file, jwks_url, public_key_pem must be set")
        return self


class HumanIssuerSettings(IssuerSettings):
    """An OIDC issuer of people (``actor_token`` in a token exchange): its ID tokens prove who the
    agent acts for. ``claims`` are the claims kept as the person's attributes (Cedar, audit)."""

    require_jti: bool = False  # ID tokens are presented once per exchange and may be reused
    claims: list[str] = ["groups", "email"]
    # audiences (client ids) of ID tokens people sign in to the broker with (approvals, reviews,
    # audit, admin: docs/people.md). Kept apart from ``audiences`` on purpose: an actor token handed
    # to an agent must never sign the agent in as that person. Empty: nobody signs in with this issuer.
    sign_in_audiences: list[str] = Field(default=[], max_length=20)


class ConsoleSettings(BaseModel):
    """The web console's sign-in and sessions (``/console``; docs/console.md).

    Sign-in is the OIDC authorization-code flow with PKCE against ``issuer``, which must be one of
    ``human_issuers`` with ``client_id`` among its ``sign_in_audiences``: the ID token is verified
    exactly as a person's bearer ID token is (keys, algorithms, ``iss``, ``aud``, ``exp``, age), plus
    the flow's ``nonce``. Empty ``issuer``: the first human issuer that signs people in."""

    issuer: str = Field(default="", max_length=512)
    client_id: str = Field(default="", max_length=256)  # default: the issuer's first sign_in_audience
    client_secret: SecretStr = SecretStr("")  # a confidential client; empty: a public client (PKCE only)
    discovery_url: str = Field(default="", max_length=2048)  # default: {issuer}/.well-known/openid-configuration
    scopes: list[str] = Field(default=["openid", "email", "profile"], min_length=1, max_length=10)
    # the session cookie's Secure flag; false only for a console served over http://127.0.0.1 (dev)
    cookie_secure: bool = True
    same_site: Literal["lax", "strict"] = "lax"
    idle_timeout_seconds: int = Field(default=900, ge=60, le=86400)
    max_session_seconds: int = Field(default=8 * 3600, ge=300, le=7 * 86400)
    login_timeout_seconds: int = Field(default=600, ge=30, le=3600)  # from /console/login to the callback


class McpResourceSettings(BaseModel):
    """An MCP server over streamable HTTP the broker issues audience-bound tokens for (RFC 8707
    ``resource``; docs/mcp.md). ``server_agent`` is the registered agent the MCP server itself runs
    as: only it may exchange a token of this audience for a broker token (no token passthrough)."""

    url: str = Field(min_length=8, max_length=512)
    server_agent: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$")

    @field_validator("url")
    @classmethod
    def _resource_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"mcp_resources url {value!r}: must be an absolute http(s) URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"mcp_resources url {value!r}: no query, fragment or user info (RFC 8707)")
        return value.rstrip("/")


class TokenExchangeSettings(BaseModel):
    """``POST /v1/token`` (RFC 8693) and DPoP (RFC 9449); see docs/identity.md."""

    issuer: str = ""  # the broker's issuer URL (iss and aud of its access tokens); default: its own URL
    max_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    dpop_iat_window_seconds: int = Field(default=60, ge=5, le=300)
    require_dpop: bool = False  # refuse exchanges without a DPoP proof (bearer access tokens)
    signing_key_file: Path | None = None  # EC P-256 PEM; default: token-signing.pem in data_dir
    public_url: str = ""  # the URL agents use (DPoP htu behind a proxy); default: the request's URL
    # MCP servers (streamable HTTP) tokens may be issued for: the allow-list of RFC 8707 resources
    mcp_resources: list[McpResourceSettings] = Field(default=[], max_length=50)


class OpenBaoSettings(BaseModel):
    addr: str = "http://127.0.0.1:8200"
    # how the broker authenticates itself (broker/backends/openbao_auth.py, docs/deploy.md)
    auth: Literal["token", "approle"] = "token"
    token: SecretStr = SecretStr("")
    renew_token: bool = False  # auth token: renew it (renew-self) at 2/3 of its TTL
    approle_mount: str = Field(default="approle", pattern=r"^[A-Za-z0-9_\-/]{1,100}$")
    approle_role_id: str = Field(default="", max_length=200)
    approle_secret_id: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _approle_complete(self) -> OpenBaoSettings:
        if self.auth == "approle" and not (self.approle_role_id and self.approle_secret_id.get_secret_value()):
            raise ValueError(
                "openbao.auth approle needs openbao.approle_role_id and openbao.approle_secret_id "
                "(NHI_BROKER_OPENBAO__APPROLE_SECRET_ID)"
            )
        return self

    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    token_ttl_max_seconds: int = 86400
    public_addr: str | None = None  # where agents reach OpenBao (unwrap); default: addr


class AwsSettings(BaseModel):
    enabled: bool = False  # register the `aws` backend (credentials: boto3's standard chain)
    region: str = "us-east-1"
    endpoint_url: str | None = None
    revocation_mode: Literal["tag_deny", "per_task_role"] = "tag_deny"


class OutboundSettings(BaseModel):
    """Where admin-defined URLs may point (broker/netpolicy.py, docs/operations.md)."""

    allow_loopback: bool | None = None  # plain http:// and 127.0.0.0/8 / ::1; default: dev mode only
    allow_networks: list[str] = Field(default=[], max_length=64)  # private CIDRs the deployment uses


MiB = 1024 * 1024


class LimitsSettings(BaseModel):
    """Request size and rate limits (broker/api/limits.py, docs/operations.md)."""

    max_body_bytes: int = Field(default=MiB, ge=1024, le=64 * MiB)
    # per route template (the path as the OpenAPI document writes it); these carry up to 1 MiB of text
    route_max_body_bytes: dict[str, int] = {
        "/v1/scan": 4 * MiB,
        "/v1/tasks/{task_id}/events": 4 * MiB,
        "/v1/token": 32 * 1024,
    }
    auth_failures_per_minute: int = Field(default=30, ge=1, le=100_000)  # per source address
    scans_per_minute: int = Field(default=120, ge=1, le=100_000)  # per agent and per source address
    auth_failed_audit_interval_seconds: float = Field(default=60.0, ge=1, le=3600)
    max_concurrent_scans: int = Field(default=4, ge=1, le=256)
    max_queued_scans: int = Field(default=16, ge=0, le=10_000)
    # trust X-Forwarded-For from these proxy addresses (HAProxy); otherwise the peer address counts
    trusted_proxies: list[str] = Field(default=[], max_length=64)

    @field_validator("route_max_body_bytes")
    @classmethod
    def _route_limits(cls, v: dict[str, int]) -> dict[str, int]:
        for route, n in v.items():
            if not route.startswith("/") or not 1024 <= n <= 64 * MiB:
                raise ValueError(
                    f"limits.route_max_body_bytes[{route!r}]: route must start with / and the "
                    "limit be from 1024 to 67108864 bytes"
                )
        return v


class GatewaySettings(BaseModel):
    """The credential-injecting gateway (resource kind ``http_api``, docs/backends.md)."""

    # upstream hosts an ``http_api`` resource may name besides loopback (exact host names, https only)
    allowed_hosts: list[str] = []
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_response_bytes: int = Field(default=4_194_304, ge=1024, le=64 * 1_048_576)


# -- the keyed audit trail (docs/operations.md, "Audit"; used by broker.audit) --------------------
class CheckpointSinkSettings(BaseModel):
    """One place checkpoints are exported to, outside the database."""

    kind: Literal["file", "syslog", "webhook"]
    # file: path of an append-only JSON-lines file (default: <data_dir>/audit-checkpoints.jsonl)
    path: Path | None = None
    # syslog: "host:port" (UDP) or the path of a unix socket such as /dev/log
    address: str | None = Field(default=None, max_length=512)
    facility: Literal[
        "auth",
        "authpriv",
        "daemon",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
        "user",
    ] = "authpriv"
    # webhook: a JSON POST per checkpoint
    url: str | None = Field(default=None, max_length=2048)
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("url must not carry credentials (user:password@)")
        return v

    @model_validator(mode="after")
    def _target(self) -> CheckpointSinkSettings:
        if self.kind == "syslog" and not self.address:
            raise ValueError("a syslog sink needs address (host:port or a unix socket path)")
        if self.kind == "webhook" and not self.url:
            raise ValueError("a webhook sink needs url")
        return self


class AuditSettings(BaseModel):
    # hex, at least 32 bytes; when empty the key file is used (created 0600 on first start)
    key: SecretStr = SecretStr("")
    key_file: Path | None = None  # default: <data_dir>/audit.key
    # verify the new events and export a checkpoint of the head this often (when it moved)
    checkpoint_interval_seconds: float = Field(default=10.0, gt=0, le=86400)
    # walk the whole chain again this often (and once at start-up)
    verify_interval_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    sinks: list[CheckpointSinkSettings] = Field(
        default_factory=lambda: [CheckpointSinkSettings(kind="file")], max_length=8
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NHI_BROKER_", env_nested_delimiter="__", extra="forbid")

    dev_mode: bool = False
    data_dir: Path = Path(".nhi-broker")
    database_url: str = ""  # default: sqlite under data_dir
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    admin_token: SecretStr = SecretStr("")
    # key for HMAC fingerprints of secrets (hex, >= 32 bytes); default: generated in data_dir
    fingerprint_key: SecretStr = SecretStr("")
    # the keyed audit trail: key (not in the database), checkpoint sinks, verification schedule
    audit: AuditSettings = AuditSettings()
    policy_dir: Path = DEFAULT_BUNDLE
    policy_watch_seconds: float = Field(default=2.0, ge=0, le=3600)  # 0: reload only on API call
    openbao: OpenBaoSettings = OpenBaoSettings()
    aws: AwsSettings = AwsSettings()
    gateway: GatewaySettings = GatewaySettings()
    issuers: list[IssuerSettings] = []
    human_issuers: list[HumanIssuerSettings] = []
    token_exchange: TokenExchangeSettings = TokenExchangeSettings()
    dev_issuer: bool = False  # trust the dev issuer whose key lives in data_dir
    default_task_lifetime_seconds: int = Field(default=3600, ge=60, le=86400)
    alert_webhook_url: str | None = None
    alert_webhook_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # step-up approvals (docs/approvals.md): window to approve and collect; webhook called when pending
    approval_ttl_seconds: int = Field(default=600, ge=5, le=86400)
    approval_webhook_url: str | None = None
    approval_webhook_format: Literal["json", "slack"] = "json"  # slack: a Slack-compatible message body
    # the web console's base URL as people open it (links in notifications); default http://host:port/console
    console_url: str = Field(default="", max_length=2048)
    console: ConsoleSettings = ConsoleSettings()
    # per-person API tokens (docs/people.md): the longest lifetime an admin may give one
    person_token_max_ttl_seconds: int = Field(default=90 * 86400, ge=3600, le=366 * 86400)
    # /readyz reports the revocation backlog as stuck when the oldest pending one is older than this
    revocation_stuck_seconds: float = Field(default=60.0, gt=0, le=86400)
    # /readyz runs its checks concurrently and answers within this budget (unanswered: unready)
    readiness_budget_seconds: float = Field(default=2.0, gt=0, le=30)
    revocation_worker_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    # PostgreSQL store: besides LISTEN/NOTIFY, re-read grants issued by other replicas this often
    grant_feed_resync_seconds: float = Field(default=5.0, gt=0, le=86400)
    outbound: OutboundSettings = OutboundSettings()
    limits: LimitsSettings = LimitsSettings()
    # directories `files` scan jobs may read (broker/pathpolicy.py); `serve`: none until configured,
    # `up`: the working directory and the system temp directory
    scan_roots: list[Path] = Field(default=[], max_length=64)
    rotation_worker_interval_seconds: float = Field(default=30.0, gt=0, le=3600)
    scan_lease_seconds: float = Field(default=60.0, gt=1, le=3600)
    scan_max_workers: int = Field(default=4, ge=1, le=32)
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if v and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> Settings:
        if not self.dev_mode:
            checked = [("admin_token", self.admin_token)]
            if self.openbao.auth == "token":
                checked.append(("openbao.token", self.openbao.token))
            for name, value in checked:
                if value.get_secret_value().strip().lower() in PLACEHOLDERS or len(value.get_secret_value()) < 16:
                    raise ValueError(
                        f"{name} is missing or a placeholder; set a real secret "
                        f"(at least 16 characters) outside dev mode"
                    )
        return self

    @field_validator("fingerprint_key")
    @classmethod
    def _fingerprint_key(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        if raw:
            try:
                ok = len(bytes.fromhex(raw)) >= 32
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("fingerprint_key must be hex of at least 32 bytes (64 hex characters)")
        return v

    @model_validator(mode="after")
    def _shared_keys_with_a_shared_store(self) -> Settings:
        """Replicas on one PostgreSQL store must share their keys: a key generated per data dir
        would make each replica's fingerprints unmatchable by the others, and the audit chain
        unverifiable (events appended under different keys)."""
        if not self.database_url.startswith("postgresql"):
            return self
        missing = []
        if not self.fingerprint_key.get_secret_value():
            missing.append("fingerprint_key (NHI_BROKER_FINGERPRINT_KEY, 64 hex characters)")
        if not self.audit.key.get_secret_value() and self.audit.key_file is None:
            missing.append("audit.key (NHI_BROKER_AUDIT__KEY, 64 hex characters) or audit.key_file")
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} required with a PostgreSQL store: every replica must "
                "use the same keys, so none may generate its own"
            )
        return self

    def outbound_policy(self) -> OutboundPolicy:
        allow = self.dev_mode if self.outbound.allow_loopback is None else self.outbound.allow_loopback
        return OutboundPolicy.from_config(allow, self.outbound.allow_networks)

    @model_validator(mode="after")
    def _outbound_urls(self) -> Settings:
        policy = self.outbound_policy()  # a bad allow_networks entry fails here, naming the setting
        for name, url in (
            ("alert_webhook_url", self.alert_webhook_url),
            ("approval_webhook_url", self.approval_webhook_url),
            ("aws.endpoint_url", self.aws.endpoint_url),
        ):
            if url is not None:
                try:
                    policy.check_url(url, field=name)
                except InvalidInput as exc:
                    raise ValueError(exc.message) from None
        urls = [(f"issuers[{i}].jwks_url", issuer.jwks_url) for i, issuer in enumerate(self.issuers)]
        urls += [(f"human_issuers[{i}].jwks_url", h.jwks_url) for i, h in enumerate(self.human_issuers)]
        urls += [(f"audit.sinks[{i}].url", sink.url) for i, sink in enumerate(self.audit.sinks)]
        urls += [("console.discovery_url", self.console.discovery_url or None)]
        for name, url in urls:
            if url is not None:
                try:
                    policy.check_url(url, field=name)
                except InvalidInput as exc:
                    raise ValueError(exc.message) from None
        return self

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, v: str) -> str:
        if v:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
                raise ValueError("console_url must be an http(s) URL with a host and no credentials")
        return v

    @model_validator(mode="after")
    def _console_sign_in(self) -> Settings:
        c = self.console
        if c.issuer and c.issuer not in [h.issuer for h in self.human_issuers]:
            raise ValueError(f'console.issuer "{c.issuer}" is not one of human_issuers[].issuer')
        if c.client_id and c.issuer:
            issuer = next(h for h in self.human_issuers if h.issuer == c.issuer)
            if c.client_id not in issuer.sign_in_audiences:
                raise ValueError(
                    "console.client_id must be one of the console issuer's sign_in_audiences "
                    "(the ID tokens it issues for the console are verified against them)"
                )
        if not c.cookie_secure:
            host = urlsplit(self.console_url).hostname if self.console_url else self.host
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise ValueError(
                    "console.cookie_secure may be false only for a console on http://127.0.0.1 "
                    "(console_url, or host when console_url is empty)"
                )
        return self

    def console_sign_in(self) -> tuple[HumanIssuerSettings, str] | None:
        """The human issuer people sign in to the console with and the client id; None: no sign-in."""
        c = self.console
        candidates = [h for h in self.human_issuers if h.sign_in_audiences and (not c.issuer or h.issuer == c.issuer)]
        if not candidates:
            return None
        issuer = candidates[0]
        return issuer, c.client_id or issuer.sign_in_audiences[0]

    def resolved_console_url(self) -> str:
        return (self.console_url or f"http://{self.host}:{self.port}/console").rstrip("/")

    def token_issuer(self) -> str:
        return self.token_exchange.issuer or f"http://{self.host}:{self.port}"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'broker.db').resolve()}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {}
    if config_file is not None:
        raw = yaml.safe_load(config_file.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{config_file}: must be a YAML mapping")
        data.update(raw)
    data.update(overrides)
    return Settings(**data)
