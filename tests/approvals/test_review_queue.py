"""The post-action review queue over real HTTP and real OpenBao (issue 3, item 7)."""

from __future__ import annotations

import hvac
import pytest
from support.wait import wait_until

pytestmark = pytest.mark.openbao


def accessor_is_dead(broker, accessor: str) -> bool:
    client = hvac.Client(url=broker.openbao.address, token=broker.openbao.root_token.reveal())
    try:
        client.auth.token.lookup_accessor(accessor)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
        return True
    return False


def write(api, task_id: str) -> dict:
    resp = api.credential(task_id, "db.write", "demo-data")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["decision"]["outcome"], body["decision"]["mode"]) == ("allow", "review")
    return body


def test_allowed_review_mode_action_is_queued_and_can_be_marked_fine_once(api):
    task_id = api.open_task()
    body = write(api, task_id)
    read = api.credential(task_id, "db.read", "demo-data")  # monitor mode: not queued
    assert read.status_code == 200 and read.json()["decision"]["mode"] == "monitor"

    items = api.admin("GET", "/v1/reviews", params={"status": "pending", "task_id": task_id}).json()["items"]
    assert len(items) == 1
    [review] = items
    assert review["decision_id"] == body["decision"]["decision_id"]
    assert (review["agent"], review["action"], review["resource"]) == ("demo-agent", "db.write", "demo-data")
    assert review["grant_id"] == body["credential"]["grant_id"] and review["state"] == "pending"

    # the agent's bound owner may not review its actions, even with the reviewer role
    by_owner = api.as_person("demo-owner", "POST", f"/v1/reviews/{review['review_id']}/fine", {"reason": "mine"})
    assert by_owner.status_code == 403 and by_owner.json()["error"]["code"] == "four_eyes_required"
    # nor may the agent itself, nor a person without the reviewer role
    as_agent = api.agent("POST", f"/v1/reviews/{review['review_id']}/fine", {"reason": "all good"})
    assert as_agent.status_code == 401
    by_approver = api.as_person("alice", "POST", f"/v1/reviews/{review['review_id']}/fine", {"reason": "x"})
    assert by_approver.status_code == 403 and by_approver.json()["error"]["code"] == "role_required"

    fine = api.as_person("dana", "POST", f"/v1/reviews/{review['review_id']}/fine", {"reason": "expected write"})
    assert fine.status_code == 200
    assert (fine.json()["state"], fine.json()["reviewer"]) == ("fine", "person:dana")
    assert fine.json()["reviewer_subject"]["person"] == "dana"
    again = api.as_person("dana", "POST", f"/v1/reviews/{review['review_id']}/flag", {"reason": "hmm"})
    assert again.status_code == 409 and again.json()["error"]["state"] == "fine"
    assert not api.admin("GET", "/v1/reviews", params={"status": "pending", "task_id": task_id}).json()["items"]


def test_flagging_a_review_escalates_the_task_and_revokes_what_it_holds(api, approvals_broker):
    task_id = api.open_task()
    body = write(api, task_id)
    [review] = api.admin("GET", "/v1/reviews", params={"task_id": task_id}).json()["items"]
    flagged = api.as_person("dana", "POST", f"/v1/reviews/{review['review_id']}/flag", {"reason": "wrong table"})
    assert flagged.status_code == 200, flagged.text
    assert flagged.json()["state"] == "flagged"
    assert flagged.json()["escalation"]["task_state"] == "quarantined"

    task = api.admin("GET", f"/v1/admin/tasks/{task_id}").json()
    assert task["task"]["state"] == "quarantined"
    wait_until(
        lambda: accessor_is_dead(approvals_broker, body["credential"]["accessor"]), what="the reviewed grant revoked"
    )
    assert api.credential(task_id, "db.read", "demo-data").status_code == 409
    kinds = [e["kind"] for e in api.admin("GET", "/v1/audit", params={"task_id": task_id}).json()["items"]]
    assert "review.queued" in kinds and "review.flagged" in kinds and "task.escalated" in kinds


def test_review_endpoints_name_bad_fields_and_unknown_ids(api):
    assert api.as_person("dana", "POST", "/v1/reviews/rev_nope/fine", {"reason": "b"}).status_code == 404
    bad = api.as_person("dana", "POST", "/v1/reviews/rev_nope/fine", {})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "reason"
    bad = api.as_person("dana", "POST", "/v1/reviews/rev_nope/fine", {"reviewer": "dana", "reason": "b"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "reviewer"
    bad = api.admin("GET", "/v1/reviews", params={"status": "meh"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
