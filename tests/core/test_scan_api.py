"""POST /v1/scan: findings and redaction; a broker-issued secret seen anywhere escalates its task."""

from __future__ import annotations

import secrets
import string

import httpx
import hvac
import pytest
from support.wait import HTTP_TIMEOUT

pytestmark = pytest.mark.openbao


def _scan(broker, text: str, agent: str = "demo-agent") -> dict:
    r = httpx.post(
        f"{broker.url}/v1/scan",
        json={"text": text},
        headers={"Authorization": f"Bearer {broker.token(agent)}"},
        timeout=HTTP_TIMEOUT,
    )
    r.raise_for_status()
    return r.json()


def test_scan_finds_provider_secret_and_redacts_it(broker):
    key = "sk_live_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
    body = _scan(broker, f"please charge with {key} today")
    assert [f["rule"] for f in body["findings"]] == ["stripe-live-secret-key"]
    f = body["findings"][0]
    assert key not in body["redacted_text"] and "stripe-live-secret-key" in body["redacted_text"]
    assert body["redacted_text"].startswith("please charge with ") and body["redacted_text"].endswith(" today")
    assert key not in str(body)
    assert f["fingerprint"] and len(f["fingerprint"]) == 32


def test_scan_of_clean_text_finds_nothing(broker):
    digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    body = _scan(broker, f"deploy finished in 42s, sha256 {digest}")
    assert body["findings"] == [] and body["leaks"] == []


def test_broker_issued_token_seen_in_scan_escalates_its_task(broker):
    agent = broker.agent()
    info = agent.open_task("demo", "will leak")
    token = agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token")
    body = _scan(broker, f"tool output: VAULT_TOKEN={token} done")
    assert body["leaks"] == [{"action": "task_escalated"}]
    finding = next(f for f in body["findings"] if f["grant"])
    assert finding["grant"]["task_id"] == info["task_id"]
    assert token not in str(body)
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=broker.openbao.address, token=token).auth.token.lookup_self()
    view = broker.admin().task(info["task_id"])
    assert view["task"]["state"] == "quarantined"
    escalated = broker.admin().audit(task_id=info["task_id"], kind="task.escalated")
    assert escalated and escalated[-1]["data"]["detector"] == "leaked_secret"


def test_other_agents_grant_is_named_only_as_broker_issued(broker):
    admin = broker.admin()
    admin.put(
        "agents",
        "scanner-bot",
        {
            "owner": "sec",
            "profiles": ["demo"],
            "identities": [{"issuer": "urn:nhi-broker:dev", "subject": "scanner-bot"}],
        },
    )
    agent = broker.agent()
    info = agent.open_task("demo", "leak seen by another agent")
    token = agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token")
    body = _scan(broker, token, agent="scanner-bot")
    assert body["findings"][0]["grant"] == {"issued_by_broker": True}
    assert broker.admin().task(info["task_id"])["task"]["state"] == "quarantined"


def test_scan_rejects_oversized_text_naming_the_field(broker):
    r = httpx.post(
        f"{broker.url}/v1/scan",
        json={"text": "a" * (1_048_576 + 1)},
        headers={"Authorization": f"Bearer {broker.token()}"},
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "text"


def test_event_text_with_broker_issued_token_revokes_and_escalates(broker):
    agent = broker.agent()
    info = agent.open_task("demo", "echoes its token")
    token = agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token")
    body = agent.report_event(info["task_id"], "output", text=f"I used the token {token} to read the data")
    assert body["leaks"] == [{"action": "task_escalated"}]
    assert [f["rule"] for f in body["findings"] if f["grant"]] and token not in str(body)
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=broker.openbao.address, token=token).auth.token.lookup_self()
    assert broker.admin().task(info["task_id"])["task"]["state"] == "quarantined"
    audit = broker.admin().audit(task_id=info["task_id"])
    assert token not in str(audit)
    assert any(e["kind"] == "task.escalated" and e["data"]["detector"] == "leaked_secret" for e in audit)


def test_event_text_with_foreign_secret_is_reported_redacted_without_escalation(broker):
    agent = broker.agent()
    with agent.task("demo", "prompt contains a key") as task:
        key = "sk_live_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
        body = task.event("prompt", text=f"use {key} for billing")
        assert [f["rule"] for f in body["findings"]] == ["stripe-live-secret-key"]
        assert body["leaks"] == [] and key not in str(body)
        assert broker.admin().task(task.task_id)["task"]["state"] == "active"


def test_scan_engine_compiles_at_start_up_and_then_finds_what_only_it_knows(broker):
    """The runner starts the Kingfisher compile in the background; once ready, POST /v1/scan finds
    a Sidekiq Enterprise credential (a format the broker's own rules do not have)."""
    import time

    engine = broker.container.scanning.scanner.engine
    assert engine is not None
    deadline = time.monotonic() + 600
    while not engine.ready and time.monotonic() < deadline:
        engine.wait(timeout=1)
    assert engine.ready, engine.error
    cred = (
        "".join(secrets.choice("0123456789abcdef") for _ in range(8))
        + ":"
        + "".join(secrets.choice("0123456789abcdef") for _ in range(8))
    )
    body = _scan(broker, f"BUNDLE_ENTERPRISE__CONTRIBSYS__COM={cred}\n")
    assert [f["rule"] for f in body["findings"]] == ["betterleaks.sidekiq-secret"]
    assert cred not in str(body)
