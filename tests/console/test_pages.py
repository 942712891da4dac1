"""The Tasks, Decisions, Findings and Audit pages over HTTP, signed in through the real OIDC flow,
against a broker with real OpenBao: what they show, that they need a session, that every role may
read them and none may change anything through them, and that agent-controlled text is inert."""

from __future__ import annotations

import re

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import text
from support.broker import RunningBroker
from support.wait import wait_until

from broker.api.console.formatting import ts
from broker.api.console.views_tasks import task_timeline
from tests.console.pages_scenario import (
    XSS,
    escalated_task,
    findings_of_a_scan,
    revocations_confirmed,
    stepped_up_task,
)

pytestmark = pytest.mark.openbao
PAGES = ("/console/tasks", "/console/decisions", "/console/findings", "/console/audit")


@pytest.fixture(scope="module")
def escalated(console_broker: RunningBroker):
    return escalated_task(console_broker)


def test_task_timeline_shows_the_escalation_and_when_each_revocation_was_confirmed(
    console_broker: RunningBroker, escalated, sign_in
) -> None:
    page = sign_in("audra").http.get(f"/console/tasks/{escalated.task_id}")
    assert page.status_code == 200, page.text
    body = page.text
    assert "quarantined" in body and "dangerous_sequence" in body and "secret_then_export" in body
    timeline = task_timeline(console_broker.container, escalated.task_id)
    (esc,) = timeline.escalations
    assert esc.confirmed_at is not None
    assert f'all confirmed by the backend at <time class="confirmed-at">{ts(esc.confirmed_at)}</time>' in body
    for r in esc.revocations:  # each outbox row with its confirmation time
        assert r.completed_at is not None and ts(r.completed_at) in body
    # each request links to its explain view; the export says a detector stopped it
    for decision_id in (escalated.read_decision, escalated.secret_decision, escalated.export_decision):
        assert f'href="/console/decisions/{decision_id}"' in body
    assert "stopped before issuance by <strong>dangerous_sequence</strong>" in body
    # the delegation: its step and the tree link to the sub-task, whose page links back
    assert body.count(f'href="/console/tasks/{escalated.child_task_id}"') >= 2
    child = sign_in("dana").http.get(f"/console/tasks/{escalated.child_task_id}")
    assert child.status_code == 200 and f'href="/console/tasks/{escalated.task_id}"' in child.text


def test_agent_controlled_text_is_escaped_on_every_page(console_broker: RunningBroker, escalated, sign_in) -> None:
    alice = sign_in("alice")
    for path in (f"/console/tasks/{escalated.task_id}", "/console/tasks", f"/console/tasks/{escalated.child_task_id}"):
        body = alice.http.get(path).text
        assert "<script>alert" not in body and "<img src=x" not in body, path
        assert str(escape(XSS)) in body, path  # shown, as text
    explained = alice.http.get(f"/console/decisions/{escalated.export_decision}").text
    assert "<script>alert" not in explained and "&lt;script&gt;" in explained  # the recorded purpose


def test_a_stored_bidi_override_is_shown_as_its_code_point(console_broker: RunningBroker, escalated, sign_in) -> None:
    # input refuses it (broker.text); a row written before that check still must not reorder the page
    with console_broker.container.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE tasks SET state_reason = :r WHERE task_id = :t"),
            {"r": "evil\u202egnp.exe", "t": escalated.child_task_id},
        )
    body = sign_in("audra").http.get(f"/console/tasks/{escalated.child_task_id}").text
    assert "\u202e" not in body and "evil[U+202E]gnp.exe" in body


