"""Every log line of a request carries its request id and task id (structlog contextvars)."""

from __future__ import annotations

import json

import httpx
import pytest

from broker.logging import configure_logging

pytestmark = pytest.mark.openbao


def _lines(err: str) -> list[dict[str, object]]:
    out = []
    for line in err.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_log_lines_of_an_escalating_credential_request_all_carry_its_request_id_and_task_id(broker, capsys):
    configure_logging("json", "DEBUG")
    agent = broker.agent()
    task_id = agent.open_task("demo", "log context")["task_id"]
    agent.request_credential(task_id, "secrets.read", "demo-secrets")
    capsys.readouterr()  # only the next request's lines from here on
    request_id = "req-test-0123456789"
    response = httpx.post(
        f"{broker.url}/v1/tasks/{task_id}/credentials",
        headers={"Authorization": f"Bearer {broker.token()}", "X-Request-ID": request_id},
        json={"action": "data.export", "resource": "demo-data"},
        timeout=60,
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "task_escalated"
    assert response.headers["x-request-id"] == request_id
    lines = _lines(capsys.readouterr().err)
    mine = [line for line in lines if line.get("request_id") == request_id]
    # the escalation is logged from deep inside the chain service, the access line by the middleware
    events = {line["event"] for line in mine}
    assert {"task.escalated", "request"} <= events, events
    assert all(line.get("task_id") == task_id for line in mine)


def test_a_caller_request_id_that_is_not_a_sane_token_is_replaced(broker):
    response = httpx.get(f"{broker.url}/healthz", headers={"X-Request-ID": "bad id\twith spaces"}, timeout=60)
    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
