"""A leak reported in an event answers with the escalation it caused (issue 12, section 4)."""

from __future__ import annotations

import pytest

from tests.chain.conftest import token_is_dead

pytestmark = pytest.mark.openbao


def test_own_secret_in_a_reported_event_answers_with_the_escalation(chain_broker):
    b = chain_broker
    agent = b.agent()
    task_id = agent.open_task("demo", "leaks its own token")["task_id"]
    cred = agent.request_credential(task_id, "db.read", "demo-data")
    body = agent.report_event(task_id, "output", text=f"the token is {cred.secret('token')}")
    assert body["leaks"] == [{"action": "task_escalated"}]
    escalation = body["escalation"]
    assert escalation is not None
    assert (escalation["detector"], escalation["task_state"], escalation["task_id"]) == (
        "leaked_secret",
        "quarantined",
        task_id,
    )
    assert escalation["revocations_queued"] >= 1
    assert b.admin().task(task_id)["task"]["state"] == "quarantined"
    assert token_is_dead(b.openbao.address, cred.secret("token"))
    assert cred.secret("token") not in str(body)


def test_another_tasks_secret_in_an_event_escalates_that_task_not_this_one(chain_broker):
    b = chain_broker
    agent = b.agent()
    leaker = agent.open_task("demo", "holds a token")["task_id"]
    cred = agent.request_credential(leaker, "db.read", "demo-data")
    reporter = agent.open_task("demo", "sees it")["task_id"]
    body = agent.report_event(reporter, "tool_result", text=cred.secret("token"))
    assert body["leaks"] == [{"action": "task_escalated"}]
    assert body["escalation"] is None  # this task was not escalated by it
    assert b.admin().task(leaker)["task"]["state"] == "quarantined"
    assert b.admin().task(reporter)["task"]["state"] == "active"
