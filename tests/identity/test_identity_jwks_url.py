"""A JWKS URL source against a real HTTP server on 127.0.0.1: caching, rotation, rate limit, outage."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.wait import HTTP_TIMEOUT, wait_until

from broker.errors import Unauthenticated, UpstreamUnavailable
from broker.identity import IdentityVerifier, InMemoryReplayGuard, IssuerConfig
from broker.identity.keys import JWKS_MAX_STALE_SECONDS, RemoteJwks, UnknownKeyId


@pytest.fixture
def url_verifier(idt, jwks_server) -> IdentityVerifier:
    config = IssuerConfig(issuer=idt.ISSUER, audiences=(idt.AUDIENCE,), jwks_url=jwks_server.url)
    return IdentityVerifier([config], InMemoryReplayGuard())


def test_jwks_url_keys_are_fetched_once_and_then_served_from_cache(idt, rsa_key, jwks_server, url_verifier):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    assert jwks_server.requests == 0  # nothing fetched at construction

    for _ in range(5):
        url_verifier.verify(idt.sign(rsa_key, "RS256", kid="k1"))

    assert jwks_server.requests == 1


def test_jwks_url_rotation_to_a_new_kid_is_picked_up_by_one_refetch(idt, rsa_key, rsa_key_2, jwks_server, url_verifier):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    url_verifier.verify(idt.sign(rsa_key, "RS256", kid="k1"))
    assert jwks_server.requests == 1

    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key_2, "k2")]}  # the issuer rotates its key
    identity = url_verifier.verify(idt.sign(rsa_key_2, "RS256", kid="k2"))
    assert identity.subject
    assert jwks_server.requests == 2

    url_verifier.verify(idt.sign(rsa_key_2, "RS256", kid="k2"))  # cached again
    assert jwks_server.requests == 2


def test_unknown_kids_cannot_make_the_broker_hammer_the_jwks_endpoint(idt, rsa_key, jwks_server, url_verifier):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    url_verifier.verify(idt.sign(rsa_key, "RS256", kid="k1"))

    for n in range(20):
        with pytest.raises(Unauthenticated, match="signing key id is not known"):
            url_verifier.verify(idt.sign(rsa_key, "RS256", kid=f"random-{n}"))

    assert jwks_server.requests == 2  # the first fetch, then one forced refetch per cool-down


def test_forced_refetch_is_allowed_again_after_the_cooldown(idt, rsa_key, rsa_key_2, jwks_server, fake_clock):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    source = RemoteJwks(idt.ISSUER, jwks_server.url, cache_seconds=300, refresh_cooldown_seconds=30, clock=fake_clock)
    source.key_for("k1")
    with pytest.raises(UnknownKeyId):
        source.key_for("k2")
    assert jwks_server.requests == 2

    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key_2, "k2")]}
    fake_clock.advance(10)
    with pytest.raises(UnknownKeyId):
        source.key_for("k2")  # still cooling down
    assert jwks_server.requests == 2

    fake_clock.advance(25)
    assert source.key_for("k2").kid == "k2"
    assert jwks_server.requests == 3


def test_jwks_cache_expires_after_jwks_cache_seconds(idt, rsa_key, jwks_server, fake_clock):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    source = RemoteJwks(idt.ISSUER, jwks_server.url, cache_seconds=300, clock=fake_clock)
    source.key_for("k1")
    fake_clock.advance(299)
    source.key_for("k1")
    assert jwks_server.requests == 1

    fake_clock.advance(2)
    source.key_for("k1")
    assert jwks_server.requests == 2


def test_cached_keys_keep_working_through_a_jwks_outage_for_a_bounded_time(
    idt, rsa_key, jwks_server, fake_clock, captured_logs
):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    source = RemoteJwks(idt.ISSUER, jwks_server.url, cache_seconds=300, clock=fake_clock)
    source.key_for("k1")

    jwks_server.status = 503
    fake_clock.advance(301)
    assert source.key_for("k1").kid == "k1"  # stale but still the issuer's last published key

    failures = [e for e in captured_logs if e["event"] == "identity.jwks.refresh_failed"]
    assert failures and failures[-1]["reason"] == "HTTP 503"

    fake_clock.advance(JWKS_MAX_STALE_SECONDS)
    with pytest.raises(UpstreamUnavailable, match="could not be fetched"):
        source.key_for("k1")

    jwks_server.status = 200
    fake_clock.advance(60)
    assert source.key_for("k1").kid == "k1"


def test_unreachable_jwks_on_first_use_is_upstream_unavailable(idt, rsa_key, jwks_server, url_verifier):
    jwks_server.status = 500
    with pytest.raises(UpstreamUnavailable):
        url_verifier.verify(idt.sign(rsa_key, "RS256", kid="k1"))


def test_symmetric_and_private_keys_served_by_a_jwks_url_are_ignored(idt, rsa_key, jwks_server, fake_clock):
    private = {**idt.public_jwk(rsa_key, "priv"), "d": "AQAB"}
    jwks_server.jwks = {
        "keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, private, idt.public_jwk(rsa_key, "k1")]
    }
    source = RemoteJwks(idt.ISSUER, jwks_server.url, cache_seconds=300, clock=fake_clock)
    assert source.key_for("k1").kid == "k1"
    for kid in ("hmac", "priv"):
        with pytest.raises(UnknownKeyId):
            source.key_for(kid)


def test_concurrent_verifies_on_a_cold_cache_fetch_the_jwks_once(idt, rsa_key, jwks_server, url_verifier):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    tokens = [idt.sign(rsa_key, "RS256", kid="k1") for _ in range(16)]
    barrier = threading.Barrier(16)

    def verify(token: str) -> str:
        barrier.wait()
        return url_verifier.verify(token).subject

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert len(list(pool.map(verify, tokens))) == 16
    assert jwks_server.requests == 1


def test_slow_jwks_refresh_does_not_stall_verifications_that_have_cached_keys(idt, rsa_key, jwks_server, fake_clock):
    jwks_server.jwks = {"keys": [idt.public_jwk(rsa_key, "k1")]}
    source = RemoteJwks(idt.ISSUER, jwks_server.url, cache_seconds=300, clock=fake_clock, timeout_seconds=HTTP_TIMEOUT)
    source.key_for("k1")
    fake_clock.advance(301)
    jwks_server.hold = threading.Event()  # the server answers only when the test lets it

    refresher = threading.Thread(target=source.key_for, args=("k1",))
    refresher.start()
    try:
        wait_until(lambda: jwks_server.requests >= 2, what="the scheduled refresh in flight")
        assert source.key_for("k1").kid == "k1"
        # answered from the cache while the refresh is still held by the server
        assert refresher.is_alive()
    finally:
        jwks_server.hold.set()
        refresher.join(timeout=HTTP_TIMEOUT)
    assert jwks_server.requests == 2
