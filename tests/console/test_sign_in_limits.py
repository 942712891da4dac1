"""Failed console sign-ins and refused console forms count against the caller's address in the
same budget as bad bearer tokens (``limits.auth_failures_per_minute``; broker/api/limits.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker
from support.oidc import CONSOLE_CLIENT_SECRET, OidcProvider, console_sign_in, sign_in_steps

BUDGET = 3


@pytest.fixture()
def strict_broker(openbao, oidc_provider: OidcProvider, tmp_path) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path,
        openbao,
        human_issuers=[oidc_provider.human_issuer()],
        console={"cookie_secure": False, "client_secret": CONSOLE_CLIENT_SECRET},
        limits={"auth_failures_per_minute": BUDGET},
    )
    body = {"roles": ["approver"], "identities": [{"issuer": oidc_provider.issuer, "subject": "alice@example.test"}]}
    resp = httpx.put(
        f"{running.url}/v1/admin/people/alice", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status_code in (200, 201), resp.text
    yield running
    running.stop()


def _forged_state(http: httpx.Client) -> httpx.Response:
    start = http.get("/console/login")
    granted = http.post(start.headers["location"], data={"sub": "alice@example.test"})
    return http.get(granted.headers["location"].replace("state=", "state=x"))


def test_failed_console_sign_ins_and_csrf_refusals_spend_the_address_failure_budget(
    strict_broker: RunningBroker,
) -> None:
    alice = console_sign_in(strict_broker.url, "alice@example.test")  # a success spends nothing
    try:
        # three failures of three kinds, each answered as usual (the budget is not spent yet)
        assert alice.post_form("/console/logout", {}, csrf=False).status_code == 403  # CSRF
        with httpx.Client(base_url=strict_broker.url, timeout=60) as http:
            assert _forged_state(http).status_code == 401  # a forged state
        with httpx.Client(base_url=strict_broker.url, timeout=60) as http:
            assert sign_in_steps(http, "mallory@example.test").status_code == 403  # unknown subject
        # the address is over budget: the next sign-in, form and even a valid bearer are 429
        with httpx.Client(base_url=strict_broker.url, timeout=60) as http:
            blocked = _forged_state(http)
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
            assert "content-security-policy" in blocked.headers
        refused = alice.post_form("/console/logout", {})
        assert refused.status_code == 429
        admin = httpx.get(
            f"{strict_broker.url}/v1/admin/agents", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        )
        assert admin.status_code == 429
        # reading pages with a live session is not a sign-in: it still works
        assert alice.http.get("/console/approvals").status_code == 200
    finally:
        alice.close()
    failed = strict_broker.container.audit.events(kind="auth.failed")
    reasons = [e.data.get("reason", "") for e in failed if e.data.get("surface") == "console"]
    assert any("state" in r for r in reasons) and any("not registered" in r for r in reasons)