def test_decision_explain_shows_inputs_factors_policies_bundle_and_detection(
    console_broker: RunningBroker, escalated, sign_in
) -> None:
    c = console_broker.container
    http = sign_in("dana").http
    export = http.get(f"/console/decisions/{escalated.export_decision}").text
    assert "before issuance:" in export and "dangerous_sequence" in export
    assert f'<code id="bundle-hash">{c.policies.bundle_hash}</code>' in export and "the bundle in force" in export
    for label in ("consequence class", "sensitivity", "environment", "chain so far", "agent trust"):
        assert f"<dt>{label}</dt>" in export
    secret = http.get(f"/console/decisions/{escalated.secret_decision}").text
    assert "in a sequence:" in secret and "after issuance:" in secret and "confirmed by the backend at" in secret
    with c.store.read() as conn:
        record = c.store.get_decision(conn, escalated.secret_decision)
    assert record is not None
    for policy in record.record["policy_ids"]:
        assert f"<code>{policy}</code>" in secret
    for factor in record.record["factors"]:
        assert f"<code>{factor}</code>" in secret
    missing = http.get("/console/decisions/dec_" + "0" * 32)
    assert missing.status_code == 404 and "does not exist" in missing.text
    for path in ("/console/decisions/<b>nope", "/console/tasks/<b>nope", "/console/tasks/tsk_" + "0" * 32):
        page = http.get(path)
        assert page.status_code == 404 and "Not found" in page.text and "<b>nope" not in page.text, path


def test_a_step_up_links_from_its_approval_page_to_the_explain_view(console_broker: RunningBroker, sign_in) -> None:
    s = stepped_up_task(console_broker)
    alice = sign_in("alice")
    approval = alice.http.get(f"/console/approvals/{s.approval_id}")
    assert f'href="/console/decisions/{s.decision_id}"' in approval.text
    chain = approval.text.split('id="chain"', 1)[1]  # each step of the chain so far links to its explain view
    assert f'href="/console/decisions/{s.read_decision}"' in chain
    explained = alice.http.get(f"/console/decisions/{s.decision_id}").text
    assert f'href="/console/approvals/{s.approval_id}"' in explained and "step_up" in explained
    listed = alice.http.get("/console/decisions", params={"outcome": "step_up"}).text
    assert f'href="/console/decisions/{s.decision_id}"' in listed
    found = alice.http.get("/console/decisions", params={"id": s.decision_id})
    assert found.status_code == 303 and found.headers["location"] == f"/console/decisions/{s.decision_id}"


def test_task_list_filters_and_pages(console_broker: RunningBroker, escalated, sign_in) -> None:
    http = sign_in("audra").http
    ended = http.get("/console/tasks", params={"state": "quarantined", "agent": "demo-agent"}).text
    assert f'data-task="{escalated.task_id}"' in ended
    active = http.get("/console/tasks", params={"state": "active"}).text
    assert f'data-task="{escalated.task_id}"' not in active
    agent = console_broker.agent()
    for i in range(3):
        agent.open_task("demo", f"paging {i}")
    first = http.get("/console/tasks", params={"state": "active", "agent": "demo-agent", "before": ""})
    assert first.status_code == 200
    # a page of 50 at most; the "Older" link carries the filters and the cursor
    assert first.text.count("data-task=") <= 50
    bad = http.get("/console/tasks", params={"state": "everything"})
    assert bad.status_code == 422 and "state" in bad.text and "one of all, active, ended, quarantined" in bad.text
    bad_agent = http.get("/console/tasks", params={"agent": "<b>x</b>"})
    assert bad_agent.status_code == 422 and "<b>x</b>" not in bad_agent.text


def test_findings_page_lists_filters_and_refuses_bad_filters(console_broker: RunningBroker, sign_in, tmp_path) -> None:
    findings_of_a_scan(console_broker, tmp_path, "console-pages", 3)
    http = sign_in("dana").http
    page = http.get("/console/findings", params={"job": "console-pages", "status": "open", "source": "files"})
    assert page.status_code == 200 and page.text.count("data-finding=") == 3
    assert not re.search(r"AKIA[A-Z2-7]{16}", page.text)  # never the secret
    for params, field in (({"status": "nope"}, "status"), ({"source": "ftp"}, "source"), ({"job": "A B"}, "job")):
        refused = http.get("/console/findings", params=params)
        assert refused.status_code == 422 and f"{field}:" in refused.text, params


