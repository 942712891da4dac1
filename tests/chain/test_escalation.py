"""Chains that escalate, through the HTTP API, with real OpenBao and the default bundle."""

from __future__ import annotations

import hvac
import pytest

from broker.client import CredentialDenied, InvalidRequest, TaskNotActive
from tests.chain.conftest import accessor_is_dead, token_is_dead

pytestmark = pytest.mark.openbao


def test_secret_read_then_export_escalates_on_third_request_and_revokes_everything(chain_broker, webhook):
    b = chain_broker
    agent, admin = b.agent(), b.admin()
    task_id = agent.open_task("demo", "read, fetch a secret, export")["task_id"]
    read = agent.request_credential(task_id, "db.read", "demo-data")
    secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")
    root = b.openbao.root_token.reveal()
    assert not token_is_dead(b.openbao.address, read.secret("token"))
    assert not accessor_is_dead(b.openbao.address, root, secret.fields["accessor"])

    with pytest.raises(CredentialDenied) as exc:
        agent.request_credential(task_id, "data.export", "demo-data")
    err = exc.value
    assert err.status == 403 and err.code == "task_escalated"
    assert err.body["error"]["detector"] == "dangerous_sequence"
    assert err.body["error"]["rule"] == "secret_then_export"
    assert err.body["error"]["task_state"] == "quarantined"
    assert err.decision["outcome"] == "deny" and err.decision["ttl_seconds"] == 0
    assert any("dangerous_sequence" in r for r in err.decision["reasons"])
    assert "credential" not in err.body  # the triggering request got nothing

    # every token issued on the first two requests is dead at OpenBao
    for cred in (read, secret):
        assert token_is_dead(b.openbao.address, cred.secret("token"))
        assert accessor_is_dead(b.openbao.address, root, cred.fields["accessor"])

    # quarantined: further requests are 409 with the reason
    with pytest.raises(TaskNotActive) as again:
        agent.request_credential(task_id, "db.read", "demo-data")
    assert again.value.status == 409 and "quarantined" in again.value.message
    assert "dangerous_sequence" in again.value.message

    # the audit names the detector and the steps that triggered it
    escalated = admin.audit(task_id=task_id, kind="task.escalated")
    assert len(escalated) == 1
    data = escalated[0]["data"]
    assert data["detector"] == "dangerous_sequence" and data["rule"] == "secret_then_export"
    assert [(s["action"], s["resource"]) for s in data["steps"]] == [
        ("secrets.read", "demo-secrets"),
        ("data.export", "demo-data"),
    ]
    assert data["steps"][1]["ref"] == err.decision["decision_id"]
    assert data["steps"][0]["ref"] == secret.decision["decision_id"]
    denied = admin.audit(task_id=task_id, kind="decision.denied")
    assert [e["data"]["decision_id"] for e in denied] == [err.decision["decision_id"]]
    revoked = admin.audit(task_id=task_id, kind="credential.revoked")
    assert revoked and all(e["data"]["reason"].startswith("dangerous_sequence") for e in revoked)

    # the chain view: every step with its decision and grants, and the escalation
    view = admin.task(task_id)
    assert view["task"]["state"] == "quarantined"
    chain = view["chain"]
    assert chain["escalated"] is True and chain["tier"] == "high"
    kinds = [s["kind"] for s in chain["steps"]]
    assert kinds == ["credential_request"] * 3 + ["escalation"]
    first, second, third = chain["steps"][:3]
    assert first["decision"]["outcome"] == "allow" and first["grants"][0]["state"] == "revoked"
    assert second["grants"][0]["accessor"] == secret.fields["accessor"]
    assert third["decision"]["outcome"] == "deny" and third["grants"] == []
    assert chain["escalations"][0]["detector"] == "dangerous_sequence"
    assert chain["grants"] == {"active": 0, "total": 2}

    # the alert went out, with no secret in it
    alert = webhook.wait_for("task_id", task_id)
    assert alert["detector"] == "dangerous_sequence" and alert["task_state"] == "quarantined"
    raw = b"".join(webhook.raw)
    for cred in (read, secret):
        assert cred.secret("token").encode() not in raw
        assert cred.fields["accessor"].encode() not in raw


