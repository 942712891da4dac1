"""Wrapped KV retrieval against a real OpenBao dev server."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import pytest
from support.backend_requests import make_request, make_resource

from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.openbao_kv import OpenBaoKVBackend, UnwrapVerdict, WrapState
from broker.errors import InvalidInput
from broker.secrets import Fingerprinter, Secret

pytestmark = pytest.mark.openbao

FP = Fingerprinter(b"k" * 32)


@pytest.fixture
def backend(openbao_http: OpenBaoHTTP) -> OpenBaoKVBackend:
    return OpenBaoKVBackend(openbao_http, fingerprinter=FP)


@pytest.fixture
def planted(openbao_http: OpenBaoHTTP) -> tuple[str, str]:
    """A secret at a fresh path in the dev server's KV v2 mount ``secret``: (path, value)."""
    path = f"agents/{uuid.uuid4().hex[:8]}/api-key"
    value = "sk_live_" + uuid.uuid4().hex
    with openbao_http.client() as c:
        c.secrets.kv.v2.create_or_update_secret(
            path=path, secret={"api_key": value, "note": "demo"}, mount_point="secret"
        )
    return path, value


def _unwrap(addr: str, token: Secret) -> dict[str, Any]:
    agent = hvac.Client(url=addr)
    agent.token = token.reveal()
    return agent.adapter.post("/v1/sys/wrapping/unwrap")["data"]  # type: ignore[no-any-return]


def _resource(backend: OpenBaoKVBackend, path: str) -> Any:
    return make_resource("vault_kv", backend.validate_settings({"vault": {"mount": "secret", "path": path}}))


