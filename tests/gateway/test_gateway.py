"""The credential-injecting gateway against a real upstream on loopback, real OpenBao and a real
broker: the agent's response never carries the credential, the upstream only ever sees it."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc

import httpx
import pytest
from support.approver import approve, approver_token
from support.broker import ADMIN_TOKEN
from support.ports import free_port
from support.upstream import Upstream
from support.wait import wait_until

pytestmark = pytest.mark.openbao


def audit_text(api, task_id: str) -> str:
    resp = api.admin("GET", "/v1/audit", params={"task_id": task_id, "limit": 1000})
    assert resp.status_code == 200, resp.text
    return resp.text


def test_gateway_get_in_monitor_mode_injects_the_credential_and_the_agent_never_sees_it(api, upstream, api_key):
    task = api.open_task()
    before = len(upstream.received)
    resp = api.call(task, "GET", "crm-api", "/v1/customers/42")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": "42", "name": "Ada Lovelace"}
    assert "X-Internal" not in resp.headers and resp.headers["cache-control"] == "no-store"
    seen = upstream.received[before:]
    assert len(seen) == 1 and seen[0]["path"] == "/api/v1/customers/42"
    assert seen[0]["headers"]["X-Api-Key"] == api_key
    assert "Authorization" not in seen[0]["headers"]  # the agent's own bearer token stays at the broker
    assert api_key not in resp.text and api_key not in json.dumps(dict(resp.headers))
    explained = api.admin("GET", f"/v1/decisions/{resp.headers['x-nhi-decision-id']}")
    assert explained.status_code == 200, explained.text
    assert (explained.json()["outcome"], explained.json()["mode"]) == ("allow", "monitor")
    assert explained.json()["inputs"]["action"] == "db.read"
    # a chain step with method, path template, status and byte counts; no credential in the audit
    view = api.admin("GET", f"/v1/admin/tasks/{task}").json()
    calls = [s for s in view["chain"]["steps"] if s["kind"] == "gateway_call"]
    assert len(calls) == 1
    assert calls[0]["gateway"]["method"] == "GET" and calls[0]["gateway"]["path_template"] == "/v1/customers/*"
    assert calls[0]["gateway"]["status"] == 200 and calls[0]["gateway"]["response_bytes"] > 0
    text = audit_text(api, task)
    assert "gateway.called" in text and api_key not in text


def test_gateway_payment_steps_up_and_after_approval_calls_the_upstream_exactly_once(api, upstream, api_key):
    task = api.open_task()
    charges = upstream.charges
    first = api.call(task, "POST", "pay-api", "/v1/charges", json={"amount": 1200})
    assert first.status_code == 202, first.text
    approval_id = first.json()["approval_id"]
    assert upstream.charges == charges  # nothing was called before approval
    pending = api.call(task, "POST", "pay-api", "/v1/charges", json={"amount": 1200}, approval_id=approval_id)
    assert pending.status_code == 202 and upstream.charges == charges
    approved = approve(api.broker.url, approver_token(api.broker.url, ADMIN_TOKEN), approval_id, "invoice 42")
    assert approved.status_code == 200, approved.text
    done = api.call(task, "POST", "pay-api", "/v1/charges", json={"amount": 1200}, approval_id=approval_id)
    assert done.status_code == 201, done.text
    assert done.json() == {"charged": {"amount": 1200}} and upstream.charges == charges + 1
    assert upstream.received[-1]["headers"]["Authorization"] == f"Bearer {api_key}"
    assert api_key not in done.text
    sent = upstream.received[-1]["body"]
    again = api.call(task, "POST", "pay-api", "/v1/charges", json={"amount": 1200}, approval_id=approval_id)
    assert again.status_code >= 400 and upstream.charges == charges + 1  # the approval is single use
    # the one call is one chain step: method, path template, status and both byte counts
    view = api.admin("GET", f"/v1/admin/tasks/{task}").json()
    [call] = [s["gateway"] for s in view["chain"]["steps"] if s["kind"] == "gateway_call"]
    assert (call["method"], call["path_template"], call["status"]) == ("POST", "/v1/charges", 201)
    assert call["request_bytes"] == len(sent) > 0 and call["response_bytes"] == len(done.content) > 0


def test_gateway_redacts_a_broker_issued_token_in_the_response_and_escalates_the_task(api, upstream):
    # the label names the token's format once the pattern engine has compiled (it compiles in the
    # background at start-up; until then the match is labelled broker-issued-secret, as redacted)
    engine = api.broker.container.scanning.scanner.engine
    if engine is not None:
        engine.start()  # idempotent: the broker started it already
        while not engine.ready and engine.error is None:
            engine.wait(timeout=1)
        assert engine.ready, engine.error
    task = api.open_task()
    resp = api.call(task, "GET", "crm-token-api", "/v1/echo")
    assert resp.status_code == 200, resp.text
    token = upstream.received[-1]["headers"]["Authorization"].removeprefix("Bearer ")
    assert token and token not in resp.text and "[vault-legacy-token:" in resp.text
    assert resp.headers["x-nhi-task-escalated"] == "true"
    assert api.task_state(task) == "quarantined"
    # the token the upstream saw is dead at OpenBao once the task escalated
    dead = httpx.get(f"{api.broker.openbao.address}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token})
    assert dead.status_code == 403
    assert token not in audit_text(api, task)
    # and the task can make no further call
    assert api.call(task, "GET", "crm-token-api", "/v1/customers/1").status_code == 409


def test_gateway_redacts_a_third_party_secret_without_escalating(api):
    task = api.open_task()
    resp = api.call(task, "GET", "crm-api", "/v1/third-party")
    assert resp.status_code == 200, resp.text
    assert "AKIAQWERTYUIOPASDFGH" not in resp.text and resp.headers["x-nhi-redactions"] == "1"  # nhi-broker: allow
    assert "x-nhi-task-escalated" not in resp.headers and api.task_state(task) == "active"


def test_gateway_refuses_a_request_no_rule_maps_to_an_action(api, upstream):
    task = api.open_task()
    before = len(upstream.received)
    resp = api.call(task, "DELETE", "crm-api", "/v1/customers/42")
    assert resp.status_code == 403, resp.text
    assert 'no request rule of resource "crm-api" allows DELETE /v1/customers/42' in resp.json()["error"]["message"]
    assert resp.json()["decision"]["outcome"] == "deny"
    assert api.call(task, "GET", "crm-api", "/v1/orders").status_code == 403
    assert len(upstream.received) == before


@pytest.mark.parametrize(
    ("raw_path", "message"),
    [
        ("/v1/customers/../admin/users", "dot segments"),
        ("/v1/customers/../../../etc/passwd", "dot segments"),
        ("/v1/admin/./users", "dot segments"),
        ("/v1/admin/..;/..;/..;/other", "dot segments"),  # ".." to servlet containers
        ("/v1/admin/%2e%2e/users", "encoded slashes, backslashes, dots"),
        ("/v1/admin/%2E%2e/users", "encoded slashes, backslashes, dots"),
        ("/v1/admin/.%2e/users", "encoded slashes, backslashes, dots"),
        ("/v1/admin/%252e%252e/%252e%252e/other", "once or twice encoded"),
        ("/v1/customers/1%2F..%2F..%2Fadmin", "encoded slashes, backslashes, dots"),
        ("/v1/customers/1%2f..%2f..%2fadmin", "encoded slashes, backslashes, dots"),
        ("/v1/admin/x%5c..%5cother", "encoded slashes, backslashes, dots"),
        ("/http://evil.example/v1/customers/1", "not an absolute URL"),
        ("/v1/admin/http://evil.example/", "not an absolute URL"),
        ("//evil.example/v1/customers/1", "not an absolute URL"),
        ("/v1/customers\\..\\admin", "encoded slashes, backslashes"),
        ("/v1/admin//users", "empty path segments"),
    ],
)
def test_gateway_refuses_a_path_that_could_escape_the_base_url(api, upstream, raw_path, message):
    task = api.open_task()
    before = len(upstream.received)
    status, body = api.raw_call(task, "crm-api", raw_path)
    assert status == 422, body
    assert message in json.loads(body)["error"]["message"]
    assert len(upstream.received) == before  # refused before anything was decided or called


def test_gateway_does_not_follow_a_redirect_to_the_same_host_outside_the_base_path(api, upstream):
    task = api.open_task()
    before = len(upstream.received)
    resp = api.call(task, "GET", "crm-api", "/v1/redirect-local")
    assert resp.status_code == 502, resp.text
    assert "answered 307 redirecting to another location" in resp.json()["error"]["message"]
    assert [r["path"] for r in upstream.received[before:]] == ["/api/v1/redirect-local"]  # /admin/keys: never


def test_gateway_gives_up_on_an_upstream_that_never_answers(api, upstream):
    task = api.open_task()
    resp = api.call(task, "GET", "crm-api", "/v1/hang")
    assert resp.status_code == 503, resp.text
    assert 'upstream of resource "crm-api" did not answer within 3.0s' in resp.json()["error"]["message"]
    view = api.admin("GET", f"/v1/admin/tasks/{task}").json()
    [call] = [s["gateway"] for s in view["chain"]["steps"] if s["kind"] == "gateway_call"]
    assert call["status"] is None and call["error"] == "upstream_unavailable"


def test_gateway_answers_503_for_an_upstream_nobody_listens_on(api, api_key):
    closed = free_port()  # bound by nobody: connection refused
    made = api.admin(
        "PUT",
        "/v1/admin/resources/gone-api",
        {
            "kind": "http_api",
            "sensitivity": "internal",
            "environment": "dev",
            "http": {
                "base_url": f"http://127.0.0.1:{closed}/api",
                "auth": "bearer",
                "source": "vault_kv",
                "mount": "secret",
                "path": "gateway/crm",  # conftest.KV_PATH
                "field": "api_key",
                "rules": ["GET /v1/** db.read"],
            },
        },
    )
    assert made.status_code in (200, 201), made.text
    resp = api.call(api.open_task(), "GET", "gone-api", "/v1/customers/1")
    assert resp.status_code == 503, resp.text
    assert 'upstream of resource "gone-api" cannot be reached (ConnectError)' in resp.json()["error"]["message"]
    assert api_key not in resp.text and str(closed) not in resp.json()["error"]["message"]


def test_gateway_does_not_follow_a_redirect_to_another_host(api, upstream):
    task = api.open_task()
    resp = api.call(task, "GET", "crm-api", "/v1/redirect")
    assert resp.status_code == 502, resp.text
    assert 'redirecting to another host ("example.org")' in resp.json()["error"]["message"]
    assert "does not follow redirects" in resp.json()["error"]["message"]
    # the failed call is a chain step too, with its error and no status
    view = api.admin("GET", f"/v1/admin/tasks/{task}").json()
    [call] = [s["gateway"] for s in view["chain"]["steps"] if s["kind"] == "gateway_call"]
    assert call["status"] is None and call["error"] == "upstream_error" and call["path_template"] == "/v1/redirect"


def test_gateway_cuts_an_oversized_upstream_response_with_a_clear_error(api, upstream: Upstream):
    task = api.open_task()
    resp = api.call(task, "GET", "crm-api", "/v1/big")
    assert resp.status_code == 502, resp.text
    assert "exceeds gateway.max_response_bytes (8192 bytes)" in resp.json()["error"]["message"]
    assert "xxxx" not in resp.text


def test_gateway_answers_404_for_a_resource_of_another_kind(api):
    task = api.open_task()
    resp = api.call(task, "GET", "demo-data", "/v1/customers/1")
    assert resp.status_code == 404 and "is not an http_api resource" in resp.text


def test_ending_the_task_kills_the_dynamic_upstream_token(api, upstream):
    task = api.open_task()
    assert api.call(task, "GET", "crm-token-api", "/v1/customers/7").status_code == 200
    token = upstream.received[-1]["headers"]["Authorization"].removeprefix("Bearer ")
    alive = httpx.get(f"{api.broker.openbao.address}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token})
    assert alive.status_code == 200
    ended = api.http.delete(f"/v1/tasks/{task}", headers=api.agent_headers())
    assert ended.status_code == 200, ended.text
    dead = httpx.get(f"{api.broker.openbao.address}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token})
    assert dead.status_code == 403


def test_the_credential_of_an_http_api_resource_is_never_handed_to_the_agent(api, api_key):
    task = api.open_task()
    resp = api.http.post(
        f"/v1/tasks/{task}/credentials", json={"action": "db.read", "resource": "crm-api"}, headers=api.agent_headers()
    )
    assert resp.status_code == 403, resp.text
    assert "only injected by the gateway" in resp.json()["error"]["message"] and api_key not in resp.text


@pytest.mark.parametrize(("resource", "where"), [("crm-basic-api", "basic"), ("crm-query-api", "query")])
def test_gateway_injects_basic_auth_and_query_credentials_and_never_logs_them(
    api, upstream, api_key, monkeypatch, resource, where
):
    # the broker in this process logs to whatever sys.stderr is when it writes: read its lines here
    logs = io.StringIO()
    monkeypatch.setattr(sys, "stderr", logs)
    task = api.open_task()
    # an agent-supplied parameter of the credential's name is dropped, never forwarded
    resp = api.call(task, "GET", resource, "/v1/customers/9", params={"api_key": "agent-guess", "page": "2"})
    assert resp.status_code == 200, resp.text
    got = upstream.received[-1]
    if where == "basic":
        assert got["headers"]["Authorization"].startswith("Basic ")
        assert got["path"] == "/api/v1/customers/9?api_key=agent-guess&page=2"
    else:
        assert "agent-guess" not in got["path"] and f"api_key={api_key}" in got["path"] and "page=2" in got["path"]
    # the request log line is written once the response is sent
    wait_until(lambda: f"/gateway/{resource}/v1/customers/9" in logs.getvalue(), what="the request log line")
    logged = logs.getvalue()
    assert f"/gateway/{resource}/v1/customers/9" in logged  # the broker's log was captured
    assert api_key not in logged and api_key not in resp.text and api_key not in audit_text(api, task)


def test_gateway_gives_up_on_an_upstream_that_drips_past_the_timeout(api):
    task = api.open_task()
    resp = api.call(task, "GET", "crm-api", "/v1/slow")
    assert resp.status_code == 503, resp.text
    assert 'upstream of resource "crm-api" did not answer within 3.0s' in resp.json()["error"]["message"]


def test_gateway_answers_404_for_another_agents_task_and_records_nothing_there(api, upstream):
    made = api.admin(
        "PUT",
        "/v1/admin/agents/other-agent",
        {
            "owner": "someone",
            "profiles": ["demo"],
            "identities": [{"issuer": "urn:nhi-broker:dev", "subject": "other-agent"}],
        },
    )
    assert made.status_code in (200, 201), made.text
    task = api.open_task()
    before = len(upstream.received)
    other = api.http.get(
        f"/v1/tasks/{task}/gateway/crm-api/v1/nope",
        headers={"Authorization": f"Bearer {api.broker.token('other-agent')}"},
    )
    assert other.status_code == 404, other.text
    assert len(upstream.received) == before and "gateway.refused" not in audit_text(api, task)


def test_no_injected_credential_in_logs_audit_or_responses_across_header_bearer_leak_and_error_paths(
    api, upstream, api_key, monkeypatch
):
    """Every path a credential takes through the gateway, with the broker's log lines captured:
    an injected header, a dynamic bearer token, both echoed back by a careless upstream (leak,
    escalation), a redirect and a timeout. Neither secret may appear in any log line, response or
    audit event."""
    logs = io.StringIO()
    monkeypatch.setattr(sys, "stderr", logs)
    seen: list[str] = []
    tasks: list[str] = []
    answers: list[httpx.Response] = []
    for resource, path in [
        ("crm-api", "/v1/customers/5"),
        ("crm-api", "/v1/echo"),  # the static key echoed: redacted, escalated
        ("crm-token-api", "/v1/echo"),  # a dynamic token echoed
        ("crm-token-api", "/v1/redirect"),
    ]:
        task = api.open_task()
        tasks.append(task)
        answers.append(api.call(task, "GET", resource, path))
        got = upstream.received[-1]["headers"]
        seen.append(got.get("X-Api-Key") or got["Authorization"].removeprefix("Bearer "))
    assert [a.status_code for a in answers] == [200, 200, 200, 502]
    assert answers[1].headers["x-nhi-task-escalated"] == "true" and "broker-issued-secret" in answers[1].text
    assert answers[2].headers["x-nhi-task-escalated"] == "true"
    wait_until(lambda: logs.getvalue().count("/gateway/") >= 4, what="the request log lines")
    secrets = {api_key, *seen}
    assert all(len(s) > 10 for s in secrets)
    logged = logs.getvalue()
    assert "gateway.leak_in_response" in logged  # the leak was logged, by name and count only
    audit = "".join(audit_text(api, t) for t in tasks)
    for secret in secrets:
        assert secret not in logged
        assert secret not in audit
        assert all(secret not in a.text and secret not in json.dumps(dict(a.headers)) for a in answers)


def test_gateway_decodes_a_gzip_response_for_the_scanner_and_the_agent(api, upstream):
    resp = api.call(api.open_task(), "GET", "crm-api", "/v1/gzip")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": "g", "name": "Ada Lovelace"} and "content-encoding" not in resp.headers
    assert upstream.received[-1]["headers"]["Accept-Encoding"] == "gzip, deflate"  # no br/zstd asked for


def test_gateway_cuts_a_gzip_bomb_without_inflating_it_past_the_limit(api, upstream):
    """64 KiB of gzip inflate to 64 MiB. httpx inflates a whole network chunk at once, so counting
    decoded bytes after the fact still held tens of MiB; the gateway inflates at most the limit."""
    task = api.open_task()
    tracemalloc.start()
    try:
        resp = api.call(task, "GET", "crm-api", "/v1/gzip-bomb")  # the broker runs in this process
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 502, resp.text
    assert "exceeds gateway.max_response_bytes (8192 bytes)" in resp.json()["error"]["message"]
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes while cutting a 64 MiB bomb"


def test_gateway_refuses_a_response_in_an_encoding_it_cannot_scan(api):
    resp = api.call(api.open_task(), "GET", "crm-api", "/v1/brotli")
    assert resp.status_code == 502, resp.text
    assert 'answered with unsupported Content-Encoding "br"' in resp.json()["error"]["message"]