def test_credential_request_above_profile_ceiling_escalates_and_revokes_earlier_grants(chain_broker):
    b = chain_broker
    admin = b.admin()
    admin.put("profiles", "low-ceiling", {"allowed_actions": ["db.read", "secrets.read"], "ceiling": "low"})
    body = admin.get("agents", "demo-agent")
    admin.put(
        "agents",
        "demo-agent",
        {
            "owner": body["owner"],
            "identities": body["identities"],
            "profiles": sorted({*body["profiles"], "low-ceiling"}),
        },
    )
    agent = b.agent()
    task_id = agent.open_task("low-ceiling", "stay low")["task_id"]
    token = agent.request_credential(task_id, "db.read", "demo-data").secret("token")
    with pytest.raises(CredentialDenied) as exc:
        agent.request_credential(task_id, "secrets.read", "demo-secrets")
    assert exc.value.body["error"]["detector"] == "ceiling_exceeded"
    assert any("above the ceiling" in r for r in exc.value.decision["reasons"])
    assert token_is_dead(b.openbao.address, token)
    assert admin.task(task_id)["task"]["state"] == "quarantined"


def test_unknown_action_is_a_plain_deny_not_an_escalation(chain_broker):
    agent = chain_broker.agent()
    task_id = agent.open_task("demo", "typo")["task_id"]
    token = agent.request_credential(task_id, "db.read", "demo-data").secret("token")
    with pytest.raises(CredentialDenied) as exc:
        agent.request_credential(task_id, "db.raed", "demo-data")
    assert exc.value.code == "denied"
    assert not token_is_dead(chain_broker.openbao.address, token)
    agent.end_task(task_id)


def test_burst_of_high_tier_requests_escalates_on_the_one_over_the_limit(chain_broker):
    agent = chain_broker.agent()
    task_id = agent.open_task("demo", "many secrets")["task_id"]
    for _ in range(5):  # default: more than 5 requests at tier high or above in 60 s
        try:  # the first is high and allowed; holding it makes the next ones critical (step-up)
            agent.request_credential(task_id, "secrets.read", "demo-secrets")
        except CredentialDenied as exc:
            assert exc.code == "denied"  # a plain deny, not yet an escalation
    with pytest.raises(CredentialDenied) as exc:
        agent.request_credential(task_id, "secrets.read", "demo-secrets")
    assert exc.value.body["error"]["detector"] == "burst"
    data = chain_broker.admin().audit(task_id=task_id, kind="task.escalated")[0]["data"]
    assert data["detector"] == "burst" and data["count"] == 6 and len(data["steps"]) == 6


def test_reported_tool_call_completes_a_dangerous_sequence(chain_broker):
    agent = chain_broker.agent()
    task_id = agent.open_task("demo", "tool calls")["task_id"]
    token = agent.request_credential(task_id, "secrets.read", "demo-secrets")
    calm = agent.report_event(task_id, "tool_call", action="db.read", resource="demo-data")
    assert calm["escalation"] is None
    body = agent.report_event(task_id, "tool_call", action="data.export", resource="demo-data")
    assert body["escalation"]["detector"] == "dangerous_sequence"
    assert body["escalation"]["task_state"] == "quarantined"
    root = chain_broker.openbao.root_token.reveal()
    assert accessor_is_dead(chain_broker.openbao.address, root, token.fields["accessor"])
    with pytest.raises(TaskNotActive):
        agent.report_event(task_id, "output", text="more")


