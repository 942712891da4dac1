"""The credential flow through real HTTP, real OpenBao and a real SQLite store."""

from __future__ import annotations

import hvac
import pytest

from broker.client import CredentialDenied, NotFound, TaskNotActive

pytestmark = pytest.mark.openbao


def lookup_self(broker, token: str) -> dict:
    return hvac.Client(url=broker.openbao.address, token=token).auth.token.lookup_self()["data"]


def token_is_dead(broker, token: str) -> bool:
    try:
        lookup_self(broker, token)
    except hvac.exceptions.Forbidden:
        return True
    return False


def test_low_tier_read_issues_token_scoped_to_resource_policy_with_ttl_within_decision(broker):
    agent = broker.agent()
    with agent.task("demo", purpose="read demo data") as task:
        cred = task.credential("db.read", "demo-data")
        assert cred.decision["outcome"] == "allow"
        assert cred.decision["tier"] == "low" and cred.decision["mode"] == "monitor"
        info = lookup_self(broker, cred.secret("token"))
        assert "nhi-demo-data" in info["policies"]
        assert "nhi-demo-secrets" not in info["policies"]
        assert 0 < info["ttl"] <= cred.decision["ttl_seconds"]
        assert info["meta"]["nhi_task"] == task.task_id and info["meta"]["nhi_action"] == "db.read"
        assert info["renewable"] is False


def test_secret_read_is_inline_high_tier_short_ttl_single_use(broker):
    with broker.agent().task("demo", purpose="fetch a secret") as task:
        cred = task.credential("secrets.read", "demo-secrets")
        assert (cred.decision["outcome"], cred.decision["tier"], cred.decision["mode"]) == ("allow", "high", "inline")
        assert cred.decision["ttl_seconds"] <= 300 and cred.decision["uses"] == 1
        assert cred.fields["num_uses"] == 1
        # single use: the first call consumes it, the next is refused
        client = hvac.Client(url=broker.openbao.address, token=cred.secret("token"))
        client.secrets.kv.v2.read_secret_version(
            path="demo-secrets/example", mount_point="secret", raise_on_deleted_version=True
        )
        with pytest.raises(hvac.exceptions.Forbidden):
            client.secrets.kv.v2.read_secret_version(
                path="demo-secrets/example", mount_point="secret", raise_on_deleted_version=True
            )


def test_payment_on_production_is_critical_and_needs_step_up(broker):
    with broker.agent().task("demo", purpose="charge") as task:
        cred = task.credential("payments.charge", "prod-payments")
    assert cred.decision["tier"] == "critical" and cred.decision["outcome"] == "step_up"
    assert cred.decision["mode"] == "inline"
    assert not cred.issued and not cred.secrets


def test_ending_task_revokes_every_token_it_was_issued(broker):
    agent = broker.agent()
    info = agent.open_task("demo", "two grants")
    tokens = [agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token") for _ in range(3)]
    assert not any(token_is_dead(broker, t) for t in tokens)
    result = agent.end_task(info["task_id"])
    assert result["state"] == "ended" and result["revocations_pending"] == 0
    assert all(token_is_dead(broker, t) for t in tokens)
    view = broker.admin().task(info["task_id"])
    assert {g["state"] for s in view["chain"]["steps"] for g in s["grants"]} == {"revoked"}


def test_child_token_of_revoked_task_cannot_be_renewed(broker):
    agent = broker.agent()
    info = agent.open_task("demo", "renew")
    token = agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token")
    agent.end_task(info["task_id"])
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=broker.openbao.address, token=token).auth.token.renew_self()


def test_credential_request_is_denied_when_action_not_in_profile(broker):
    with broker.agent().task("demo", purpose="x") as task, pytest.raises(CredentialDenied) as exc:
        task.credential("iam.modify", "demo-data")
    assert exc.value.decision["outcome"] == "deny"
    assert any("not allowed by profile" in r for r in exc.value.decision["reasons"])


def test_credential_request_is_denied_when_resource_unknown(broker):
    with broker.agent().task("demo", purpose="x") as task, pytest.raises(CredentialDenied) as exc:
        task.credential("db.read", "no-such-resource")
    assert any("not registered" in r for r in exc.value.decision["reasons"])


def test_credential_request_is_denied_when_tier_exceeds_profile_ceiling(broker):
    admin = broker.admin()
    admin.put("profiles", "low-only", {"allowed_actions": ["db.read", "secrets.read"], "ceiling": "low"})
    agent_body = admin.get("agents", "demo-agent")
    admin.put(
        "agents",
        "demo-agent",
        {"owner": agent_body["owner"], "identities": agent_body["identities"], "profiles": ["demo", "low-only"]},
    )
    with broker.agent().task("low-only", purpose="x") as task:
        assert task.credential("db.read", "demo-data").decision["outcome"] == "allow"
        with pytest.raises(CredentialDenied) as exc:
            task.credential("secrets.read", "demo-secrets")
    assert any("above the ceiling" in r for r in exc.value.decision["reasons"])


def test_task_cannot_be_used_by_another_agent(broker):
    admin = broker.admin()
    admin.put(
        "agents",
        "other-agent",
        {
            "owner": "someone",
            "profiles": ["demo"],
            "identities": [{"issuer": "urn:nhi-broker:dev", "subject": "other-agent"}],
        },
    )
    info = broker.agent().open_task("demo", "mine")
    with pytest.raises(NotFound):
        broker.agent("other-agent").request_credential(info["task_id"], "db.read", "demo-data")


def test_credential_request_is_409_when_task_ended(broker):
    agent = broker.agent()
    info = agent.open_task("demo", "end then ask")
    agent.end_task(info["task_id"])
    with pytest.raises(TaskNotActive) as exc:
        agent.request_credential(info["task_id"], "db.read", "demo-data")
    assert "ended" in exc.value.message


def test_opening_task_under_profile_not_allowed_for_agent_is_403(broker):
    with pytest.raises(CredentialDenied):
        broker.agent().open_task("low-only-nonexistent", "x")


def test_admin_revoke_quarantines_task_and_kills_tokens(broker):
    agent = broker.agent()
    info = agent.open_task("demo", "to be revoked")
    token = agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token")
    body = broker.admin().revoke_task(info["task_id"], "suspicious")
    assert body["task"]["state"] == "quarantined"
    assert token_is_dead(broker, token)
    with pytest.raises(TaskNotActive) as exc:
        agent.request_credential(info["task_id"], "db.read", "demo-data")
    assert "quarantined" in exc.value.message


def test_task_past_lifetime_is_ended_and_revoked_by_worker(broker):
    from sqlalchemy import update

    from broker.store import tables as t
    from broker.store.repo import utcnow

    agent = broker.agent()
    info = agent.open_task("demo", "short-lived")
    token = agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token")
    with broker.container.store.write() as conn:
        conn.execute(update(t.tasks).where(t.tasks.c.task_id == info["task_id"]).values(expires_at=utcnow()))
    broker.revocation_worker.run_once()
    assert broker.admin().task(info["task_id"])["task"]["state"] == "expired"
    assert token_is_dead(broker, token)
