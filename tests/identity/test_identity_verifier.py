"""IdentityVerifier: which tokens pass, which fail, and what the 401 says."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from broker.errors import Unauthenticated
from broker.identity import IdentityVerifier, InMemoryReplayGuard, IssuerConfig, VerifiedIdentity


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def rsa_verifier(idt: SimpleNamespace, rsa_key: Any, replay_guard: InMemoryReplayGuard) -> IdentityVerifier:
    config = idt.pem_config(rsa_key)
    return IdentityVerifier([config], replay_guard)


def test_valid_token_verifies_to_issuer_subject_claims_and_expiry(idt, rsa_key, rsa_verifier):
    exp = int(time.time()) + 120
    token = idt.sign(rsa_key, "RS256", exp=exp, team="data")

    identity = rsa_verifier.verify(token)

    assert isinstance(identity, VerifiedIdentity)
    assert identity.issuer == idt.ISSUER
    assert identity.subject == "system:serviceaccount:agents:summarizer"
    assert identity.claims["team"] == "data"
    assert identity.jti == identity.claims["jti"]
    assert identity.expires_at == datetime.fromtimestamp(exp, tz=UTC)


def test_token_with_alg_none_is_rejected(idt, rsa_verifier):
    token = forge({"alg": "none", "typ": "JWT"}, idt.claims())
    with pytest.raises(Unauthenticated, match=r"algorithm 'none' is not allowed"):
        rsa_verifier.verify(token)


def test_hs256_token_keyed_with_the_issuers_public_pem_is_rejected(idt, rsa_key, rsa_verifier):
    # The classic key-confusion attack: the public key is public, so an attacker can MAC with it.
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    payload = idt.claims()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(idt.public_pem(rsa_key).encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthenticated, match=r"algorithm 'HS256' is not allowed"):
        rsa_verifier.verify(f"{signing_input}.{b64(mac)}")


def test_hs256_is_rejected_even_when_the_issuer_allows_every_asymmetric_algorithm(idt, rsa_key):
    config = idt.pem_config(rsa_key, algorithms=("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"))
    verifier = IdentityVerifier([config], InMemoryReplayGuard())
    token = jwt.encode(idt.claims(), "a-shared-secret-of-at-least-32-bytes!!", algorithm="HS256")
    with pytest.raises(Unauthenticated, match=r"algorithm 'HS256' is not allowed"):
        verifier.verify(token)


def test_algorithm_outside_the_issuers_allow_list_is_rejected(idt, rsa_key, rsa_verifier):
    token = idt.sign(rsa_key, "RS512")
    with pytest.raises(Unauthenticated, match=r"algorithm 'RS512' is not allowed"):
        rsa_verifier.verify(token)


def test_rs256_token_verifies_against_a_jwks_file(idt, tmp_path: Path, rsa_key, rsa_key_2, replay_guard):
    jwks = {"keys": [idt.public_jwk(rsa_key_2, "old"), idt.public_jwk(rsa_key, "current")]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = IdentityVerifier(
        [IssuerConfig(issuer=idt.ISSUER, audiences=(idt.AUDIENCE,), jwks_file=path, algorithms=("RS256",))],
        replay_guard,
    )

    assert verifier.verify(idt.sign(rsa_key, "RS256", kid="current")).subject
    assert verifier.verify(idt.sign(rsa_key_2, "RS256", kid="old")).subject


def test_token_signed_by_another_key_than_its_kid_names_is_rejected(idt, tmp_path, rsa_key, rsa_key_2):
    path = tmp_path / "jwks.json"
    jwks = {"keys": [idt.public_jwk(rsa_key_2, "old"), idt.public_jwk(rsa_key, "current")]}
    path.write_text(json.dumps(jwks))
    verifier = IdentityVerifier(
        [IssuerConfig(issuer=idt.ISSUER, audiences=(idt.AUDIENCE,), jwks_file=path)], InMemoryReplayGuard()
    )
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        verifier.verify(idt.sign(rsa_key, "RS256", kid="old"))


def test_es256_token_verifies_against_a_pem_even_with_a_kid_header(idt, ec_key, replay_guard):
    config = idt.pem_config(ec_key, algorithms=("ES256",))
    verifier = IdentityVerifier([config], replay_guard)
    assert verifier.verify(idt.sign(ec_key, "ES256", kid="anything")).issuer == idt.ISSUER


def test_eddsa_token_verifies_against_a_pem(idt, ed_key, replay_guard):
    config = idt.pem_config(ed_key)
    verifier = IdentityVerifier([config], replay_guard)
    assert verifier.verify(idt.sign(ed_key, "EdDSA", kid=None)).issuer == idt.ISSUER


def test_token_whose_alg_does_not_fit_the_key_type_is_rejected(idt, ec_key, rsa_key):
    # RS256 is allowed for the issuer, but its key is an EC key: never try to verify with it.
    config = idt.pem_config(ec_key, algorithms=("RS256", "ES256"))
    verifier = IdentityVerifier([config], InMemoryReplayGuard())
    with pytest.raises(Unauthenticated, match="does not match the issuer's signing key"):
        verifier.verify(idt.sign(rsa_key, "RS256"))


def test_token_for_another_audience_is_rejected(idt, rsa_key, rsa_verifier):
    with pytest.raises(Unauthenticated, match="audience is not accepted"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", aud="https://kubernetes.default.svc"))


def test_token_with_one_accepted_audience_among_several_verifies(idt, rsa_key, rsa_verifier):
    assert rsa_verifier.verify(idt.sign(rsa_key, "RS256", aud=["other", idt.AUDIENCE])).subject


def test_token_without_audience_is_rejected(idt, rsa_key, rsa_verifier):
    with pytest.raises(Unauthenticated, match=r"audience|'aud' claim"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", aud=None))


def test_token_from_an_untrusted_issuer_is_rejected(idt, rsa_key, rsa_verifier):
    with pytest.raises(Unauthenticated, match="issuer is not trusted"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", iss="https://evil.example.test"))


def test_token_without_issuer_is_rejected(idt, rsa_key, rsa_verifier):
    with pytest.raises(Unauthenticated, match=r"no issuer \(iss\)"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", iss=None))


def test_token_signed_by_a_trusted_issuers_key_but_claiming_another_trusted_issuer_is_rejected(idt, rsa_key, rsa_key_2):
    issuers = [
        idt.pem_config(rsa_key),
        IssuerConfig(
            issuer="https://ci.example.test", audiences=(idt.AUDIENCE,), public_key_pem=idt.public_pem(rsa_key_2)
        ),
    ]
    verifier = IdentityVerifier(issuers, InMemoryReplayGuard())
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        verifier.verify(idt.sign(rsa_key, "RS256", iss="https://ci.example.test"))


def test_expired_token_is_rejected(idt, rsa_key, rsa_verifier):
    now = int(time.time())
    with pytest.raises(Unauthenticated, match="identity token is expired"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", iat=now - 600, nbf=now - 600, exp=now - 60))


def test_token_expired_within_the_leeway_still_verifies(idt, rsa_key, rsa_verifier):
    now = int(time.time())
    assert rsa_verifier.verify(idt.sign(rsa_key, "RS256", iat=now - 300, nbf=now - 300, exp=now - 10)).subject


def test_token_whose_nbf_is_in_the_future_is_rejected(idt, rsa_key, rsa_verifier):
    now = int(time.time())
    with pytest.raises(Unauthenticated, match="not yet valid"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", nbf=now + 600, exp=now + 900))


def test_token_issued_in_the_future_is_rejected(idt, rsa_key, rsa_verifier):
    now = int(time.time())
    with pytest.raises(Unauthenticated, match="not yet valid"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", iat=now + 600, nbf=None, exp=now + 900))


def test_token_older_than_the_issuers_max_age_is_rejected_even_if_not_expired(idt, rsa_key, replay_guard):
    config = idt.pem_config(rsa_key, max_token_age_seconds=600)
    verifier = IdentityVerifier([config], replay_guard)
    now = int(time.time())
    with pytest.raises(Unauthenticated, match="too old"):
        verifier.verify(idt.sign(rsa_key, "RS256", iat=now - 3600, nbf=now - 3600, exp=now + 3600))


@pytest.mark.parametrize("claim", ["exp", "iat", "sub"])
def test_token_missing_a_required_claim_is_rejected(idt, rsa_key, rsa_verifier, claim):
    with pytest.raises(Unauthenticated, match=f"missing the required '{claim}' claim"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", **{claim: None}))


def test_replayed_jti_is_rejected_on_second_use(idt, rsa_key, rsa_verifier):
    token = idt.sign(rsa_key, "RS256")
    rsa_verifier.verify(token)
    with pytest.raises(Unauthenticated, match=r"already used \(replayed jti\)"):
        rsa_verifier.verify(token)


def test_the_same_jti_from_two_issuers_is_not_a_replay(idt, rsa_key, rsa_key_2):
    issuers = [
        idt.pem_config(rsa_key),
        IssuerConfig(
            issuer="https://ci.example.test", audiences=(idt.AUDIENCE,), public_key_pem=idt.public_pem(rsa_key_2)
        ),
    ]
    verifier = IdentityVerifier(issuers, InMemoryReplayGuard())
    verifier.verify(idt.sign(rsa_key, "RS256", jti="same"))
    verifier.verify(idt.sign(rsa_key_2, "RS256", jti="same", iss="https://ci.example.test"))


def test_concurrent_uses_of_one_token_let_exactly_one_through(idt, rsa_key, rsa_verifier):
    token = idt.sign(rsa_key, "RS256")
    barrier = threading.Barrier(16)

    def attempt(_: int) -> bool:
        barrier.wait()
        try:
            rsa_verifier.verify(token)
            return True
        except Unauthenticated:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(attempt, range(16)))
    assert results.count(True) == 1


def test_token_with_a_bad_signature_does_not_spend_its_jti(idt, rsa_key, rsa_key_2, rsa_verifier):
    forged = idt.sign(rsa_key_2, "RS256", jti="victim-jti")
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        rsa_verifier.verify(forged)
    # The real token with that jti must still verify: an attacker cannot burn jtis.
    assert rsa_verifier.verify(idt.sign(rsa_key, "RS256", jti="victim-jti")).jti == "victim-jti"


def test_token_without_jti_is_rejected_when_the_issuer_requires_jti(idt, rsa_key, rsa_verifier):
    with pytest.raises(Unauthenticated, match="missing the required 'jti' claim"):
        rsa_verifier.verify(idt.sign(rsa_key, "RS256", jti=None))


def test_token_without_jti_verifies_repeatedly_when_issuer_does_not_require_jti(idt, rsa_key, replay_guard):
    config = idt.pem_config(rsa_key, require_jti=False)
    verifier = IdentityVerifier([config], replay_guard)
    token = idt.sign(rsa_key, "RS256", jti=None)
    assert verifier.verify(token).jti is None
    assert verifier.verify(token).jti is None
    assert len(replay_guard) == 0


def test_unknown_kid_in_a_jwks_file_is_rejected(idt, tmp_path, rsa_key, rsa_key_2):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [idt.public_jwk(rsa_key, "k1"), idt.public_jwk(rsa_key_2, "k2")]}))
    verifier = IdentityVerifier(
        [IssuerConfig(issuer=idt.ISSUER, audiences=(idt.AUDIENCE,), jwks_file=path)], InMemoryReplayGuard()
    )
    with pytest.raises(Unauthenticated, match="signing key id is not known"):
        verifier.verify(idt.sign(rsa_key, "RS256", kid="k9"))
    with pytest.raises(Unauthenticated, match=r"no key id \(kid\)"):
        verifier.verify(idt.sign(rsa_key, "RS256", kid=None))


def test_tampered_payload_fails_the_signature_check(idt, rsa_key, rsa_verifier):
    header, _, signature = idt.sign(rsa_key, "RS256").split(".")
    evil = b64(json.dumps(idt.claims(sub="system:serviceaccount:kube-system:admin")).encode())
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        rsa_verifier.verify(f"{header}.{evil}.{signature}")


def test_tampered_signature_is_rejected(idt, rsa_key, rsa_verifier):
    header, payload, signature = idt.sign(rsa_key, "RS256").split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        rsa_verifier.verify(f"{header}.{payload}.{flipped}")


def test_oversized_token_is_rejected_before_parsing(idt, rsa_key, rsa_verifier):
    token = idt.sign(rsa_key, "RS256", padding="x" * 9000)
    with pytest.raises(Unauthenticated, match="identity token is too large"):
        rsa_verifier.verify(token)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b", "a.b.c", "a.b.c.d.e", "ü.ü.ü", "e30.e30.e30"])
def test_malformed_token_is_rejected(rsa_verifier, token):
    with pytest.raises(Unauthenticated, match="identity token"):
        rsa_verifier.verify(token)


def test_token_with_critical_header_extensions_is_rejected(idt, rsa_key, rsa_verifier):
    token = jwt.encode(idt.claims(), rsa_key, algorithm="RS256", headers={"crit": ["exp-ext"], "exp-ext": 1})
    with pytest.raises(Unauthenticated, match=r"critical header|malformed"):  # PyJWT refuses unknown crit too
        rsa_verifier.verify(token)


def test_error_messages_and_logs_never_contain_the_token(idt, rsa_key, rsa_key_2, rsa_verifier, captured_logs):
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    bad_tokens = [
        idt.sign(rsa_key_2, "RS256"),  # wrong key
        idt.sign(rsa_key, "RS256", aud="elsewhere"),
        idt.sign(rsa_key, "RS256", iss="https://evil.example.test"),
        idt.sign(rsa_key, "RS256", exp=now - 3600, iat=now - 4000, nbf=now - 4000),
        idt.sign(rsa_key, "RS256", jti=None),
        idt.sign(rsa_key, "RS512"),
        forge(header, idt.claims(), b"mac"),
        forge({"alg": "none"}, idt.claims()),
        idt.sign(rsa_key, "RS256", padding="y" * 9000),
    ]
    replayed = idt.sign(rsa_key, "RS256")
    rsa_verifier.verify(replayed)
    bad_tokens.append(replayed)

    for token in bad_tokens:
        with pytest.raises(Unauthenticated) as info:
            rsa_verifier.verify(token)
        error = info.value
        rendered = " ".join([str(error), repr(error), json.dumps(error.to_dict())])
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in rendered
        assert error.__cause__ is None
        assert error.__suppress_context__
    logged = json.dumps(captured_logs, default=str)
    for token in bad_tokens:
        assert token.split(".")[1] not in logged


def test_two_issuers_with_the_same_iss_are_refused(idt, rsa_key):
    config = idt.pem_config(rsa_key)
    with pytest.raises(ValueError, match="configured more than once"):
        IdentityVerifier([config, config], InMemoryReplayGuard())
