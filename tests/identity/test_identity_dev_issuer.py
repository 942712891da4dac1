"""The built-in dev issuer: key file on disk, minted tokens, and its issuer config and JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import time

import jwt
import pytest

from broker.errors import BrokerError, InvalidInput, Unauthenticated
from broker.identity import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    DevIssuer,
    IdentityVerifier,
    InMemoryReplayGuard,
    IssuerConfig,
)


def key_file(data_dir):
    return data_dir / "dev-issuer" / "private_key.pem"


def test_dev_issuer_creates_a_private_key_file_readable_only_by_its_owner(tmp_path):
    issuer = DevIssuer.load_or_create(tmp_path)

    path = key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "PRIVATE KEY" not in repr(issuer)
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_dev_issuer_reloads_the_same_key_on_the_next_start(tmp_path):
    first = DevIssuer.load_or_create(tmp_path)
    second = DevIssuer.load_or_create(tmp_path)
    assert first.kid == second.kid
    assert first.jwks() == second.jwks()


def test_dev_issuer_refuses_a_key_file_other_users_can_read(tmp_path):
    DevIssuer.load_or_create(tmp_path)
    key_file(tmp_path).chmod(0o644)
    with pytest.raises(BrokerError, match="chmod 600"):
        DevIssuer.load_or_create(tmp_path)


def test_dev_issuer_token_verifies_with_its_issuer_config(tmp_path):
    dev = DevIssuer.load_or_create(tmp_path)
    verifier = IdentityVerifier([dev.issuer_config()], InMemoryReplayGuard())

    before = int(time.time())
    token = dev.mint("demo-agent", ttl_seconds=120, claims={"agent": "demo-agent"})
    after = time.time()
    identity = verifier.verify(token)

    assert identity.issuer == DEV_ISSUER
    assert identity.subject == "demo-agent"
    assert identity.claims["aud"] == DEV_AUDIENCE
    assert identity.claims["agent"] == "demo-agent"
    assert identity.jti
    assert before + 120 <= identity.expires_at.timestamp() <= after + 120  # minted with a 120 s lifetime


def test_dev_issuer_token_has_eddsa_kid_and_every_registered_claim(tmp_path):
    dev = DevIssuer.load_or_create(tmp_path)
    token = dev.mint("demo-agent")
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert header["alg"] == "EdDSA"
    assert header["kid"] == dev.kid
    assert {"iss", "sub", "aud", "iat", "nbf", "exp", "jti"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 300
    assert dev.mint("demo-agent") != token  # fresh jti each time


def test_dev_issuer_kid_is_the_rfc7638_thumbprint_of_its_public_key(tmp_path):
    dev = DevIssuer.load_or_create(tmp_path)
    jwk = dev.jwks()["keys"][0]
    pyjwk = jwt.PyJWK(jwk)
    assert pyjwk.key_id == dev.kid
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}  # public members only
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}, separators=(",", ":"))
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert dev.kid == expected


def test_dev_issuer_jwks_verifies_its_tokens_as_a_jwks_file(tmp_path):
    dev = DevIssuer.load_or_create(tmp_path)
    path = tmp_path / "dev-jwks.json"
    path.write_text(json.dumps(dev.jwks()))
    config = IssuerConfig(issuer=DEV_ISSUER, audiences=(DEV_AUDIENCE,), jwks_file=path, algorithms=("EdDSA",))
    verifier = IdentityVerifier([config], InMemoryReplayGuard())
    assert verifier.verify(dev.mint("demo-agent")).subject == "demo-agent"


def test_dev_issuer_token_is_single_use(tmp_path):
    dev = DevIssuer.load_or_create(tmp_path)
    verifier = IdentityVerifier([dev.issuer_config()], InMemoryReplayGuard())
    token = dev.mint("demo-agent")
    verifier.verify(token)
    with pytest.raises(Unauthenticated, match="replayed jti"):
        verifier.verify(token)


def test_token_from_another_dev_issuer_key_is_rejected(tmp_path):
    trusted = DevIssuer.load_or_create(tmp_path / "a")
    other = DevIssuer.load_or_create(tmp_path / "b")
    verifier = IdentityVerifier([trusted.issuer_config()], InMemoryReplayGuard())
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        verifier.verify(other.mint("demo-agent"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subject": ""}, "subject"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": 86400}, "ttl_seconds"),
        ({"claims": {"exp": 9999999999}}, "claims"),
        ({"claims": {"iss": "someone-else"}}, "claims"),
    ],
)
def test_dev_issuer_refuses_bad_mint_arguments(tmp_path, kwargs, field):
    dev = DevIssuer.load_or_create(tmp_path)
    args = {"subject": "demo-agent", **kwargs}
    with pytest.raises(InvalidInput) as info:
        dev.mint(args.pop("subject"), **args)
    assert info.value.field == field
