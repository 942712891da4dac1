"""The whole lifecycle against a running ``nhi-broker up``, with real Terraform: apply, update
in place, replace, drift (changed and deleted outside Terraform), broker validation errors on
the right attribute, import by name, provider errors, destroy."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from support.wait import HTTP_TIMEOUT

pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.openbao]

CONFIG = """
terraform {
  required_providers {
    nhibroker = { source = "nhi-broker/nhibroker" }
  }
}

variable "endpoint" { type = string }
variable "admin_token" {
  type      = string
  sensitive = true
}
variable "agent_description" { default = "v1" }
variable "actions" {
  type    = list(string)
  default = ["db.read"]
}
variable "resource_name" { default = "tf-e2e-data" }
variable "policies" {
  type    = list(string)
  default = ["nhi-demo-data"]
}

provider "nhibroker" {
  endpoint    = var.endpoint
  admin_token = var.admin_token
}

resource "nhibroker_task_profile" "p" {
  name            = "tf-e2e-profile"
  allowed_actions = var.actions
  ceiling         = "high"
}

resource "nhibroker_resource" "r" {
  name        = var.resource_name
  kind        = "vault_token"
  sensitivity = "internal"
  environment = "dev"
  description = "e2e"
  agent_may_hold = false
  vault {
    policies = var.policies
  }
}

