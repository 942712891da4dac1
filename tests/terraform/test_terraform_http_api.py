"""An ``http_api`` resource managed by real Terraform: the ``http`` block (rules as a list of
strings, the KV source checked by the broker) applies, reads back without drift, and a bad rule
comes back as the broker's 422 on the resource."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

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
variable "rules" {
  type    = list(string)
  default = ["GET /v1/customers/* db.read", "POST /v1/charges payments.charge"]
}

provider "nhibroker" {
  endpoint    = var.endpoint
  admin_token = var.admin_token
}

resource "nhibroker_resource" "crm" {
  name        = "tf-crm-api"
  kind        = "http_api"
  sensitivity = "internal"
  environment = "dev"
  http {
    base_url  = "http://127.0.0.1:31999/api"
    auth      = "header"
    auth_name = "X-Api-Key"
    source    = "vault_kv"
    mount     = "secret"
    path      = "demo-kv/api-key"
    field     = "api_key"
    rules     = var.rules
  }
}
"""


def test_terraform_manages_an_http_api_resource_without_drift(broker_up, tf_workspace) -> None:
    admin = httpx.Client(base_url=broker_up.url, headers={"Authorization": f"Bearer {broker_up.admin_token}"})
    tf = tf_workspace(
        files={"main.tf": CONFIG}, variables={"endpoint": broker_up.url, "admin_token": broker_up.admin_token}
    )
    # the provider process runs this checkout's provider code, not an installed copy
    tf.extra_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    tf.init()
    tf.apply()
    got = admin.get("/v1/admin/resources/tf-crm-api").json()
    assert got["kind"] == "http_api"
    assert got["http"]["rules"] == ["GET /v1/customers/* db.read", "POST /v1/charges payments.charge"]
    assert got["http"]["kv_version"] == 2 and got["http"]["auth_name"] == "X-Api-Key"
    assert tf.plan().returncode == 0  # read back without drift

    tf.variables.update(rules='["GET /v1/customers/* crm.read"]')
    failed = tf.run("apply", "-auto-approve", "-input=false", "-json", check=False)
    assert failed.returncode == 1
    [diag] = [d for d in failed.diagnostics() if d["severity"] == "error"]
    assert "HTTP 422" in diag["summary"] and "http.rules[0]" in diag["detail"] and "crm.read" in diag["detail"]
    tf.variables.update(rules='["GET /v1/customers/* db.read", "POST /v1/charges payments.charge"]')
    tf.destroy()
    assert admin.get("/v1/admin/resources/tf-crm-api").status_code == 404
