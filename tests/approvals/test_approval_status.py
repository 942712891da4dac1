"""The agent's approval status (long-poll, not a chain step), collection attempts outside
``burst``, and approvals and reviews cancelled with their task (issue 12, section 4)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from broker.approvals.service import ApprovalService
from broker.identity.dev_issuer import DEV_ISSUER

pytestmark = pytest.mark.openbao


def _until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.02)


def status(
    api, task_id: str, approval_id: str, wait: int | None = None, subject: str = "demo-agent", timeout: float = 60
) -> httpx.Response:
    path = f"/v1/tasks/{task_id}/approvals/{approval_id}" + (f"?wait={wait}" if wait is not None else "")
    return api.http.get(path, headers={"Authorization": f"Bearer {api.broker.token(subject)}"}, timeout=timeout)


def audit(api, task_id: str) -> list[dict[str, Any]]:
    resp = api.admin("GET", "/v1/audit", params={"task_id": task_id})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


def chain_steps(api, task_id: str) -> int:
    resp = api.admin("GET", f"/v1/admin/tasks/{task_id}")
    assert resp.status_code == 200, resp.text
    return int(resp.json()["chain"]["summary"]["steps"])


def test_polling_an_approval_by_repeating_the_request_never_trips_burst(api):
    task_id = api.open_task("collect after approval")
    approval_id = api.step_up(task_id)  # payments.charge: critical, counts toward burst (min_tier high)
    for _ in range(8):  # burst allows 5 requests at high or above within 60 s
        resp = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
        assert resp.status_code == 202, resp.text
        assert resp.json()["approval_id"] == approval_id
    assert api.agent("GET", f"/v1/tasks/{task_id}").json()["state"] == "active"
    assert api.approve(approval_id, "alice").status_code == 200
    collected = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert collected.status_code == 200, collected.text
    assert collected.json()["credential"]["token"]
    assert "task.escalated" not in [e["kind"] for e in audit(api, task_id)]


def test_fresh_requests_still_trip_burst(api):
    task_id = api.open_task("a real burst")
    codes = [api.credential(task_id, "payments.charge", "prod-payments").status_code for _ in range(6)]
    assert codes[:5] == [202] * 5 and codes[5] == 403
    assert api.agent("GET", f"/v1/tasks/{task_id}").json()["state"] == "quarantined"


def test_approval_status_is_pending_then_approved_and_is_not_a_chain_step(api):
    task_id = api.open_task("status")
    approval_id = api.step_up(task_id)
    steps = chain_steps(api, task_id)
    first = status(api, task_id, approval_id)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["state"], body["action"], body["resource"], body["task_id"]) == (
        "pending",
        "payments.charge",
        "prod-payments",
        task_id,
    )
    assert first.headers["cache-control"] == "no-store"
    assert status(api, task_id, approval_id, wait=1).json()["state"] == "pending"  # the wait ran out
    assert api.approve(approval_id, "alice").status_code == 200
    approved = status(api, task_id, approval_id, wait=30).json()
    assert approved["state"] == "approved" and approved["decided_at"] and "next" in approved
    assert chain_steps(api, task_id) == steps  # reading the status added nothing to the chain
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 200
    assert status(api, task_id, approval_id).json()["state"] == "collected"


def test_long_poll_answers_as_soon_as_the_approval_is_denied_here(api, approvals_broker):
    task_id = api.open_task("long-poll, same replica")
    approval_id = api.step_up(task_id)
    signals = approvals_broker.container.approvals.signals
    waiting_before = signals.waiting()
    answer: dict[str, Any] = {}

    def poll() -> None:
        resp = status(api, task_id, approval_id, wait=30)
        answer["body"] = resp.json()
        answer["at"] = time.monotonic()

    thread = threading.Thread(target=poll)
    thread.start()
    _until(lambda: signals.waiting() > waiting_before, "the long-poll is waiting")
    denied_at = time.monotonic()
    assert api.deny(approval_id, "bob", "not this invoice").status_code == 200
    thread.join(timeout=60)
    assert answer["body"]["state"] == "denied" and answer["body"]["reason"] == "not this invoice"
    # woken by the decision, not by the end of the 30 s wait (generous for a loaded machine)
    assert answer["at"] - denied_at < 20


def test_long_poll_sees_a_decision_taken_on_another_replica(api, approvals_broker):
    """Another replica shares the store but not this process's wake-ups: the waiter polls the store."""
    task_id = api.open_task("long-poll, other replica")
    approval_id = api.step_up(task_id)
    c = approvals_broker.container
    # its own in-process signals
    other_replica = ApprovalService(c.store, c.audit, ttl_seconds=600, parties=c.people.parties)
    alice = c.people.authenticate(f"Bearer {api.people.tokens['alice']}", source="test")
    signals = c.approvals.signals
    waiting_before = signals.waiting()
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(status(api, task_id, approval_id, wait=30).json()))
    thread.start()
    _until(lambda: signals.waiting() > waiting_before, "the long-poll is waiting")
    other_replica.approve(approval_id, alice, "approved elsewhere")
    thread.join(timeout=60)
    assert answer["state"] == "approved"


