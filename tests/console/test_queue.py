"""Approvals and reviews in the console over HTTP (signed in through the real OIDC flow): the
context shown, approve/deny with a required reason, four-eyes on the signed-in subject, an auditor
who reads and cannot change anything, reviews marked fine or flagged, and the SSE feed."""

from __future__ import annotations

import httpx
import pytest
from support.broker import RunningBroker

pytestmark = pytest.mark.openbao


def test_an_approver_approves_with_a_reason_and_the_agent_collects_once(sign_in, agent, console_broker) -> None:
    task_id = agent.open_task("pay invoice 4711")
    approval_id = agent.step_up(task_id)
    alice = sign_in("alice")
    listing = alice.http.get("/console/approvals")
    assert f'data-approval="{approval_id}"' in listing.text
    page = alice.http.get(f"/console/approvals/{approval_id}")
    assert page.status_code == 200
    for shown in ("demo-agent", "payments.charge", "prod-payments", "critical", "owner", "What the credential grants"):
        assert shown in page.text, shown
    assert 'id="approve"' in page.text and 'id="approve" disabled' not in page.text

    no_reason = alice.post_form(f"/console/approvals/{approval_id}/approve", {"reason": "  "})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    done = alice.post_form(f"/console/approvals/{approval_id}/approve", {"reason": "invoice 4711 checked"})
    assert done.status_code == 303
    after = alice.http.get(done.headers["location"])
    assert 'id="approval-state">approved' in after.text and "person:alice" in after.text

    first = agent.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert first.status_code == 200, first.text
    again = agent.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert again.status_code != 200  # collected once
    [event] = [e for e in console_broker.container.audit.events(kind="approval.approved", task_id=task_id)]
    assert event.actor == "person:alice"
    assert event.data["subject"]["via"] == "oidc" and event.data["subject"]["subject"] == "alice@example.test"


@pytest.mark.parametrize("typed", ["demo-owner", "Demo-Owner", "demo\u2010owner", "DEMO-OWNER"])
def test_the_owner_cannot_approve_whatever_name_a_form_carries(sign_in, agent, typed: str) -> None:
    approval_id = agent.step_up(agent.open_task())
    owner = sign_in("demo-owner")
    page = owner.http.get(f"/console/approvals/{approval_id}")
    assert 'id="approve" disabled' in page.text and 'id="own-warning"' in page.text
    assert 'name="approver"' not in page.text and 'name="name"' not in page.text  # no name field exists
    # the server refuses too, whatever name fields a crafted form adds
    forced = owner.post_form(
        f"/console/approvals/{approval_id}/approve",
        {"reason": "mine, trust me", "approver": typed, "decided_by": typed, "name": typed},
    )
    assert forced.status_code == 403 and "four" in forced.text.lower()
    assert 'id="approval-state">pending' in owner.http.get(f"/console/approvals/{approval_id}").text


def test_an_auditor_reads_everything_and_changes_nothing(sign_in, agent) -> None:
    task_id = agent.open_task()
    approval_id = agent.step_up(task_id)
    write = agent.credential(task_id, "db.write", "demo-data")
    assert write.status_code == 200 and write.json()["decision"]["mode"] == "review"
    audra = sign_in("audra")
    assert f'data-approval="{approval_id}"' in audra.http.get("/console/approvals").text
    page = audra.http.get(f"/console/approvals/{approval_id}")
    assert page.status_code == 200 and 'id="no-role"' in page.text and 'id="approve" disabled' in page.text
    refused = audra.post_form(f"/console/approvals/{approval_id}/approve", {"reason": "looks fine"})
    assert refused.status_code == 403 and "approver" in refused.text
    assert audra.post_form(f"/console/approvals/{approval_id}/deny", {"reason": "no"}).status_code == 403
    reviews = audra.http.get("/console/reviews").text
    review_id = reviews.split('data-review="', 1)[1].split('"', 1)[0]
    assert audra.post_form(f"/console/reviews/{review_id}/fine", {"reason": "ok"}).status_code == 403
    assert 'id="approval-state">pending' in audra.http.get(f"/console/approvals/{approval_id}").text


def test_a_reviewer_marks_fine_and_a_flag_escalates_the_task(sign_in, agent, console_broker: RunningBroker) -> None:
    dana = sign_in("dana")
    fine_task, flag_task = agent.open_task(), agent.open_task()
    for task_id in (fine_task, flag_task):
        assert agent.credential(task_id, "db.write", "demo-data").status_code == 200
    items = console_broker.container.reviews.list(None, None, 5000)
    by_task = {r.task_id: r.review_id for r in items}
    fine_id, flag_id = by_task[fine_task], by_task[flag_task]
    page = dana.http.get(f"/console/reviews/{fine_id}")
    assert page.status_code == 200 and "db.write" in page.text and 'id="fine"' in page.text
    assert dana.post_form(f"/console/reviews/{fine_id}/fine", {"reason": "expected write"}).status_code == 303
    assert 'id="review-state">fine' in dana.http.get(f"/console/reviews/{fine_id}").text
    assert dana.post_form(f"/console/reviews/{flag_id}/flag", {"reason": "not in the ticket"}).status_code == 303
    assert console_broker.container.tasks.get(flag_task).state.value == "quarantined"


def test_the_owner_cannot_review_their_agents_action(sign_in, agent, console_broker: RunningBroker) -> None:
    task_id = agent.open_task()
    assert agent.credential(task_id, "db.write", "demo-data").status_code == 200
    review_id = next(r.review_id for r in console_broker.container.reviews.list(None, task_id, 10))
    owner = sign_in("demo-owner")
    assert 'id="fine" disabled' in owner.http.get(f"/console/reviews/{review_id}").text
    assert owner.post_form(f"/console/reviews/{review_id}/fine", {"reason": "mine"}).status_code == 403


def test_the_pending_list_streams_a_new_step_up(sign_in, agent, console_broker: RunningBroker) -> None:
    alice = sign_in("alice")
    cookies = {c.name: c.value for c in alice.http.cookies.jar}
    task_id = agent.open_task()
    with (
        httpx.Client(base_url=console_broker.url, cookies=cookies, timeout=60) as http,
        http.stream("GET", "/console/approvals/events", headers={"Accept": "text/event-stream"}) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        approval_id = None
        for line in stream.iter_lines():
            if line == "event: approvals" and approval_id is None:
                approval_id = agent.step_up(task_id)  # after the first snapshot
            elif approval_id is not None and f'data-approval="{approval_id}"' in line:
                break
    assert approval_id is not None
