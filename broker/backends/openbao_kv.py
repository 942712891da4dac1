"""Wrapped secret retrieval from OpenBao KV (resource kind ``vault_kv``, action ``secrets.read``).

Resource settings: ``{"vault": {"mount": "secret", "path": "demo/api-key"}}``; the mount must be
a KV engine (version 1 or 2 is detected) and the path readable by the broker's token.

The agent never receives the secret from the broker: the broker reads the path with
``X-Vault-Wrap-TTL`` (the tier's TTL), so OpenBao puts the response in a single-use cubbyhole
and returns a *wrapping token*. The agent unwraps it once at ``sys/wrapping/unwrap``; a second
unwrap fails. Revocation is ``auth/token/revoke-accessor`` on the wrapping token's accessor.

Tampering: a wrapping token that is gone before its legitimate recipient unwrapped it was
intercepted (or the agent unwrapped it twice). When an agent reports that its unwrap failed, the
service asks :meth:`OpenBaoKVBackend.judge_unwrap_failure`, which tells tampering apart from
expiry, revocation and a token that is in fact still waiting (see docs/backends.md).

Fingerprints: with a ``fingerprinter`` the backend also reads the secret (unwrapped, in memory
only, the same KV v2 version it then wraps) and returns the fingerprints of its string values in
``extra["fingerprints"]``, so the scanner recognises the secret itself when it leaks — not only
the wrapping token. The values are never stored, logged or returned.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac

from broker.backends.names import refuse_unknown, section, vault_path
from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.port import IssuedCredential, IssueRequest
from broker.errors import InvalidInput, UpstreamError
from broker.secrets import Fingerprinter, Secret

KIND = "vault_kv"


class WrapState(enum.StrEnum):
    PENDING = "pending"  # the wrapping token exists: nobody has unwrapped it yet
    GONE = "gone"  # unwrapped, revoked or expired


class UnwrapVerdict(enum.StrEnum):
    TAMPERED = "tampered"  # consumed before the agent's unwrap, while valid and not revoked
    EXPIRED = "expired"  # the agent was too late
    REVOKED = "revoked"  # the broker revoked it (task ended / escalated)
    NOT_CONSUMED = "not_consumed"  # still waiting: the agent's unwrap failed for another reason


class OpenBaoKVBackend:
    kind = KIND
    self_expiring = True  # see CredentialBackend.self_expiring

    def __init__(
        self, http: OpenBaoHTTP, *, fingerprinter: Fingerprinter | None = None, public_addr: str | None = None
    ) -> None:
        """``public_addr``: the OpenBao address agents unwrap at (default: the broker's)."""
        self.http = http
        self.fingerprinter = fingerprinter
        self.public_addr = (public_addr or http.addr).rstrip("/")

    def __repr__(self) -> str:
        return f"OpenBaoKVBackend(openbao={self.http.addr!r})"

    # -- settings ---------------------------------------------------------------------------
    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        vault = section(settings, "vault", KIND, '{"mount": "secret", "path": "..."}')
        refuse_unknown("vault", vault, {"mount", "path", "kv_version"}, KIND)
        mount = vault_path("vault.mount", vault.get("mount"), what="KV mount")
        path = vault_path("vault.path", vault.get("path"), what="secret path")
        with self.http.client() as c:
            try:
                info = c.adapter.get(f"/v1/sys/mounts/{mount}")["data"]
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath) as exc:
                raise InvalidInput("vault.mount", f'no secrets engine is mounted at "{mount}"') from exc
            if info.get("type") not in ("kv", "generic"):
                raise InvalidInput("vault.mount", f'"{mount}" is a {info.get("type")} engine, not a KV engine')
            version = 2 if str((info.get("options") or {}).get("version", "1")) == "2" else 1
            try:
                c.adapter.get(_read_path(mount, path, version))
            except hvac.exceptions.InvalidPath as exc:
                raise InvalidInput("vault.path", f'no secret at "{path}" in KV mount "{mount}"') from exc
            except hvac.exceptions.Forbidden as exc:
                raise InvalidInput(
                    "vault.path", f'the broker\'s OpenBao token cannot read "{path}" in KV mount "{mount}"'
                ) from exc
        return {"vault": {"mount": mount, "path": path, "kv_version": version}}

    # -- port -------------------------------------------------------------------------------
    def issue(self, request: IssueRequest) -> IssuedCredential:
        vault = request.resource.settings["vault"]
        mount, path, version = vault["mount"], vault["path"], int(vault.get("kv_version", 1))
        url = _read_path(mount, path, version)
        fingerprints: list[str] = []
        lengths: dict[str, int] = {}
        if self.fingerprinter is not None:
            current = self.http.call("GET", url)
            data = current.get("data") or {}
            values = data.get("data") if version == 2 else data
            lengths = {self.fingerprinter(v): len(v) for v in _strings(values)}
            fingerprints = sorted(lengths)
            kv_meta = data.get("metadata") or {}
            if version == 2 and kv_meta.get("version"):
                url += f"?version={int(kv_meta['version'])}"  # wrap exactly what was fingerprinted
            del current, data, values
        wrapped = self.http.call("GET", url, wrap_ttl=f"{request.ttl_seconds}s")
        info = (wrapped or {}).get("wrap_info") or {}
        if not info.get("token") or not info.get("accessor"):
            raise UpstreamError(f'OpenBao did not wrap the secret at "{mount}/{path}"')
        ttl = int(info.get("ttl") or request.ttl_seconds)
        expires = datetime.now(UTC) + timedelta(seconds=ttl)
        return IssuedCredential(
            kind=KIND,
            public={
                "wrapping_accessor": info["accessor"],
                "wrap_ttl": ttl,
                "expires_at": expires.isoformat(),
                "creation_path": info.get("creation_path"),
                "unwrap_addr": self.public_addr,
                "unwrap": "POST /v1/sys/wrapping/unwrap with X-Vault-Token: <wrapping_token>; single use",
                "single_use": True,
            },
            secrets={"wrapping_token": Secret(str(info["token"]))},
            expires_at=expires,
            revocation={"wrapping_accessor": info["accessor"]},
            accessor=str(info["accessor"]),
            extra={
                "fingerprints": fingerprints,
                "fingerprint_lengths": lengths,
                "creation_path": info.get("creation_path"),
            },
        )

    def revoke(self, reference: Mapping[str, Any]) -> None:
        accessor = reference.get("wrapping_accessor")
        if not isinstance(accessor, str) or not accessor:
            raise UpstreamError("revocation reference has no wrapping_accessor")
        with self.http.client() as c:
            try:
                c.adapter.post("/v1/auth/token/revoke-accessor", json={"accessor": accessor})
            except hvac.exceptions.InvalidRequest as exc:
                if "invalid accessor" not in str(exc).lower():
                    raise
                # already unwrapped, revoked or expired: revocation is idempotent

    def check_alive(self) -> None:
        self.http.health()

    # -- tampering --------------------------------------------------------------------------
    def wrapping_status(self, reference: Mapping[str, Any]) -> WrapState:
        """Whether the wrapping token named by ``reference`` still waits to be unwrapped."""
        accessor = reference.get("wrapping_accessor")
        if not isinstance(accessor, str) or not accessor:
            raise UpstreamError("reference has no wrapping_accessor")
        with self.http.client() as c:
            try:
                found: Any = c.adapter.post("/v1/auth/token/lookup-accessor", json={"accessor": accessor})
            except hvac.exceptions.InvalidRequest as exc:
                if "invalid accessor" in str(exc).lower():
                    return WrapState.GONE
                raise
            except hvac.exceptions.Forbidden:
                # the accessor still there, its token already deleted: a revocation in progress
                # (when the broker may look accessors up at all; else it is a real refusal)
                if _may_lookup_accessors(c):
                    return WrapState.GONE
                raise
        # OpenBao revokes a used single-use token in the background; until then the lookup still
        # finds it, marked num_uses -1 (seen on a busy machine right after an unwrap)
        if (found or {}).get("data", {}).get("num_uses") == -1:
            return WrapState.GONE
        return WrapState.PENDING

    def judge_unwrap_failure(
        self,
        reference: Mapping[str, Any],
        *,
        expires_at: datetime,
        revoked: bool,
        now: datetime | None = None,
    ) -> UnwrapVerdict:
        """The agent says its unwrap failed. Tampering unless the broker revoked the token, it
        expired, or it is in fact still there. A TAMPERED verdict is an incident: audit it and
        escalate the task (the caller's job)."""
        now = now or datetime.now(UTC)
        if revoked:
            return UnwrapVerdict.REVOKED
        if now >= expires_at:
            return UnwrapVerdict.EXPIRED
        if self.wrapping_status(reference) is WrapState.PENDING:
            return UnwrapVerdict.NOT_CONSUMED
        return UnwrapVerdict.TAMPERED

    def lookup_wrapping_token(self, token: Secret) -> dict[str, Any]:
        """What a wrapping token wraps (``creation_path``, ``creation_time``, ``creation_ttl``),
        without consuming it: lets an agent check the token came from the expected path."""
        with self.http.client() as c:
            try:
                data = c.adapter.post("/v1/sys/wrapping/lookup", json={"token": token.reveal()})["data"]
            except hvac.exceptions.InvalidRequest as exc:
                raise UpstreamError("the wrapping token is not valid (already unwrapped, revoked or expired)") from exc
        return {k: data.get(k) for k in ("creation_path", "creation_time", "creation_ttl")}


def _read_path(mount: str, path: str, version: int) -> str:
    return f"/v1/{mount}/data/{path}" if version == 2 else f"/v1/{mount}/{path}"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _may_lookup_accessors(c: hvac.Client) -> bool:
    answer: Any = c.adapter.post("/v1/sys/capabilities-self", json={"paths": ["auth/token/lookup-accessor"]})
    caps = set((answer or {}).get("data", answer or {}).get("capabilities", []))
    return bool(caps & {"update", "root", "sudo"})