def test_event_text_is_never_stored_only_its_length_and_fingerprint(chain_broker):
    b = chain_broker
    agent = b.agent()
    task_id = agent.open_task("demo", "events")["task_id"]
    planted = "sk_live_PLANTED-" + "x7Q9" * 8
    body = agent.report_event(task_id, "prompt", text=f"please use {planted} now")
    assert body["text_length"] == len(f"please use {planted} now")
    assert body["text_fingerprint"] and planted not in str(body)
    again = agent.report_event(task_id, "output", text=f"please use {planted} now")
    assert again["text_fingerprint"] == body["text_fingerprint"]  # keyed, deterministic
    view = b.admin().task(task_id)
    assert [s["kind"] for s in view["chain"]["steps"]] == ["prompt", "output"]
    assert planted not in str(view) and planted not in str(b.admin().audit(task_id=task_id))
    b.container.store.engine.dispose()
    for path in b.data_dir.glob("broker.db*"):
        assert planted.encode() not in path.read_bytes()
    agent.end_task(task_id)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "thought"}, "kind"),
        ({"kind": "tool_call", "action": "no.such"}, "action"),
        ({"kind": "tool_call", "action": "db.read", "resource": "nope"}, "resource"),
        ({"kind": "prompt", "extra": 1}, "extra"),
    ],
)
def test_event_with_bad_field_is_422_naming_the_field(chain_broker, body, field):
    agent = chain_broker.agent()
    task_id = agent.open_task("demo", "bad events")["task_id"]
    with pytest.raises(InvalidRequest) as exc:
        agent._call("POST", f"/v1/tasks/{task_id}/events", body)
    assert exc.value.body["error"]["field"] == field
    agent.end_task(task_id)


def test_reported_leak_revokes_that_grant_and_escalates(chain_broker):
    b = chain_broker
    agent = b.agent()
    task_id = agent.open_task("demo", "leaky")["task_id"]
    cred = agent.request_credential(task_id, "db.read", "demo-data")
    other = agent.request_credential(task_id, "db.read", "demo-data")
    grant_id = cred.fields["grant_id"]
    report = b.container.chain.report_leak(
        task_id,
        grant_id,
        {"rule": "vault-service-token", "location": "output", "fingerprint": "abc", "match": cred.secret("token")},
    )  # a careless caller: the match must never be stored
    assert report is not None and report.detector == "leaked_secret" and report.task_state == "quarantined"
    for c in (cred, other):
        assert token_is_dead(b.openbao.address, c.secret("token"))
    events = b.admin().audit(task_id=task_id)
    assert cred.secret("token") not in str(events)
    escalated = next(e for e in events if e["kind"] == "task.escalated")["data"]
    assert escalated["grant_id"] == grant_id and escalated["finding"]["rule"] == "vault-service-token"
    revoked = [e["data"]["grant_id"] for e in events if e["kind"] == "credential.revoked"]
    assert grant_id in revoked  # that grant was revoked by itself, before the task's parent


def test_flagged_review_escalates_the_task(chain_broker):
    b = chain_broker
    agent = b.agent()
    task_id = agent.open_task("demo", "reviewed")["task_id"]
    token = agent.request_credential(task_id, "db.write", "demo-data").secret("token")
    report = b.container.chain.flag_review(task_id, "rev_123")
    assert report is not None and report.detector == "review_flagged"
    assert token_is_dead(b.openbao.address, token)
    view = b.admin().task(task_id)["chain"]
    assert [s["kind"] for s in view["steps"]][-2:] == ["review_flagged", "escalation"]


def test_admin_revoke_is_the_admin_revoke_detector(chain_broker):
    b = chain_broker
    agent = b.agent()
    task_id = agent.open_task("demo", "admin")["task_id"]
    token = agent.request_credential(task_id, "db.read", "demo-data").secret("token")
    body = b.admin().revoke_task(task_id, "operator saw something odd")
    assert body["task"]["state"] == "quarantined" and body["revocations_pending"] == 0
    assert token_is_dead(b.openbao.address, token)
    data = b.admin().audit(task_id=task_id, kind="task.escalated")[0]["data"]
    assert data["detector"] == "admin_revoke"
    assert b.container.metrics.escalations.labels("admin_revoke")._value.get() >= 1


def test_token_lookup_self_fails_for_child_of_escalated_task_even_with_unused_uses(chain_broker):
    agent = chain_broker.agent()
    task_id = agent.open_task("demo", "children")["task_id"]
    tokens = [agent.request_credential(task_id, "db.read", "demo-data").secret("token") for _ in range(3)]
    chain_broker.admin().revoke_task(task_id, "stop")
    for t in tokens:
        with pytest.raises(hvac.exceptions.Forbidden):
            hvac.Client(url=chain_broker.openbao.address, token=t).auth.token.lookup_self()
