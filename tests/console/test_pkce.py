"""PKCE checked by the other side: a provider that enforces RFC 7636 (S256) redeems the broker's
codes only with the verifier of the sign-in that asked for them. A code intercepted from one
browser and replayed through another sign-in (its own state, its own verifier) is refused."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker
from support.oidc import CONSOLE_CLIENT_SECRET, OidcProvider, sign_in_steps


@pytest.fixture(scope="module")
def pkce_provider() -> Iterator[OidcProvider]:
    provider = OidcProvider(enforce_pkce=True)
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def pkce_broker(openbao, pkce_provider: OidcProvider, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("pkce-broker"),
        openbao,
        human_issuers=[pkce_provider.human_issuer()],
        console={"cookie_secure": False, "client_secret": CONSOLE_CLIENT_SECRET},
    )
    body = {"roles": ["approver"], "identities": [{"issuer": pkce_provider.issuer, "subject": "alice@example.test"}]}
    resp = httpx.put(
        f"{running.url}/v1/admin/people/alice", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status_code in (200, 201), resp.text
    yield running
    running.stop()


def test_sign_in_works_against_a_provider_that_enforces_pkce(pkce_broker, pkce_provider) -> None:
    assert pkce_provider.pkce is not None
    refused_before = pkce_provider.pkce.refused
    with httpx.Client(base_url=pkce_broker.url, timeout=60) as http:
        landed = sign_in_steps(http, "alice@example.test")
        assert landed.status_code == 200 and 'data-person="alice"' in landed.text
    assert pkce_provider.pkce.refused == refused_before  # the broker's verifier matched its challenge


def test_an_intercepted_code_replayed_through_another_sign_in_is_refused(pkce_broker, pkce_provider) -> None:
    with (
        httpx.Client(base_url=pkce_broker.url, timeout=60) as victim,
        httpx.Client(base_url=pkce_broker.url, timeout=60) as attacker,
    ):
        start = victim.get("/console/login")
        granted = httpx.post(start.headers["location"], data={"sub": "alice@example.test"}, timeout=60)
        stolen = httpx.URL(granted.headers["location"]).params["code"]
        # the attacker's own sign-in: a valid state and sealed cookie, but another verifier
        own = attacker.get("/console/login")
        own_state = httpx.URL(own.headers["location"]).params["state"]
        resp = attacker.get("/console/callback", params={"code": stolen, "state": own_state})
        assert resp.status_code == 401 and "refused the sign-in code" in resp.text
        assert attacker.get("/console/approvals").status_code == 303  # not signed in
    failed = pkce_broker.container.audit.events(kind="auth.failed")
    assert any(e.data.get("surface") == "console" and "sign-in code" in e.data["reason"] for e in failed)


def test_the_provider_refuses_a_code_without_a_verifier_or_with_a_tampered_one(pkce_broker, pkce_provider) -> None:
    """The enforcement the first test relies on: a missing or altered verifier is refused."""
    with httpx.Client(base_url=pkce_broker.url, timeout=60) as http:
        for verifier in (None, "x" * 64):
            start = http.get("/console/login")
            granted = httpx.post(start.headers["location"], data={"sub": "alice@example.test"}, timeout=60)
            code = httpx.URL(granted.headers["location"]).params["code"]
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": f"{pkce_broker.url}/console/callback",
            }
            if verifier is not None:
                form["code_verifier"] = verifier
            answer = httpx.post(
                f"{pkce_provider.issuer}/oauth2/token",
                data=form,
                auth=("nhi-console", CONSOLE_CLIENT_SECRET),
                timeout=60,
            )
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
