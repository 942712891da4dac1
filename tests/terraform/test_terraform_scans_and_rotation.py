"""``nhibroker_scan_job`` and ``nhibroker_managed_secret`` through their whole lifecycle against a
running ``nhi-broker up``, with real Terraform: apply, update in place, replace, drift (changed
and deleted outside Terraform), a broker 422 on the right attribute, import by name, destroy."""

from __future__ import annotations

import time

import httpx
import pytest
from support.wait import HTTP_TIMEOUT

pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.openbao]

HEAD = """
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

provider "nhibroker" {
  endpoint    = var.endpoint
  admin_token = var.admin_token
}
"""

SCAN_JOB = (
    HEAD
    + """
variable "job_name" { default = "tf-e2e-logs" }
variable "scan_dir" { type = string }
variable "every" { default = 3600 }
variable "cron" {
  type    = string
  default = null
}

resource "nhibroker_scan_job" "j" {
  name = var.job_name
  source {
    kind = "files"
    path = var.scan_dir
  }
  schedule {
    every_seconds = var.cron == null ? var.every : null
    cron          = var.cron
  }
}
"""
)

MANAGED_SECRET = (
    HEAD
    + """
variable "kv_path" { default = "apps/tf-e2e/key" }
variable "max_age" { default = 3600 }
variable "length" { default = 40 }

resource "nhibroker_managed_secret" "s" {
  name            = "tf-e2e-key"
  kind            = "kv_generated"
  kv_mount        = "secret"
  kv_path         = var.kv_path
  settings        = jsonencode({ generator = { format = "api_key", prefix = "tf_", length = var.length } })
  max_age_seconds = var.max_age
}
"""
)


def _admin(broker_up) -> httpx.Client:
    return httpx.Client(
        base_url=f"{broker_up.url}/v1/admin",
        timeout=HTTP_TIMEOUT,
        headers={"Authorization": f"Bearer {broker_up.admin_token}"},
    )


def _plan(tf) -> tuple[int, dict[str, str]]:
    result = tf.plan()
    return result.returncode, result.planned_changes()


def _failed_apply_diagnostic(tf) -> dict:
    failed = tf.run("apply", "-auto-approve", "-input=false", "-json", check=False)
    assert failed.returncode == 1
    [diag] = [d for d in failed.diagnostics() if d["severity"] == "error"]
    return diag


def test_terraform_manages_a_scan_job_through_its_whole_lifecycle(broker_up, tf_workspace, tf_sandbox) -> None:
    started = time.monotonic()
    scan_dir = tf_sandbox.base / "scan-me"
    scan_dir.mkdir(exist_ok=True)
    admin = _admin(broker_up)
    tf = tf_workspace(
        files={"main.tf": SCAN_JOB},
        variables={"endpoint": broker_up.url, "admin_token": broker_up.admin_token, "scan_dir": str(scan_dir)},
    )

    tf.init()
    tf.apply()
    job = admin.get("scan-jobs/tf-e2e-logs").json()
    assert job["source"] == {"kind": "files", "path": str(scan_dir)}
    assert job["schedule"] == {"every_seconds": 3600} and job["enabled"] is True
    assert job["on_finding"] == {"broker_issued": "revoke", "managed": "rotate", "alert": True}

    # changed outside Terraform (disabled, on_finding: both left to their defaults by the
    # configuration) and in the configuration (schedule): one update in place puts all right
    edited = admin.put(
        "scan-jobs/tf-e2e-logs",
        json={"schedule": {"every_seconds": 3600}, "on_finding": {"managed": "alert"}, "enabled": False},
    )
    assert edited.status_code == 200
    tf.variables.update(cron="0 3 * * *")
    assert _plan(tf) == (2, {"nhibroker_scan_job.j": "update"})
    tf.apply()
    job = admin.get("scan-jobs/tf-e2e-logs").json()
    assert job["schedule"] == {"cron": "0 3 * * *"} and job["on_finding"]["managed"] == "rotate"
    assert job["enabled"] is True
    assert job["created_at"] < job["updated_at"]  # the same job, replaced in place

    # a new name -> replace
    tf.variables.update(job_name="tf-e2e-logs-2")
    assert _plan(tf) == (2, {"nhibroker_scan_job.j": "replace"})
    tf.apply()
    assert admin.get("scan-jobs/tf-e2e-logs").status_code == 404
    assert admin.get("scan-jobs/tf-e2e-logs-2").status_code == 200

    # the broker's 422 (a cron expression it cannot parse) lands on schedule.cron
    tf.variables.update(cron="61 * * * *")
    diag = _failed_apply_diagnostic(tf)
    assert "HTTP 422" in diag["summary"] and "schedule.cron" in diag["detail"] and "61" in diag["detail"]
    assert diag["address"] == "nhibroker_scan_job.j" and "cron" in diag["snippet"]["code"]
    assert admin.get("scan-jobs/tf-e2e-logs-2").json()["schedule"] == {"cron": "0 3 * * *"}
    tf.variables.update(cron="0 3 * * *")

    # import by name: the configuration matches what the broker holds, nothing to do
    tf.state_rm("nhibroker_scan_job.j")
    tf.import_("nhibroker_scan_job.j", "tf-e2e-logs-2")
    assert _plan(tf) == (0, {})

    # deleted outside Terraform -> the next plan creates it again; destroy copes with it gone
    assert admin.delete("scan-jobs/tf-e2e-logs-2").status_code == 204
    assert _plan(tf) == (2, {"nhibroker_scan_job.j": "create"})
    tf.destroy()
    assert tf.state_list() == []
    assert not [r.argv for r in tf.log if broker_up.admin_token in r.output]
    print(f"\nscan job lifecycle: {time.monotonic() - started:.1f}s for {len(tf.log)} terraform runs")


