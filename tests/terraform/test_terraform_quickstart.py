"""The platform-team-to-agent path: the quickstart example applied with real Terraform against
``nhi-broker up``, an empty second plan, and then the quickstart's own agent obtaining a
credential through the agent API that works at OpenBao."""

from __future__ import annotations

import httpx
import pytest
from support.wait import HTTP_TIMEOUT

pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.openbao]


def test_quickstart_agent_obtains_a_credential_after_terraform_apply(broker_up, tf_workspace) -> None:
    tf = tf_workspace(
        "examples/quickstart", variables={"endpoint": broker_up.url, "admin_token": broker_up.admin_token}
    )
    tf.init()
    tf.apply()
    second = tf.plan()
    assert second.returncode == 0, second.planned_changes()  # nothing left to do

    outputs = {k: v["value"] for k, v in tf.state()["values"]["outputs"].items()}
    assert outputs["agent"] == "quickstart-agent"
    assert outputs["agent_profiles"] == ["quickstart-reporting"]
    assert len(outputs["policy_bundle_hash"]) >= 32

    with httpx.Client(base_url=broker_up.url, timeout=HTTP_TIMEOUT) as api:
        task = api.post(
            "/v1/tasks",
            json={"profile": "quickstart-reporting", "purpose": "nightly report"},
            headers={"Authorization": f"Bearer {broker_up.agent_token('quickstart-agent')}"},
        )
        assert task.status_code == 201, task.text
        task_id = task.json()["task_id"]
        cred = api.post(
            f"/v1/tasks/{task_id}/credentials",
            json={"action": "db.read", "resource": "quickstart-data"},
            headers={"Authorization": f"Bearer {broker_up.agent_token('quickstart-agent')}"},
        )
        assert cred.status_code == 200, cred.json().get("error")
        body = cred.json()
        assert body["decision"]["outcome"] == "allow"
        assert body["credential"]["kind"] == "vault_token"
        token = body["credential"]["token"]

    # the credential is real: OpenBao knows it, with the policy the Terraform resource named
    lookup = httpx.get(
        f"{broker_up.info['openbao_addr']}/v1/auth/token/lookup-self",
        headers={"X-Vault-Token": token},
        timeout=HTTP_TIMEOUT,
    )
    assert lookup.status_code == 200
    assert "nhi-demo-data" in lookup.json()["data"]["policies"]

    tf.destroy()
    auth = {"Authorization": f"Bearer {broker_up.admin_token}"}
    with httpx.Client(base_url=broker_up.url, headers=auth, timeout=HTTP_TIMEOUT) as admin:
        assert admin.get("/v1/admin/agents/quickstart-agent").status_code == 404
