"""Admin API: idempotent PUT by name, readback of every attribute, field-named validation."""

from __future__ import annotations

import httpx
import pytest
from support.wait import HTTP_TIMEOUT

from broker.client import CredentialDenied, InvalidRequest, NotFound

pytestmark = pytest.mark.openbao


def test_put_agent_creates_then_replaces_and_reads_back_every_attribute(broker):
    admin = broker.admin()
    body = {
        "owner": "team-a",
        "trust_level": "high",
        "description": "reporting bot",
        "identities": [
            {
                "issuer": "urn:nhi-broker:dev",
                "subject": "system:serviceaccount:ns:bot",
                "claims": {"kubernetes.io/namespace": "ns"},
            }
        ],
        "profiles": ["demo"],
    }
    r1 = admin._http.put("/v1/admin/agents/report-bot", json=body)
    assert r1.status_code == 201
    r2 = admin._http.put("/v1/admin/agents/report-bot", json=body)
    assert r2.status_code == 200
    got = admin.get("agents", "report-bot")
    for key, value in body.items():
        assert got[key] == value
    assert got["name"] == "report-bot" and got["created_at"] and got["updated_at"]
    assert "report-bot" in [a["name"] for a in admin.request("GET", "/v1/admin/agents")["items"]]
    admin.delete("agents", "report-bot")
    with pytest.raises(NotFound):
        admin.get("agents", "report-bot")
    with pytest.raises(NotFound):
        admin.delete("agents", "report-bot")


def test_binding_an_agent_to_an_issuer_that_is_not_configured_is_422_naming_the_field(broker):
    body = {
        "owner": "team-a",
        "profiles": ["demo"],
        "identities": [
            {"issuer": "urn:nhi-broker:dev", "subject": "ok-bot"},
            {"issuer": "https://k8s.example", "subject": "system:serviceaccount:ns:bot"},
        ],
    }
    with pytest.raises(InvalidRequest) as exc:
        broker.admin().put("agents", "unbound-bot", body)
    assert exc.value.body["error"]["field"] == "identities[1].issuer"
    assert "https://k8s.example" in exc.value.message and "urn:nhi-broker:dev" in exc.value.message
    with pytest.raises(NotFound):
        broker.admin().get("agents", "unbound-bot")


def test_profile_with_action_outside_catalog_is_422_naming_the_field(broker):
    with pytest.raises(InvalidRequest) as exc:
        broker.admin().put("profiles", "bad", {"allowed_actions": ["db.read", "rm.rf"], "ceiling": "low"})
    assert exc.value.body["error"]["field"] == "allowed_actions[1]"
    assert "rm.rf" in exc.value.message


def test_profile_with_unknown_ceiling_is_422_naming_the_field(broker):
    with pytest.raises(InvalidRequest) as exc:
        broker.admin().put("profiles", "bad", {"allowed_actions": ["db.read"], "ceiling": "extreme"})
    assert exc.value.body["error"]["field"] == "ceiling"


def test_resource_whose_openbao_policy_does_not_exist_is_refused(broker):
    with pytest.raises(InvalidRequest) as exc:
        broker.admin().put(
            "resources",
            "ghost",
            {
                "kind": "vault_token",
                "sensitivity": "internal",
                "environment": "dev",
                "vault": {"policies": ["no-such-policy"]},
            },
        )
    assert exc.value.body["error"]["field"] == "vault.policies"
    assert "does not exist" in exc.value.message


def test_resource_readback_includes_backend_settings(broker):
    admin = broker.admin()
    admin.put(
        "resources",
        "extra-data",
        {
            "kind": "vault_token",
            "sensitivity": "confidential",
            "environment": "staging",
            "external": True,
            "vault": {"policies": ["nhi-demo-data"]},
        },
    )
    got = admin.get("resources", "extra-data")
    assert got["vault"] == {"policies": ["nhi-demo-data"]}
    assert (got["sensitivity"], got["environment"], got["external"]) == ("confidential", "staging", True)


def test_agent_naming_missing_profile_is_422(broker):
    with pytest.raises(InvalidRequest) as exc:
        broker.admin().put("agents", "x", {"owner": "o", "profiles": ["nope"]})
    assert exc.value.body["error"]["field"] == "profiles[0]"