def test_terraform_manages_a_managed_secret_through_its_whole_lifecycle(broker_up, tf_workspace) -> None:
    started = time.monotonic()
    admin = _admin(broker_up)
    tf = tf_workspace(
        files={"main.tf": MANAGED_SECRET}, variables={"endpoint": broker_up.url, "admin_token": broker_up.admin_token}
    )

    tf.init()
    tf.apply()
    secret = admin.get("managed-secrets/tf-e2e-key").json()
    assert secret["kv"] == {"mount": "secret", "path": "apps/tf-e2e/key"}
    # the broker fills in a default ("field"): no perpetual diff for it
    assert secret["settings"] == {"generator": {"format": "api_key", "length": 40, "prefix": "tf_"}, "field": "value"}
    assert secret["max_age_seconds"] == 3600 and secret["overlap_seconds"] == 0

    # a rotation changes only read-only attributes; a change outside Terraform (overlap) is drift,
    # and max_age changes in place: one update
    assert admin.post("managed-secrets/tf-e2e-key/rotate", json={"reason": "manual"}).status_code == 200
    body = {k: secret[k] for k in ("kind", "kv", "settings", "max_age_seconds")}
    assert admin.put("managed-secrets/tf-e2e-key", json={**body, "overlap_seconds": 600}).status_code == 200
    tf.variables.update(max_age="7200")
    assert _plan(tf) == (2, {"nhibroker_managed_secret.s": "update"})
    tf.apply()
    secret = admin.get("managed-secrets/tf-e2e-key").json()
    assert secret["max_age_seconds"] == 7200 and secret["overlap_seconds"] == 0
    assert secret["state"] == "active" and secret["rotated_at"]  # rotation state kept by the update
    state = {r["address"]: r["values"] for r in tf.state()["values"]["root_module"]["resources"]}
    assert state["nhibroker_managed_secret.s"]["state"] == "active"
    assert state["nhibroker_managed_secret.s"]["next_rotation_at"] == secret["next_rotation_at"]

    # another KV location: the recorded versions belong to the old path -> replace
    tf.variables.update(kv_path="apps/tf-e2e/key-2")
    assert _plan(tf) == (2, {"nhibroker_managed_secret.s": "replace"})
    before = secret
    tf.apply()
    secret = admin.get("managed-secrets/tf-e2e-key").json()
    # a new record: its rotation state starts over (pending; under load the rotation worker may
    # already have made its first rotation, at the new path only)
    assert secret["kv"]["path"] == "apps/tf-e2e/key-2"
    assert secret["state"] == "pending" or (secret["state"] == "active" and secret["rotated_at"] > before["rotated_at"])

    # the broker's 422 on a kind-specific setting lands on settings
    tf.variables.update(length="2")
    diag = _failed_apply_diagnostic(tf)
    assert "HTTP 422" in diag["summary"] and "settings.generator.length" in diag["detail"]
    assert diag["address"] == "nhibroker_managed_secret.s" and "settings" in diag["snippet"]["code"]
    assert admin.get("managed-secrets/tf-e2e-key").json()["settings"]["generator"]["length"] == 40
    tf.variables.update(length="40")

    # import by name: state holds the broker's full settings; a configuration that spells fewer
    # keys shows one update of settings (a no-op at the broker)
    tf.state_rm("nhibroker_managed_secret.s")
    missing = tf.import_("nhibroker_managed_secret.s", "no-such-secret", check=False)
    assert 'cannot import managed secret "no-such-secret"' in missing.output
    tf.import_("nhibroker_managed_secret.s", "tf-e2e-key")
    assert _plan(tf) == (2, {"nhibroker_managed_secret.s": "update"})

    # deleted outside Terraform -> the next plan creates it again; destroy copes with it gone
    assert admin.delete("managed-secrets/tf-e2e-key").status_code == 204
    assert _plan(tf) == (2, {"nhibroker_managed_secret.s": "create"})
    tf.destroy()
    assert tf.state_list() == []
    assert not [r.argv for r in tf.log if broker_up.admin_token in r.output]
    print(f"\nmanaged secret lifecycle: {time.monotonic() - started:.1f}s for {len(tf.log)} terraform runs")
