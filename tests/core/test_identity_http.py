"""JWT attacks through the HTTP API: every one is a 401 and an auth.failed audit event."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from support.wait import HTTP_TIMEOUT

pytestmark = pytest.mark.openbao

ISS, AUD = "urn:nhi-broker:dev", "nhi-broker"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**over):
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "demo-agent", "iat": now, "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    c.update(over)
    return c


def _open(broker, token: str) -> httpx.Response:
    return httpx.post(
        f"{broker.url}/v1/tasks",
        json={"profile": "demo", "purpose": "attack"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )


def test_valid_dev_token_opens_task(broker):
    assert _open(broker, broker.token()).status_code == 201


@pytest.mark.parametrize(
    "attack",
    [
        "alg_none",
        "hs256_with_public_key",
        "wrong_aud",
        "wrong_iss",
        "expired",
        "not_yet_valid",
        "unknown_kid",
        "foreign_key",
        "garbage",
        "unbound_subject",
    ],
)
def test_jwt_attack_is_401(broker, attack):
    pub_pem = broker.dev_issuer.issuer_config().public_key_pem
    kid = broker.dev_issuer.jwks()["keys"][0]["kid"]
    if attack == "alg_none":
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    elif attack == "hs256_with_public_key":
        # PyJWT refuses to do this, so forge it by hand: HMAC-SHA256 keyed with the public key PEM
        header = _b64({"alg": "HS256", "typ": "JWT", "kid": kid})
        body = _b64(_claims())
        mac = hmac.new(pub_pem.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        token = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    elif attack == "unknown_kid":
        token = jwt.encode(
            _claims(), ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "not-a-known-kid"}
        )
    elif attack == "foreign_key":
        token = jwt.encode(
            _claims(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
            headers={"kid": kid},
        )
    elif attack == "garbage":
        token = "not.a.jwt"
    elif attack == "unbound_subject":
        token = broker.token("nobody-registered")
    else:
        over = {
            "wrong_aud": {"aud": "someone-else"},
            "wrong_iss": {"iss": "https://evil.example"},
            "expired": {"exp": int(time.time()) - 600, "iat": int(time.time()) - 900},
            "not_yet_valid": {"nbf": int(time.time()) + 600},
        }[attack]
        # signed with the real dev key: only the claims are wrong
        token = jwt.encode(_claims(**over), broker.dev_issuer._private_key, algorithm="EdDSA", headers={"kid": kid})
    r = _open(broker, token)
    assert r.status_code == 401, (attack, r.text)
    assert token not in r.text
    assert r.headers.get("www-authenticate") == "Bearer"


def test_replayed_token_is_401(broker):
    token = broker.token()
    assert _open(broker, token).status_code == 201
    r = _open(broker, token)
    assert r.status_code == 401 and "replay" in r.json()["error"]["message"]


def test_missing_bearer_is_401_and_audited(broker):
    r = httpx.post(f"{broker.url}/v1/tasks", json={"profile": "demo", "purpose": "x"}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 401
    assert any(e["data"]["reason"].startswith("missing bearer") for e in broker.admin().audit(kind="auth.failed"))