resource "nhibroker_agent" "a" {
  name        = "tf-e2e-agent"
  owner       = "platform"
  description = var.agent_description
  profiles    = [nhibroker_task_profile.p.name]
  identity {
    issuer  = "urn:nhi-broker:dev"
    subject = "tf-e2e-agent"
  }
  owner_identity {
    person = "demo-owner"
  }
}
"""


def test_terraform_manages_agents_profiles_and_resources_through_their_whole_lifecycle(broker_up, tf_workspace) -> None:
    started = time.monotonic()
    admin = httpx.Client(
        base_url=broker_up.url, headers={"Authorization": f"Bearer {broker_up.admin_token}"}, timeout=HTTP_TIMEOUT
    )
    tf = tf_workspace(
        files={"main.tf": CONFIG}, variables={"endpoint": broker_up.url, "admin_token": broker_up.admin_token}
    )

    def get(path: str) -> httpx.Response:
        return admin.get(f"/v1/admin/{path}")

    def plan() -> tuple[int, dict[str, str]]:
        result = tf.plan()
        return result.returncode, result.planned_changes()

    # create
    tf.init()
    tf.apply()
    agent = get("agents/tf-e2e-agent").json()
    assert agent["description"] == "v1" and agent["profiles"] == ["tf-e2e-profile"]
    assert agent["identities"][0]["subject"] == "tf-e2e-agent"
    assert agent["owner_identity"] == {"person": "demo-owner"}  # the bound owner (four-eyes)
    assert get("profiles/tf-e2e-profile").json()["allowed_actions"] == ["db.read"]
    assert get("resources/tf-e2e-data").json()["agent_may_hold"] is False  # only the broker uses it
    assert get("resources/tf-e2e-data").json()["vault"] == {"policies": ["nhi-demo-data"]}
    assert plan() == (0, {})

    # change -> update in place
    tf.variables.update(agent_description="v2", actions='["db.read", "db.write"]')
    assert plan() == (2, {"nhibroker_agent.a": "update", "nhibroker_task_profile.p": "update"})
    tf.apply()
    assert get("agents/tf-e2e-agent").json()["description"] == "v2"
    assert sorted(get("profiles/tf-e2e-profile").json()["allowed_actions"]) == ["db.read", "db.write"]
    assert plan() == (0, {})

    # a new name cannot be changed in place -> replace
    tf.variables.update(resource_name="tf-e2e-data-2")
    assert plan() == (2, {"nhibroker_resource.r": "replace"})
    tf.apply()
    assert get("resources/tf-e2e-data").status_code == 404
    assert get("resources/tf-e2e-data-2").status_code == 200

    # drift: changed outside Terraform -> the next plan puts it back
    changed = {k: agent[k] for k in ("owner", "trust_level", "identities", "profiles")}
    resp = admin.put("/v1/admin/agents/tf-e2e-agent", json={**changed, "description": "edited by hand"})
    assert resp.status_code == 200
    assert plan() == (2, {"nhibroker_agent.a": "update"})
    tf.apply()
    assert get("agents/tf-e2e-agent").json()["description"] == "v2"

    # drift: deleted outside Terraform -> the next plan creates it again
    assert admin.delete("/v1/admin/resources/tf-e2e-data-2").status_code == 204
    assert plan() == (2, {"nhibroker_resource.r": "create"})
    tf.apply()
    assert get("resources/tf-e2e-data-2").status_code == 200
    assert plan() == (0, {})

    # the broker's validation error comes back on the attribute it names
    tf.variables.update(policies='["no-such-policy"]')
    failed = tf.run("apply", "-auto-approve", "-input=false", "-json", check=False)
    assert failed.returncode == 1
    [diag] = [d for d in failed.diagnostics() if d["severity"] == "error"]
    assert "HTTP 422" in diag["summary"] and "no-such-policy" in diag["detail"]
    assert "vault.policies" in diag["detail"]
    assert diag["address"] == "nhibroker_resource.r"
    assert "policies" in diag["snippet"]["code"]
    assert get("resources/tf-e2e-data-2").json()["vault"] == {"policies": ["nhi-demo-data"]}
    tf.variables.update(policies='["nhi-demo-data"]')
    assert plan() == (0, {})

    # import by name
    tf.state_rm("nhibroker_agent.a")
    tf.state_rm("nhibroker_resource.r")
    assert plan() == (2, {"nhibroker_agent.a": "create", "nhibroker_resource.r": "create"})
    missing = tf.import_("nhibroker_resource.r", "no-such-resource", check=False)
    assert missing.returncode == 1
    assert 'cannot import resource "no-such-resource": it does not exist in nhi-broker' in missing.output
    tf.import_("nhibroker_agent.a", "tf-e2e-agent")
    tf.import_("nhibroker_resource.r", "tf-e2e-data-2")
    assert plan() == (0, {})

    # destroy
    tf.destroy()
    for path in ("agents/tf-e2e-agent", "profiles/tf-e2e-profile", "resources/tf-e2e-data-2"):
        assert get(path).status_code == 404, path
    assert tf.state_list() == []

    # the admin token never shows in anything Terraform printed
    assert not [r.argv for r in tf.log if broker_up.admin_token in r.output]

    elapsed = time.monotonic() - started
    steps = ", ".join(f"{' '.join(r.argv[:1])} {r.seconds:.1f}s" for r in tf.log)
    print(f"\nterraform lifecycle: {elapsed:.1f}s for {len(tf.log)} terraform runs ({steps})")


def test_provider_error_is_clear_when_the_admin_token_is_wrong(broker_up, tf_workspace) -> None:
    tf = tf_workspace(
        files={"main.tf": CONFIG}, variables={"endpoint": broker_up.url, "admin_token": "not-the-token-0123456789"}
    )
    tf.init()
    result = tf.plan(check=False)
    assert result.returncode == 1
    [diag] = result.diagnostics()
    assert diag["summary"] == "nhibroker: the admin token was rejected"
    assert "admin_token" in diag["detail"]
    assert "not-the-token-0123456789" not in result.output


def test_provider_error_is_clear_when_the_broker_is_unreachable(tf_workspace) -> None:
    from support.ports import free_port

    port = free_port()  # nothing listens there
    tf = tf_workspace(
        files={"main.tf": CONFIG}, variables={"endpoint": f"http://127.0.0.1:{port}", "admin_token": "x" * 20}
    )
    tf.init()
    result = tf.plan(check=False)
    assert result.returncode == 1
    [diag] = result.diagnostics()
    assert diag["summary"] == f"nhibroker: cannot reach nhi-broker at http://127.0.0.1:{port}"
    assert json.dumps(diag)  # a plain diagnostic, no traceback
