"""Step-up approvals over real HTTP, real OpenBao and a real SQLite store (issue 3, item 6).

Approvers are authenticated people (per-person API tokens, tests/approvals/conftest.py); the
four-eyes rule compares authenticated subjects (issue 17, item 1)."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import hvac
import pytest
from sqlalchemy import text
from support.wait import HTTP_TIMEOUT

from broker.store.repo import utcnow

pytestmark = pytest.mark.openbao


def lookup_accessor(broker, accessor: str) -> dict:
    """With the root token, so the single-use grant is not consumed by the check."""
    client = hvac.Client(url=broker.openbao.address, token=broker.openbao.root_token.reveal())
    return client.auth.token.lookup_accessor(accessor)["data"]


def audit_kinds(api, task_id: str) -> list[str]:
    resp = api.admin("GET", "/v1/audit", params={"task_id": task_id})
    return [e["kind"] for e in resp.json()["items"]]


def test_critical_payment_answers_202_with_a_pending_approval_bound_to_the_request(api, approval_webhook):
    task_id = api.open_task()
    resp = api.credential(task_id, "payments.charge", "prod-payments")
    assert resp.status_code == 202
    body = resp.json()
    assert body["credential"] is None
    assert (body["decision"]["outcome"], body["decision"]["tier"]) == ("step_up", "critical")
    approval_id = body["approval_id"]

    pending = api.admin("GET", "/v1/approvals", params={"status": "pending"}).json()["items"]
    [mine] = [a for a in pending if a["approval_id"] == approval_id]
    assert mine["state"] == "pending" and mine["task_id"] == task_id
    assert (mine["agent"], mine["owner"]) == ("demo-agent", "demo-owner")
    assert (mine["action"], mine["resource"], mine["tier"]) == (
        "payments.charge",
        "prod-payments",
        "critical",
    )
    assert mine["decision_id"] == body["decision"]["decision_id"] and len(mine["scope_hash"]) == 64

    hook = approval_webhook.wait_for_approval(approval_id)
    assert hook["event"] == "approval.pending" and hook["task_id"] == task_id
    assert hook["approve"] == f"/v1/approvals/{approval_id}/approve"
    assert hook["url"].endswith(f"/console/approvals/{approval_id}")  # the console page of the approval
    # asking again while it is pending reuses the same approval (no flood of approvals)
    again = api.credential(task_id, "payments.charge", "prod-payments")
    assert again.status_code == 202 and again.json()["approval_id"] == approval_id


def test_approved_payment_is_collected_once_with_the_critical_ttl_and_a_second_collect_is_refused(
    api, approvals_broker
):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    approved = api.approve(approval_id, "alice")
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved" and approved.json()["decided_by"] == "person:alice"
    assert approved.json()["decided_by_subject"]["person"] == "alice"

    first = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert first.status_code == 200, first.text
    decision, cred = first.json()["decision"], first.json()["credential"]
    assert (decision["outcome"], decision["tier"], decision["mode"]) == ("allow", "critical", "inline")
    assert decision["ttl_seconds"] == 120 and decision["uses"] == 1
    info = lookup_accessor(approvals_broker, cred["accessor"])
    assert info["num_uses"] == 1 and 0 < info["ttl"] <= 120
    assert "nhi-prod-payments" in info["policies"]

    second = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert second.status_code == 403
    err = second.json()["error"]
    assert err["code"] == "approval_refused" and "already used" in err["message"]
    assert err["approval_state"] == "collected"

    view = api.admin("GET", f"/v1/approvals/{approval_id}").json()
    assert view["state"] == "collected" and view["grant_id"] == cred["grant_id"]
    assert view["collected_decision_id"] == decision["decision_id"] and view["collect_error"] is None
    # the collection decision records the approval it was made with (replay rebuilds it)
    explained = api.admin("GET", f"/v1/decisions/{decision['decision_id']}").json()
    assert explained["inputs"]["approval_id"] == approval_id and explained["inputs"]["approval_approved"] is True
    kinds = audit_kinds(api, task_id)
    for kind in (
        "approval.requested",
        "approval.approved",
        "approval.consumed",
        "approval.collected",
        "credential.issued",
        "approval.refused",
    ):
        assert kind in kinds, kind


def test_owner_cannot_approve_and_another_approver_completes_four_eyes(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    # demo-owner holds the approver role, but is demo-agent's bound owner
    owner = api.approve(approval_id, "demo-owner")
    assert owner.status_code == 403
    err = owner.json()["error"]
    assert err["code"] == "four_eyes_required" and "owner" in err["message"]
    # the admin token is not a person: it never votes
    by_admin = api.admin("POST", f"/v1/approvals/{approval_id}/approve", {"reason": "bootstrap"})
    assert by_admin.status_code == 403 and by_admin.json()["error"]["code"] == "role_required"
    view = api.admin("GET", f"/v1/approvals/{approval_id}").json()
    assert view["state"] == "pending" and view["votes"] == []

    # still pending: the agent gets 202 again, and nothing is consumed
    waiting = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert waiting.status_code == 202 and waiting.json()["approval_id"] == approval_id
    assert any("not granted yet" in r for r in waiting.json()["decision"]["reasons"])

    # the agent itself never approves: its identity token is not a person's credential
    as_agent = api.agent("POST", f"/v1/approvals/{approval_id}/approve", {"reason": "trust me"})
    assert as_agent.status_code == 401

    done = api.approve(approval_id, "bob")
    assert done.status_code == 200
    assert [v["approver"] for v in done.json()["votes"]] == ["person:bob"]
    assert done.json()["votes"][0]["subject"]["via"] == "person_token"
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 200
    assert "approval.vote_refused" in audit_kinds(api, task_id)


def test_denied_approval_is_refused_with_the_approvers_reason(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.deny(approval_id, "bob", "no such invoice").status_code == 200
    resp = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert resp.status_code == 403
    assert 'denied by "person:bob": no such invoice' in resp.json()["error"]["message"]
    assert api.approve(approval_id, "alice").status_code == 409  # a denial is final


def test_approval_is_bound_to_its_task_action_and_resource(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "alice").status_code == 200
    other_task = api.open_task()
    for tid, action, resource, differs in (
        (task_id, "payments.charge", "demo-data", "resource"),
        (task_id, "db.read", "prod-payments", "action"),
        (other_task, "payments.charge", "prod-payments", "task"),
    ):
        resp = api.credential(tid, action, resource, approval_id)
        assert resp.status_code == 403, resp.text
        msg = resp.json()["error"]["message"]
        assert "approval is bound to a different request" in msg and differs in msg
    # refused attempts do not burn it: the exact request still collects
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 200


def test_approval_does_not_carry_over_when_the_resource_scope_changes(api, approvals_broker):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "alice").status_code == 200
    resource = api.admin("GET", "/v1/admin/resources/prod-payments").json()
    body = {k: resource[k] for k in ("kind", "sensitivity", "environment", "external", "description", "vault")}
    changed = {**body, "vault": {"policies": ["nhi-prod-payments", "nhi-demo-secrets"]}}
    assert api.admin("PUT", "/v1/admin/resources/prod-payments", changed).status_code == 200
    try:
        resp = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
        assert resp.status_code == 403 and "scope" in resp.json()["error"]["message"]
    finally:
        assert api.admin("PUT", "/v1/admin/resources/prod-payments", body).status_code == 200


def test_expired_approval_can_neither_be_approved_nor_collected(api, approvals_broker):
    service = approvals_broker.container.approvals
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "alice").status_code == 200
    service.clock = lambda: utcnow() + timedelta(seconds=601)  # default window: 600 s
    try:
        resp = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
        assert resp.status_code == 403 and "expired" in resp.json()["error"]["message"]
        listed = api.admin("GET", "/v1/approvals", params={"status": "expired"}).json()["items"]
        assert approval_id in [a["approval_id"] for a in listed]
        second = api.step_up(task_id)
        service.clock = lambda: utcnow() + timedelta(seconds=1202)
        assert api.approve(second, "alice").status_code == 409
    finally:
        service.clock = utcnow
    assert "approval.expired" in audit_kinds(api, task_id)


def test_concurrent_collections_of_one_approval_issue_exactly_one_credential(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "alice").status_code == 200
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(
                api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 403, 403, 403]


def test_unknown_approval_is_refused_and_bad_bodies_are_named_in_422(api):
    task_id = api.open_task()
    resp = api.credential(task_id, "payments.charge", "prod-payments", "apr_doesnotexist")
    assert resp.status_code == 403 and "does not exist" in resp.json()["error"]["message"]
    approval_id = api.step_up(task_id)
    bad = api.as_person("alice", "POST", f"/v1/approvals/{approval_id}/approve", {})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "reason"
    # there is no name field any more: a typed approver is refused, whatever it spells
    bad = api.as_person("alice", "POST", f"/v1/approvals/{approval_id}/approve", {"approver": "alice", "reason": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "approver"
    bad = api.admin("GET", "/v1/approvals", params={"status": "maybe"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
    assert api.approve("apr_nope", "alice").status_code == 404
    assert api.http.get("/v1/approvals").status_code == 401
    assert api.admin("GET", f"/v1/approvals/{approval_id}").json()["state"] == "pending"


def test_an_error_looking_up_the_approval_never_yields_a_credential(api, approvals_broker):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "alice").status_code == 200
    engine = approvals_broker.container.store.engine
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE approvals RENAME TO approvals_away"))
    try:
        # its own connection: the server closes a connection after an unexpected error
        with httpx.Client(base_url=approvals_broker.url, timeout=HTTP_TIMEOUT) as http:
            resp = http.post(
                f"/v1/tasks/{task_id}/credentials",
                json={"action": "payments.charge", "resource": "prod-payments", "approval_id": approval_id},
                headers={"Authorization": f"Bearer {approvals_broker.token()}"},
            )
        assert resp.status_code == 500 and "credential" not in resp.json()
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE approvals_away RENAME TO approvals"))
    assert "credential.issued" not in audit_kinds(api, task_id)


def test_approval_stays_consumed_when_the_decision_at_collection_denies(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "alice").status_code == 200
    profile = api.admin("GET", "/v1/admin/profiles/demo").json()
    body = {k: profile[k] for k in ("allowed_actions", "ceiling", "max_lifetime_seconds", "description")}
    assert api.admin("PUT", "/v1/admin/profiles/demo", {**body, "ceiling": "high"}).status_code == 200
    try:
        resp = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
        assert resp.status_code == 403 and resp.json()["decision"]["outcome"] == "deny"
        assert "ceiling" in resp.json()["error"]["message"]
    finally:
        assert api.admin("PUT", "/v1/admin/profiles/demo", body).status_code == 200
    view = api.admin("GET", f"/v1/approvals/{approval_id}").json()
    assert view["state"] == "collected" and view["grant_id"] is None
    # the ceiling detector escalated the task at collection; the failure is kept on the approval
    assert "ceiling" in view["collect_error"]
    assert "approval.collect_failed" in audit_kinds(api, task_id)
    # fail closed: nothing is issued afterwards (the task is quarantined, the approval consumed)
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 409
    assert api.admin("GET", f"/v1/approvals/{approval_id}").json()["state"] == "collected"
