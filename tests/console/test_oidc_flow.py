"""The console's relying party (broker/identity/oidc_login.py) against a real OIDC provider on
loopback: the authorize URL it builds, the code exchange, and each check it adds to the ID token
verification — nonce, client id, issuer — plus the outbound policy on the provider's URLs."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from support.oidc import CONSOLE_CLIENT_ID, CONSOLE_CLIENT_SECRET, OidcProvider

from broker.errors import Unauthenticated, UpstreamUnavailable
from broker.identity import IdentityVerifier, IssuerConfig
from broker.identity.oidc_login import LoginState, OidcCodeFlow
from broker.identity.replay import InMemoryReplayGuard
from broker.netpolicy import OutboundPolicy
from broker.secrets import Secret

REDIRECT = "http://127.0.0.1:9/console/callback"  # never followed: the test reads the provider's redirect


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    p = OidcProvider()
    yield p
    p.stop()


def flow(provider: OidcProvider, *, client_id: str = CONSOLE_CLIENT_ID, loopback: bool = True) -> OidcCodeFlow:
    policy = OutboundPolicy(allow_loopback=loopback)
    config = IssuerConfig(
        issuer=provider.issuer,
        audiences=(CONSOLE_CLIENT_ID, "another-client"),
        jwks_url=f"{provider.issuer}/jwks",
        algorithms=("RS256",),
        require_jti=False,
    )
    return OidcCodeFlow(
        issuer=provider.issuer,
        client_id=client_id,
        client_secret=Secret(CONSOLE_CLIENT_SECRET),
        discovery_url="",
        scopes=["openid", "email"],
        verifier=IdentityVerifier([config], InMemoryReplayGuard(), outbound=policy),
        policy=policy,
    )


def authorize(url: str, subject: str) -> dict[str, str]:
    """Log in at the provider as ``subject``; the query of its redirect back (code, state)."""
    resp = httpx.post(url, data={"sub": subject}, timeout=60)
    assert resp.status_code == 302, resp.text
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["location"]).query).items()}


def logged_in(f: OidcCodeFlow) -> tuple[LoginState, dict[str, str]]:
    """Start a sign-in with ``f`` and log in at the provider as alice: what was kept, what came back."""
    url, kept = f.begin(REDIRECT)
    return kept, authorize(url, "alice@example.test")


def test_the_authorize_url_carries_state_nonce_and_an_s256_challenge_of_the_kept_verifier(provider) -> None:
    url, kept = flow(provider).begin(REDIRECT)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{provider.issuer}/oauth2/authorize?")
    assert query["response_type"] == "code" and query["client_id"] == CONSOLE_CLIENT_ID
    assert query["state"] == kept.state and query["nonce"] == kept.nonce and query["redirect_uri"] == REDIRECT
    digest = hashlib.sha256(kept.verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert query["code_challenge_method"] == "S256" and len(kept.verifier) >= 43
    again = flow(provider).begin(REDIRECT)[1]
    assert len({kept.state, kept.nonce, kept.verifier, again.state, again.nonce, again.verifier}) == 6


def test_a_code_is_exchanged_for_a_verified_identity(provider) -> None:
    f = flow(provider)
    kept, back = logged_in(f)
    identity = f.finish(code=back["code"], returned_state=back["state"], redirect_uri=REDIRECT, kept=kept)
    assert (identity.issuer, identity.subject) == (provider.issuer, "alice@example.test")
    # a code works once
    with pytest.raises(Unauthenticated, match="refused the sign-in code"):
        f.finish(code=back["code"], returned_state=back["state"], redirect_uri=REDIRECT, kept=kept)


def test_a_replayed_id_token_of_another_sign_in_fails_on_the_nonce(provider) -> None:
    f = flow(provider)
    kept, back = logged_in(f)
    other = LoginState(state=kept.state, nonce="a-nonce-of-another-sign-in", verifier=kept.verifier)
    with pytest.raises(Unauthenticated, match="nonce"):
        f.finish(code=back["code"], returned_state=back["state"], redirect_uri=REDIRECT, kept=other)


def test_a_wrong_state_stops_before_the_code_is_spent(provider) -> None:
    f = flow(provider)
    kept, back = logged_in(f)
    with pytest.raises(Unauthenticated, match="state"):
        f.finish(code=back["code"], returned_state="forged", redirect_uri=REDIRECT, kept=kept)
    identity = f.finish(code=back["code"], returned_state=back["state"], redirect_uri=REDIRECT, kept=kept)
    assert identity.subject == "alice@example.test"


def test_an_id_token_for_another_client_is_refused(provider) -> None:
    # the verifier accepts both audiences; the flow insists on its own client id
    kept, back = logged_in(flow(provider, client_id="another-client"))
    answer = httpx.post(
        f"{provider.issuer}/oauth2/token",
        data={"grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT},
        auth=("another-client", CONSOLE_CLIENT_SECRET),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    with pytest.raises(Unauthenticated, match="client"):
        flow(provider).verify_id_token(answer.json()["id_token"], nonce=kept.nonce)


def test_the_outbound_policy_guards_the_providers_urls(provider) -> None:
    with pytest.raises(UpstreamUnavailable, match="cannot reach the issuer"):
        flow(provider, loopback=False).begin(REDIRECT)  # plain http to 127.0.0.1 without allow_loopback