def test_audit_page_lists_events_and_shows_the_chain_intact(console_broker: RunningBroker, escalated, sign_in) -> None:
    http = sign_in("audra").http
    page = http.get("/console/audit", params={"task_id": escalated.task_id, "kind": "task.escalated"})
    assert page.status_code == 200
    assert "Chain intact" in page.text and page.text.count("data-seq=") == 1
    refused = http.get("/console/audit", params={"kind": "<script>"})
    assert refused.status_code == 422 and "kind:" in refused.text and "<script>" not in refused.text


def test_audit_page_shows_a_tampered_event_and_where(console_broker: RunningBroker, sign_in) -> None:
    c = console_broker.container
    reader = c.audit_reader
    reader.max_age_seconds = 0  # this test reads twice within the reuse window
    http = sign_in("audra").http
    try:
        assert "Chain intact" in http.get("/console/audit").text
        c.audit.record("decision.allowed", actor="tamper-test", data={"n": 1})
        seq = c.audit.head().seq
        with c.store.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"), {"s": seq})
        broken = http.get("/console/audit").text
        assert "Chain BROKEN" in broken and f'<strong id="broken-seq">{seq}</strong>' in broken
        assert f"event {seq} was modified" in broken
        with c.store.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'tamper-test' WHERE seq = :s"), {"s": seq})
        assert "Chain intact" in http.get("/console/audit").text
    finally:
        reader.max_age_seconds = 5.0


def test_pages_need_a_session(console_broker: RunningBroker, escalated) -> None:
    for path in (*PAGES, f"/console/tasks/{escalated.task_id}", f"/console/decisions/{escalated.export_decision}"):
        resp = httpx.get(console_broker.url + path, timeout=60)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login?next="), path


@pytest.mark.parametrize("person", ["alice", "dana", "audra", "demo-owner"])
def test_every_role_reads_every_page_and_none_changes_anything(
    console_broker: RunningBroker, escalated, sign_in, person: str
) -> None:
    client = sign_in(person)
    paths = (*PAGES, f"/console/tasks/{escalated.task_id}", f"/console/decisions/{escalated.export_decision}")
    head = console_broker.container.audit.head().seq
    for path in paths:
        resp = client.http.get(path)
        assert resp.status_code == 200, (path, resp.text[:300])
        assert resp.headers["content-security-policy"].startswith("default-src 'self'")
    # no page takes a write: a post (even with a valid CSRF token) is not a route here
    for path in paths:
        assert client.post_form(path, {"reason": "x"}).status_code == 405, path
    # reading wrote nothing to the audit trail
    assert console_broker.container.audit.head().seq == head


def test_a_leaked_grant_found_by_a_scan_links_to_its_task_whose_timeline_shows_the_revocation(
    console_broker: RunningBroker, sign_in, tmp_path
) -> None:
    agent = console_broker.agent()
    task_id = agent.open_task("demo", "leaks its token")["task_id"]
    cred = agent.request_credential(task_id, "db.read", "demo-data")
    token = cred.secret("token")
    log = tmp_path / "agent.log"
    log.write_text(f"DEBUG calling vault with token={token} ok\n")
    admin = console_broker.admin()
    admin.request(
        "PUT",
        "/v1/admin/scan-jobs/console-leak",
        {"source": {"kind": "files", "path": str(log)}, "schedule": {"every_seconds": 3600}},
    )
    admin.request("POST", "/v1/admin/scan-jobs/console-leak/run")
    wait_until(lambda: revocations_confirmed(console_broker, task_id), what="the leak's revocations to be confirmed")
    http = sign_in("audra").http
    findings = http.get("/console/findings", params={"job": "console-leak", "status": "revoked"}).text
    assert findings.count("data-finding=") == 1 and f'href="/console/tasks/{task_id}"' in findings
    assert token not in findings
    timeline = http.get(f"/console/tasks/{task_id}").text
    assert "leaked_secret" in timeline and "leak_reported" in timeline and token not in timeline
    explained = http.get(f"/console/decisions/{cred.decision['decision_id']}").text
    assert "after issuance:" in explained and "leaked_secret" in explained
    assert "confirmed by the backend at" in explained and token not in explained
