"""IssuerConfig refuses configurations that could not verify safely, at construction."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.identity import IdentityVerifier, InMemoryReplayGuard, IssuerConfig

ISSUER = "https://issuer.example.test"
JWKS_URL = "https://issuer.example.test/jwks"


@pytest.mark.parametrize("algs", [("none",), ("HS256",), ("RS256", "HS512"), ("HS384",), ("FOO",), ()])
def test_issuer_config_refuses_none_symmetric_unknown_or_no_algorithms(algs):
    with pytest.raises(ValueError, match="algorithm"):
        IssuerConfig(issuer=ISSUER, audiences=("a",), jwks_url=JWKS_URL, algorithms=algs)


@pytest.mark.parametrize(
    "sources",
    [{}, {"jwks_url": "https://issuer.example.test/jwks", "public_key_pem": "x"}],
)
def test_issuer_config_needs_exactly_one_key_source(sources):
    with pytest.raises(ValueError, match="exactly one of jwks_file, jwks_url, public_key_pem"):
        IssuerConfig(issuer=ISSUER, audiences=("a",), **sources)


@pytest.mark.parametrize(
    "url", ["http://issuer.example.test/jwks", "file:///etc/passwd", "ftp://127.0.0.1/jwks", "https:///jwks"]
)
def test_issuer_config_refuses_a_jwks_url_that_is_not_https(url):
    with pytest.raises(ValueError, match="must be an https:// URL"):
        IssuerConfig(issuer=ISSUER, audiences=("a",), jwks_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:9/jwks"])
def test_issuer_config_allows_plain_http_jwks_only_on_loopback(url):
    assert IssuerConfig(issuer=ISSUER, audiences=("a",), jwks_url=url).jwks_url == url


def test_issuer_config_needs_an_audience():
    with pytest.raises(ValueError, match="audience"):
        IssuerConfig(issuer=ISSUER, audiences=(), jwks_url=JWKS_URL)


def test_issuer_config_accepts_lists_from_settings_and_stores_tuples():
    config = IssuerConfig(issuer=ISSUER, audiences=["a", "b"], jwks_url=JWKS_URL, algorithms=["ES256"])
    assert config.audiences == ("a", "b")
    assert config.algorithms == ("ES256",)
    hash(config)


def test_verifier_refuses_a_pem_that_fits_none_of_the_allowed_algorithms(idt, ec_key):
    config = idt.pem_config(ec_key, algorithms=("RS256",))
    with pytest.raises(ValueError, match="fits none of the allowed algorithms"):
        IdentityVerifier([config], InMemoryReplayGuard())


def test_verifier_refuses_a_private_key_where_a_public_pem_belongs(idt, rsa_key):
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    config = IssuerConfig(issuer=ISSUER, audiences=("a",), public_key_pem=private_pem)
    with pytest.raises(ValueError, match="not a usable PEM public key") as info:
        IdentityVerifier([config], InMemoryReplayGuard())
    assert "PRIVATE KEY" not in str(info.value)


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "symmetric"),
        ("private", "private key material"),
    ],
)
def test_verifier_refuses_a_jwks_file_with_symmetric_or_private_keys(idt, tmp_path, rsa_key, jwk, reason):
    if jwk == "private":
        jwk = {**idt.public_jwk(rsa_key, "k1"), "d": "AQAB"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    config = IssuerConfig(issuer=ISSUER, audiences=("a",), jwks_file=path)
    with pytest.raises(ValueError, match=reason):
        IdentityVerifier([config], InMemoryReplayGuard())


def test_verifier_refuses_an_rsa_key_shorter_than_2048_bits(idt):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="at least 2048"):
        IdentityVerifier([idt.pem_config(weak)], InMemoryReplayGuard())