def test_invalid_name_in_path_is_422(broker):
    r = broker.admin()._http.put("/v1/admin/profiles/Bad Name!", json={"allowed_actions": ["db.read"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"


def test_wrong_admin_token_is_401_and_audited(broker):
    r = httpx.get(
        f"{broker.url}/v1/admin/agents", headers={"Authorization": "Bearer wrong-token"}, timeout=HTTP_TIMEOUT
    )
    assert r.status_code == 401
    events = broker.admin().audit(kind="auth.failed")
    assert any("admin token" in e["data"]["reason"] for e in events)
    assert all("wrong-token" not in str(e) for e in events)


def test_deleting_profile_in_use_is_409(broker):
    r = broker.admin()._http.delete("/v1/admin/profiles/demo")
    assert r.status_code == 409


def test_explain_returns_full_decision_record(broker):
    with broker.agent().task("demo", purpose="explain me") as task:
        cred = task.credential("db.read", "demo-data")
    record = broker.admin().decision(cred.decision["decision_id"])
    assert record["outcome"] == "allow" and record["tier"] == "low"
    assert record["inputs"]["action"] == "db.read" and record["inputs"]["resource"] == "demo-data"
    assert record["factors"]["consequence"]["value"] == "read-sensitive"
    assert record["bundle_hash"]


def test_health_ready_and_metrics(broker):
    assert httpx.get(f"{broker.url}/healthz", timeout=HTTP_TIMEOUT).json() == {"status": "ok"}
    ready = httpx.get(f"{broker.url}/readyz", timeout=HTTP_TIMEOUT).json()
    assert ready["ready"] is True and ready["checks"]["backend.vault_token"] == "ok"
    metrics = httpx.get(f"{broker.url}/metrics", timeout=HTTP_TIMEOUT).text
    assert "nhi_revocations_pending" in metrics and "nhi_http_request_seconds" in metrics


def test_openapi_schema_documents_every_contract_path(broker):
    spec = httpx.get(f"{broker.url}/openapi.json", timeout=HTTP_TIMEOUT).json()
    paths = set(spec["paths"])
    for path in (
        "/v1/tasks",
        "/v1/tasks/{task_id}/credentials",
        "/v1/tasks/{task_id}/events",
        "/v1/tasks/{task_id}",
        "/v1/scan",
        "/v1/admin/agents/{name}",
        "/v1/admin/profiles/{name}",
        "/v1/admin/resources/{name}",
        "/v1/admin/tasks/{task_id}",
        "/v1/approvals",
        "/v1/audit",
        "/v1/decisions/{decision_id}",
        "/v1/admin/policies/reload",
        "/v1/admin/scan-jobs/{name}",
        "/v1/findings",
        "/v1/admin/managed-secrets/{name}",
        "/v1/tasks/{task_id}/approvals/{approval_id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/tasks/{task_id}/gateway/{resource}/{path}",
    ):
        assert path in paths, path
    assert httpx.get(f"{broker.url}/docs", timeout=HTTP_TIMEOUT).status_code == 200


def test_a_resource_can_forbid_handing_its_credential_to_the_agent(broker):
    """``agent_may_hold: false``: the credentials endpoint refuses (403, nothing issued); the same
    resource switched back hands out a working token on the next request (the registry cache sees
    the change); an http_api resource can never say yes (422 naming the field)."""
    admin = broker.admin()
    body = {
        "kind": "vault_token",
        "sensitivity": "internal",
        "environment": "dev",
        "vault": {"policies": ["nhi-demo-data"]},
    }
    admin.put("resources", "held-data", body)
    assert admin.get("resources", "held-data")["agent_may_hold"] is True  # the default
    admin.put("resources", "held-data", {**body, "agent_may_hold": False})
    assert admin.get("resources", "held-data")["agent_may_hold"] is False

    agent = broker.agent()
    task = agent.open_task("demo", "read the data")["task_id"]
    with pytest.raises(CredentialDenied) as exc:
        agent.request_credential(task, "db.read", "held-data")
    assert "agent_may_hold: false" in str(exc.value)
    assert admin.task(task)["chain"]["grants"]["total"] == 0  # refused before anything was issued

    admin.put("resources", "held-data", {**body, "agent_may_hold": True})
    cred = agent.request_credential(task, "db.read", "held-data")
    assert admin.task(task)["chain"]["grants"]["total"] == 1
    looked = httpx.get(
        f"{broker.openbao.address}/v1/auth/token/lookup-self",
        headers={"X-Vault-Token": cred.secret("token")},
        timeout=HTTP_TIMEOUT,
    )
    assert looked.status_code == 200

    with pytest.raises(InvalidRequest) as bad:
        admin.put(
            "resources",
            "held-api",
            {
                "kind": "http_api",
                "sensitivity": "internal",
                "environment": "dev",
                "agent_may_hold": True,
                "http": {
                    "base_url": "http://127.0.0.1:9/",
                    "rules": [{"method": "GET", "path": "/*", "action": "db.read"}],
                },
            },
        )
    assert bad.value.body["error"]["field"] == "agent_may_hold"
