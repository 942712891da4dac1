"""Policy bundle through the running broker: forbid ids in decisions, reload refuses a bad bundle."""

from __future__ import annotations

import shutil

import httpx
import pytest
from support.broker import start_broker
from support.wait import HTTP_TIMEOUT

from broker.client import CredentialDenied
from policies import DEFAULT_BUNDLE

pytestmark = pytest.mark.openbao

FORBID_DEMO_DATA = """
@id("forbid-demo-data-reads")
@reason("demo-data is closed for maintenance")
forbid (principal, action, resource == Resource::"demo-data");
"""


@pytest.fixture()
def bundle_broker(openbao, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    running = start_broker(tmp_path / "data", openbao, policy_dir=bundle)
    yield running, bundle
    running.stop()


def _reload(running) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/admin/policies/reload",
        headers={"Authorization": "Bearer test-admin-token-0123456789abcdef"},
        timeout=HTTP_TIMEOUT,
    )


def test_broken_bundle_on_reload_is_refused_and_old_bundle_stays(bundle_broker):
    running, bundle = bundle_broker
    before = running.admin().request("GET", "/v1/admin/policies")["bundle_hash"]
    (bundle / "policies" / "99-broken.cedar").write_text("permit (principal, action, resource)\nwhen { oops };\n")
    r = _reload(running)
    assert r.status_code == 422
    problems = r.json()["problems"]
    assert problems and problems[0]["file"].endswith("99-broken.cedar") and problems[0]["line"] >= 1
    assert running.admin().request("GET", "/v1/admin/policies")["bundle_hash"] == before
    with running.agent().task("demo", "still decided by the old bundle") as task:
        cred = task.credential("db.read", "demo-data")
    assert cred.decision["bundle_hash"] == before and cred.decision["outcome"] == "allow"
    refused = running.admin().audit(kind="policy.reload_refused")
    assert refused and refused[-1]["data"]["problems"][0]["file"].endswith("99-broken.cedar")


def test_forbid_policy_added_on_reload_denies_with_its_id(bundle_broker):
    running, bundle = bundle_broker
    (bundle / "policies" / "50-maintenance.cedar").write_text(FORBID_DEMO_DATA)
    r = _reload(running)
    assert r.status_code == 200 and r.json()["changed"] is True
    with running.agent().task("demo", "blocked") as task, pytest.raises(CredentialDenied) as exc:
        task.credential("db.read", "demo-data")
    decision = exc.value.decision
    assert "forbid-demo-data-reads" in decision["policy_ids"]
    assert decision["bundle_hash"] == r.json()["active_hash"]
    assert any("closed for maintenance" in reason for reason in decision["reasons"])