def test_an_agent_sees_only_the_approvals_of_its_own_tasks(api, approvals_broker):
    admin = approvals_broker.admin()
    admin.put(
        "agents",
        "other-agent",
        {"owner": "team-b", "profiles": ["demo"], "identities": [{"issuer": DEV_ISSUER, "subject": "other-agent"}]},
    )
    task_id = api.open_task("victim")
    approval_id = api.step_up(task_id)
    mine = api.open_task("other's own task", subject="other-agent")
    assert status(api, task_id, approval_id, subject="other-agent").status_code == 404
    assert status(api, mine, approval_id, subject="other-agent").status_code == 404
    other_task = api.open_task("same agent, another task")
    assert status(api, other_task, approval_id).status_code == 404
    assert status(api, task_id, "apr_nope").status_code == 404


def test_wait_is_bounded_and_named_when_out_of_range(api):
    task_id = api.open_task("bounds")
    approval_id = api.step_up(task_id)
    for bad in (31, -1, 10**30):
        resp = status(api, task_id, approval_id, wait=bad)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["field"] == "wait"


def test_quarantining_a_task_cancels_its_approvals_and_reviews(api):
    task_id = api.open_task("to be quarantined")
    write = api.credential(task_id, "db.write", "demo-data")  # allowed in review mode: queued
    assert write.status_code == 200 and write.json()["decision"]["mode"] == "review"
    approval_id = api.step_up(task_id)
    revoked = api.admin("POST", f"/v1/admin/tasks/{task_id}/revoke", {"reason": "suspicious"})
    assert revoked.status_code == 200, revoked.text
    body = status(api, task_id, approval_id).json()
    assert body["state"] == "cancelled" and "quarantined" in body["reason"]
    assert api.admin("GET", f"/v1/approvals/{approval_id}").json()["state"] == "cancelled"
    [review] = api.admin("GET", "/v1/reviews", params={"task_id": task_id}).json()["items"]
    assert review["state"] == "cancelled"
    events = audit(api, task_id)
    cancelled = [e for e in events if e["kind"] == "approval.cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["data"]["approval_id"] == approval_id
    assert [e["data"]["review_id"] for e in events if e["kind"] == "review.cancelled"] == [review["review_id"]]
    # a cancelled approval can be neither approved nor collected
    assert api.approve(approval_id, "alice").status_code == 409


def test_ending_a_task_cancels_an_approved_but_uncollected_approval(api):
    task_id = api.open_task("ended before collecting")
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "alice").status_code == 200
    assert api.agent("DELETE", f"/v1/tasks/{task_id}").status_code == 200
    assert status(api, task_id, approval_id).json()["state"] == "cancelled"
    assert "approval.cancelled" in [e["kind"] for e in audit(api, task_id)]
