"""Console sign-in through a real OIDC provider (authorization code + PKCE), sessions, CSRF and
the security headers, over HTTP."""

from __future__ import annotations

import httpx
from support.broker import RunningBroker
from support.oidc import sign_in_steps

from broker.api.console.security import CSP


def test_sign_in_lands_on_approvals_with_a_hardened_session_cookie(console_broker: RunningBroker, sign_in) -> None:
    alice = sign_in("alice")
    page = alice.landing
    assert 'data-person="alice"' in page.text and "approver" in page.text
    assert page.headers["content-security-policy"] == CSP
    assert "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    cookie = next(c for c in alice.http.cookies.jar if c.name == "nhi_console")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "lax"
    # the database keeps only the session id's HMAC
    with console_broker.container.store.engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT id_hash FROM console_sessions")]
    assert cookie.value not in stored and len(stored) >= 1


def test_without_a_session_a_page_redirects_to_sign_in(console_broker: RunningBroker) -> None:
    resp = httpx.get(f"{console_broker.url}/console/approvals", timeout=60)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/console/login?next=%2Fconsole%2Fapprovals"


def test_an_unregistered_subject_is_refused_with_a_clear_page(console_broker: RunningBroker) -> None:
    with httpx.Client(base_url=console_broker.url, timeout=60) as http:
        page = sign_in_steps(http, "mallory@example.test")
        assert page.status_code == 403
        assert "Not a registered person" in page.text and "mallory@example.test" in page.text
        assert not [c for c in http.cookies.jar if c.name == "nhi_console"]
        assert http.get("/console/approvals").status_code == 303  # still signed out
    failed = console_broker.container.audit.events(kind="auth.failed")
    assert any(e.data.get("surface") == "console" and "not registered" in e.data["reason"] for e in failed)


def test_a_callback_with_a_forged_state_is_refused(console_broker: RunningBroker) -> None:
    with httpx.Client(base_url=console_broker.url, timeout=60) as http:
        start = http.get("/console/login")
        granted = http.post(start.headers["location"], data={"sub": "alice@example.test"})
        forged = granted.headers["location"].replace("state=", "state=x")
        resp = http.get(forged)
        assert resp.status_code == 401 and "state" in resp.text
        # and a callback that never started here (no sign-in cookie)
        http.cookies.clear()
        assert http.get(granted.headers["location"]).status_code == 400


def test_a_form_post_without_the_csrf_token_is_refused(sign_in) -> None:
    alice = sign_in("alice")
    no_token = alice.post_form("/console/logout", {}, csrf=False)
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = alice.http.post("/console/logout", data={"csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert alice.http.get("/console/approvals").status_code == 200  # still signed in


def test_sign_out_ends_the_session_for_the_stolen_cookie_too(console_broker: RunningBroker, sign_in) -> None:
    alice = sign_in("alice")
    cookie = next(c for c in alice.http.cookies.jar if c.name == "nhi_console").value
    out = alice.post_form("/console/logout", {})
    assert out.status_code == 303 and out.headers["location"] == "/console/signed-out"
    replay = httpx.get(f"{console_broker.url}/console/approvals", cookies={"nhi_console": cookie}, timeout=60)
    assert replay.status_code == 303  # the old cookie signs nobody in