def test_kv_settings_detect_the_kv_version_when_the_path_is_readable(
    backend: OpenBaoKVBackend, planted: tuple[str, str]
) -> None:
    assert backend.validate_settings({"vault": {"mount": "secret", "path": planted[0]}}) == {
        "vault": {"mount": "secret", "path": planted[0], "kv_version": 2}
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"vault": {"mount": "nokv", "path": "a"}}, 'vault.mount: no secrets engine is mounted at "nokv"'),
        ({"vault": {"mount": "sys", "path": "a"}}, 'vault.mount: "sys" is a system engine, not a KV engine'),
        (
            {"vault": {"mount": "secret", "path": "missing/x"}},
            'vault.path: no secret at "missing/x" in KV mount "secret"',
        ),
        ({"vault": {"mount": "secret", "path": "../sys"}}, "vault.path: invalid secret path"),
        ({"vault": {"mount": "secret"}}, "vault.path: required"),
        ({"vault": {"mount": "secret", "path": "a", "wrap": 1}}, "vault.wrap: unknown setting"),
    ],
)
def test_kv_settings_are_refused_naming_the_field(
    backend: OpenBaoKVBackend, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        backend.validate_settings(settings)
    assert info.value.message.startswith(message)


def test_kv_wrapped_secret_unwraps_once_and_a_second_unwrap_is_judged_tampering(
    backend: OpenBaoKVBackend, planted: tuple[str, str]
) -> None:
    path, value = planted
    cred = backend.issue(make_request(_resource(backend, path), "secrets.read", ttl=120))
    token = cred.secrets["wrapping_token"]
    assert cred.public["creation_path"] == f"secret/data/{path}"
    assert backend.lookup_wrapping_token(token)["creation_path"] == f"secret/data/{path}"
    assert backend.wrapping_status(cred.revocation) is WrapState.PENDING

    first = _unwrap(cred.public["unwrap_addr"], token)  # an interceptor gets there first...
    assert first["data"]["api_key"] == value
    with pytest.raises(hvac.exceptions.InvalidRequest):  # ...so the agent's own unwrap fails
        _unwrap(cred.public["unwrap_addr"], token)

    assert backend.wrapping_status(cred.revocation) is WrapState.GONE
    verdict = backend.judge_unwrap_failure(cred.revocation, expires_at=cred.expires_at, revoked=False)
    assert verdict is UnwrapVerdict.TAMPERED


def test_kv_unwrap_failure_is_not_tampering_when_revoked_expired_or_still_pending(
    backend: OpenBaoKVBackend, planted: tuple[str, str]
) -> None:
    cred = backend.issue(make_request(_resource(backend, planted[0]), "secrets.read", ttl=120))
    assert (
        backend.judge_unwrap_failure(cred.revocation, expires_at=cred.expires_at, revoked=False)
        is UnwrapVerdict.NOT_CONSUMED
    )
    backend.revoke(cred.revocation)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        _unwrap(cred.public["unwrap_addr"], cred.secrets["wrapping_token"])
    assert (
        backend.judge_unwrap_failure(cred.revocation, expires_at=cred.expires_at, revoked=True) is UnwrapVerdict.REVOKED
    )
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert backend.judge_unwrap_failure(cred.revocation, expires_at=past, revoked=False) is UnwrapVerdict.EXPIRED


def test_kv_wrap_ttl_is_the_tier_ttl(backend: OpenBaoKVBackend, planted: tuple[str, str]) -> None:
    cred = backend.issue(make_request(_resource(backend, planted[0]), "secrets.read", ttl=90))
    assert cred.public["wrap_ttl"] == 90
    assert backend.lookup_wrapping_token(cred.secrets["wrapping_token"])["creation_ttl"] == 90
    backend.revoke(cred.revocation)


def test_kv_revocation_is_idempotent(backend: OpenBaoKVBackend, planted: tuple[str, str]) -> None:
    path, value = planted
    cred = backend.issue(make_request(_resource(backend, path), "secrets.read"))
    other = backend.issue(make_request(_resource(backend, path), "secrets.read"))
    assert backend.wrapping_status(cred.revocation) is WrapState.PENDING
    backend.revoke(cred.revocation)
    backend.revoke(cred.revocation)  # again: success, nothing left to do
    backend.revoke({"wrapping_accessor": "never-issued"})  # an accessor OpenBao never issued: success
    # the revoked wrapping token is gone and cannot be unwrapped...
    assert backend.wrapping_status(cred.revocation) is WrapState.GONE
    with pytest.raises(hvac.exceptions.InvalidRequest):
        _unwrap(cred.public["unwrap_addr"], cred.secrets["wrapping_token"])
    # ...and the repeated and unknown revocations touched nothing else: the other one unwraps, once
    assert backend.wrapping_status(other.revocation) is WrapState.PENDING
    assert _unwrap(other.public["unwrap_addr"], other.secrets["wrapping_token"])["data"]["api_key"] == value


def test_kv_token_is_gone_as_soon_as_it_was_unwrapped(backend: OpenBaoKVBackend, planted: tuple[str, str]) -> None:
    """OpenBao revokes a used wrapping token in the background; until it has, the accessor lookup
    still finds it (``num_uses`` -1). Judged pending, an interception would pass for "not consumed"."""
    resource = _resource(backend, planted[0])
    for _ in range(40):  # the window is short: without the fix, some of these land in it
        cred = backend.issue(make_request(resource, "secrets.read"))
        _unwrap(cred.public["unwrap_addr"], cred.secrets["wrapping_token"])
        assert backend.wrapping_status(cred.revocation) is WrapState.GONE


def test_kv_secret_value_never_appears_in_what_the_broker_keeps_or_logs(
    backend: OpenBaoKVBackend,
    planted: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, value = planted
    caplog.set_level(logging.DEBUG)
    cred = backend.issue(make_request(_resource(backend, path), "secrets.read"))
    backend.revoke(cred.revocation)
    token = cred.secrets["wrapping_token"].reveal()
    kept = repr(cred) + str(cred.public) + str(cred.revocation) + str(cred.extra)
    out = capsys.readouterr()
    for leaked in (value, token):
        assert leaked not in kept
        assert leaked not in caplog.text and leaked not in out.out and leaked not in out.err
    # ... yet the scanner can recognise the secret itself by its fingerprint
    assert FP(value) in cred.extra["fingerprints"]


def test_kv_wraps_the_version_it_fingerprinted(
    backend: OpenBaoKVBackend, planted: tuple[str, str], openbao_http: OpenBaoHTTP
) -> None:
    path, value = planted
    cred = backend.issue(make_request(_resource(backend, path), "secrets.read"))
    with openbao_http.client() as c:  # the secret is rotated after issuance
        c.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": "rotated"}, mount_point="secret")
    assert _unwrap(cred.public["unwrap_addr"], cred.secrets["wrapping_token"])["data"]["api_key"] == value


def test_kv_version_1_mount_is_wrapped_too(openbao_http: OpenBaoHTTP) -> None:
    mount = "kv1-" + uuid.uuid4().hex[:6]
    with openbao_http.client() as c:
        c.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
        c.secrets.kv.v1.create_or_update_secret(path="app/token", secret={"token": "v1-value"}, mount_point=mount)
    backend = OpenBaoKVBackend(openbao_http)
    settings = backend.validate_settings({"vault": {"mount": mount, "path": "app/token"}})
    assert settings["vault"]["kv_version"] == 1
    cred = backend.issue(make_request(make_resource("vault_kv", settings), "secrets.read"))
    assert cred.extra["fingerprints"] == []  # no fingerprinter: the broker never read the value
    assert _unwrap(cred.public["unwrap_addr"], cred.secrets["wrapping_token"])["token"] == "v1-value"
