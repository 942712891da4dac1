"""Console hardening found by walking it from outside (issue 17): headers on every answer (the
500 too), a bound on live streams per session, a new session at every sign-in, ``next`` only ever
a console path, agent- and person-controlled text escaped."""

from __future__ import annotations

from contextlib import ExitStack

import httpx
from fastapi.testclient import TestClient
from markupsafe import escape
from support.broker import RunningBroker
from support.wait import wait_until

from broker.api.app import create_app
from broker.api.console.routes_queue import STREAMS
from broker.api.console.security import CSP

EVENTS = "/console/approvals/events"


def test_an_internal_error_under_console_still_carries_the_csp_and_no_store(console_broker: RunningBroker) -> None:
    app = create_app(console_broker.container)

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/console/boom", boom)
    app.add_api_route("/v1/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/console/boom")
        assert page.status_code == 500 and "a bug" not in page.text
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        api = client.get("/v1/boom")
        assert api.status_code == 500 and "content-security-policy" not in api.headers


def test_static_files_and_error_answers_carry_the_csp(console_broker: RunningBroker) -> None:
    for path, status in (
        ("/console/static/console.js", 200),
        ("/console/static/missing.js", 404),
        ("/console/no-such-page", 404),
        ("/console/logout", 405),
    ):
        resp = httpx.get(console_broker.url + path, timeout=60)
        assert resp.status_code == status, path
        assert resp.headers["content-security-policy"] == CSP, path
        assert resp.headers["x-frame-options"] == "DENY" and resp.headers["x-content-type-options"] == "nosniff"


def test_a_session_opens_a_bounded_number_of_live_streams(sign_in) -> None:
    alice = sign_in("alice")
    accept = {"Accept": "text/event-stream"}
    with ExitStack() as open_streams:
        for _ in range(STREAMS.per_session):
            stream = open_streams.enter_context(alice.http.stream("GET", EVENTS, headers=accept))
            assert stream.status_code == 200
        refused = alice.http.get(EVENTS, headers=accept)
        assert refused.status_code == 429 and "live approval pages" in refused.text
        assert refused.headers["content-security-policy"] == CSP

    # closed streams give their slots back (the server notices the disconnect within a poll)
    def reopened() -> bool:
        with alice.http.stream("GET", EVENTS, headers=accept) as again:
            return again.status_code == 200

    wait_until(reopened, what="a stream slot to be given back")


def test_a_sign_in_starts_a_new_session_and_ends_the_one_the_browser_held(
    console_broker: RunningBroker, sign_in
) -> None:
    old = sign_in("alice").http.cookies["nhi_console"]
    with httpx.Client(base_url=console_broker.url, timeout=60) as browser:
        start = browser.get("/console/login")  # (signed out: the provider's page)
        browser.cookies.set("nhi_console", old)  # the browser holds a session when the callback comes
        granted = httpx.post(start.headers["location"], data={"sub": "dana@example.test"}, timeout=60)
        back = browser.get(granted.headers["location"])
        assert back.status_code == 303
        new = back.cookies["nhi_console"]
    assert new != old  # a fresh id at every sign-in: nobody can fix it in advance
    stale = httpx.get(f"{console_broker.url}/console/approvals", cookies={"nhi_console": old}, timeout=60)
    assert stale.status_code == 303  # the session the browser held before is over


def test_next_is_only_ever_a_console_path(sign_in) -> None:
    alice = sign_in("alice")
    for hostile in (
        "//evil.example/",
        "https://evil.example/console",
        "/console//evil.example",
        "/console/x?a=//evil.example",
        "/console\\\\evil.example",
        "/v1/admin/agents",
        "javascript:alert(1)",
    ):
        resp = alice.http.get("/console/login", params={"next": hostile})
        assert resp.status_code == 303 and resp.headers["location"] == "/console/approvals", hostile
    ok = alice.http.get("/console/login", params={"next": "/console/tasks?state=active"})
    assert ok.headers["location"] == "/console/tasks?state=active"


XSS = '<script>alert("xss")</script><img src=x onerror=alert(1)>'


def test_agent_and_person_text_is_escaped_on_the_approval_pages_stream_timeline_and_audit(
    console_broker: RunningBroker, agent, sign_in
) -> None:
    """Every place a step-up's free text shows: the purpose and the stated human (agent), the event
    fields an agent reports (action, resource), and a person's deny reason."""
    task_id = agent.open_task(f"pay the invoice {XSS}")
    resp = agent._call(
        "POST", f"/v1/tasks/{task_id}/events", {"kind": "tool_call", "text": XSS, "action": XSS, "resource": XSS}
    )
    assert resp.status_code in (201, 202, 422), resp.text  # refused or recorded: either way never markup
    approval_id = agent.step_up(task_id)
    alice = sign_in("alice")
    with alice.http.stream("GET", EVENTS, headers={"Accept": "text/event-stream"}) as stream:
        fragment = ""
        for line in stream.iter_lines():
            fragment += line + "\n"
            if line == "" and "event: approvals" in fragment:
                break
    denied = alice.post_form(f"/console/approvals/{approval_id}/deny", {"reason": f"no {XSS}"})
    assert denied.status_code == 303, denied.text
    pages = {
        "stream": fragment,
        "approvals": alice.http.get("/console/approvals").text,
        "approval": alice.http.get(f"/console/approvals/{approval_id}").text,
        "task": alice.http.get(f"/console/tasks/{task_id}").text,
        "audit": alice.http.get("/console/audit", params={"task_id": task_id}).text,
    }
    for name, body in pages.items():
        assert "<script>alert" not in body and "<img src=x" not in body, name
    shown = str(escape(XSS))
    assert f"pay the invoice {shown}" in pages["approval"]
    assert f"no {shown}" in pages["approval"]  # the deny reason, as text
