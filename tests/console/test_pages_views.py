"""The console's view models (Tasks timeline, decision explain, findings, audit) built from a real
broker's store — SQLite and PostgreSQL — after real requests against real OpenBao."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.broker import RunningBroker, start_broker

from broker.api.console.views_decisions import decision_explain
from broker.api.console.views_records import AuditFilters, FindingFilters, audit_page, finding_page
from broker.api.console.views_tasks import (
    DecisionEntry,
    EscalationEntry,
    EventEntry,
    TaskFilter,
    flatten,
    task_page,
    task_timeline,
)
from broker.errors import InvalidInput, NotFound
from broker.models import Outcome, TaskState
from broker.store.rows import RevocationState
from tests.console.pages_scenario import XSS, escalated_task, findings_of_a_scan, stepped_up_task

pytestmark = pytest.mark.openbao


@pytest.fixture(scope="module")
def vbroker(openbao, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(tmp_path_factory.mktemp("console-views"), openbao)
    yield running
    running.stop()


def check_escalated_timeline(b: RunningBroker) -> None:
    s = escalated_task(b)
    t = task_timeline(b.container, s.task_id)
    assert t.task.state is TaskState.QUARANTINED and t.task.purpose.endswith(XSS)
    decisions = [e for e in t.entries if isinstance(e, DecisionEntry)]
    assert [d.decision.action for d in decisions] == ["db.read", "secrets.read", "data.export"]
    export = decisions[-1]
    assert export.decision.outcome is Outcome.DENY and export.stopped_by == "dangerous_sequence"
    assert decisions[0].stopped_by is None and all(g.revoked_at is not None for g in decisions[0].grants)
    (esc,) = t.escalations
    assert isinstance(esc, EscalationEntry)
    assert esc.detector == "dangerous_sequence" and esc.rule == "secret_then_export"
    assert [st.ref for st in esc.steps] == [s.secret_decision, s.export_decision]
    # the revocations it queued, each confirmed by the backend, and when
    assert esc.revocations and all(r.state is RevocationState.DONE for r in esc.revocations)
    assert esc.confirmed_at is not None and esc.confirmed_at >= esc.at
    assert t.revocations_pending == 0 and t.grants_active == 0 and t.grants_total == 2
    # the delegation: a chain step naming the sub-task, and the tree
    (delegation,) = [e for e in t.entries if isinstance(e, EventEntry) and e.step == "delegation"]
    assert delegation.linked_task == s.child_task_id
    assert [(depth, task.task_id) for depth, task in flatten(t.delegations)] == [(0, s.child_task_id)]
    # in time order
    assert [e.at for e in t.entries] == sorted(e.at for e in t.entries)
    child = task_timeline(b.container, s.child_task_id)
    assert child.parent is not None and child.parent.task_id == s.task_id
    assert child.task.state is not TaskState.ACTIVE  # the escalation cascaded to the sub-task

    # explain: stopped before issuance; part of the sequence and revoked after issuance
    ex = decision_explain(b.container, s.export_decision)
    assert [(d.stage, d.detector) for d in ex.detections] == [("pre_issuance", "dangerous_sequence")]
    assert ex.grants == () and ex.bundle_in_force
    inputs = dict(ex.inputs)
    assert inputs["action"] == "data.export" and inputs["consequence class"] == "export"
    assert inputs["chain so far"]["actions"] == ["db.read", "secrets.read"]
    sec = decision_explain(b.container, s.secret_decision)
    stages = [d.stage for d in sec.detections]
    assert "in_sequence" in stages and "post_issuance" in stages
    post = next(d for d in sec.detections if d.stage == "post_issuance")
    assert post.revocation is not None and post.revocation.completed_at is not None
    assert sec.factors and sec.policy_ids and sec.score is not None


def test_timeline_shows_decisions_escalation_confirmed_revocations_and_delegation_on_sqlite(vbroker):
    check_escalated_timeline(vbroker)


@pytest.mark.postgres
def test_timeline_shows_decisions_escalation_confirmed_revocations_and_delegation_on_postgresql(
    openbao, pg_database, tmp_path
):
    running = start_broker(tmp_path, openbao, database_url=pg_database)
    try:
        check_escalated_timeline(running)
        page = task_page(running.container, state=TaskFilter.ENDED, agent="helper-agent", before=None)
        assert [t.agent for t in page.items] == ["helper-agent"]
    finally:
        running.stop()


def test_explain_of_a_step_up_names_its_pending_approval_and_policies(vbroker):
    s = stepped_up_task(vbroker)
    ex = decision_explain(vbroker.container, s.decision_id)
    assert ex.decision.outcome is Outcome.STEP_UP
    assert ex.approval is not None and ex.approval.approval_id == s.approval_id
    assert ex.policy_ids and ex.decision.bundle_hash == vbroker.container.policies.bundle_hash
    assert dict(ex.inputs)["sensitivity"] == "restricted" and dict(ex.inputs)["environment"] == "prod"
    with pytest.raises(NotFound):
        decision_explain(vbroker.container, "dec_does_not_exist")


def test_task_list_filters_by_state_and_agent_and_pages_newest_first(vbroker):
    agent = vbroker.agent()
    opened = [agent.open_task("demo", f"page {i}")["task_id"] for i in range(5)]
    agent.end_task(opened[0])
    c = vbroker.container
    first = task_page(c, state=TaskFilter.ACTIVE, agent="demo-agent", before=None, limit=2)
    assert [t.task_id for t in first.items] == [opened[4], opened[3]] and first.next_before == opened[3]
    second = task_page(c, state=TaskFilter.ACTIVE, agent="demo-agent", before=first.next_before, limit=2)
    assert [t.task_id for t in second.items] == [opened[2], opened[1]]
    ended = task_page(c, state=TaskFilter.ENDED, agent="demo-agent", before=None, limit=200)
    assert opened[0] in [t.task_id for t in ended.items]
    assert all(t.state is not TaskState.ACTIVE for t in ended.items)
    assert task_page(c, state=TaskFilter.ALL, agent="nobody", before=None).items == ()
    with pytest.raises(InvalidInput, match="limit"):
        task_page(c, state=TaskFilter.ALL, agent=None, before=None, limit=100_000)
    with pytest.raises(InvalidInput, match="before"):
        task_page(c, state=TaskFilter.ALL, agent=None, before="tsk_nope")


def test_findings_page_filters_and_pages(vbroker, tmp_path):
    findings_of_a_scan(vbroker, tmp_path, "console-views", 5)
    c = vbroker.container
    filters = FindingFilters.parse(status="open", job="console-views", rule=None, source="files")
    first = finding_page(c, filters, before=None, limit=3)
    assert len(first.items) == 3 and first.next_before == first.items[-1].finding_id
    rest = finding_page(c, filters, before=first.next_before, limit=3)
    ids = [f.finding_id for f in (*first.items, *rest.items)]
    assert len(rest.items) == 2 and rest.next_before is None and len(set(ids)) == 5
    for f in (*first.items, *rest.items):
        assert "AKIA" not in f.excerpt or "*" in f.excerpt  # redacted, never the key
    with pytest.raises(InvalidInput, match="status"):
        FindingFilters.parse(status="bogus", job=None, rule=None, source=None)
    with pytest.raises(InvalidInput, match="job"):
        FindingFilters.parse(status=None, job="<script>", rule=None, source=None)


def test_audit_page_filters_pages_and_reports_the_chain_intact(vbroker):
    agent = vbroker.agent()
    task_id = agent.open_task("demo", "audit page")["task_id"]
    agent.request_credential(task_id, "db.read", "demo-data")
    agent.end_task(task_id)
    c = vbroker.container
    page = audit_page(c, AuditFilters.parse(kind=None, task_id=task_id, actor=None), before=None, limit=2)
    assert len(page.items) == 2 and page.items[0].seq > page.items[1].seq  # newest first
    assert page.next_before == page.items[-1].seq
    rest = audit_page(c, AuditFilters.parse(kind=None, task_id=task_id, actor=None), before=page.next_before, limit=50)
    assert rest.items[-1].kind == "task.opened" and rest.next_before is None
    kinds = {e.kind for e in (*page.items, *rest.items)}
    assert {"task.opened", "credential.issued", "task.ended"} <= kinds
    issued = audit_page(c, AuditFilters.parse(kind="credential.issued", task_id=task_id, actor=None), before=None)
    assert [e.kind for e in issued.items] == ["credential.issued"]
    assert page.status.ok and page.status.head_seq >= page.items[0].seq
    with pytest.raises(InvalidInput, match="kind"):
        AuditFilters.parse(kind="DROP TABLE", task_id=None, actor=None)
    with pytest.raises(InvalidInput, match="before"):
        audit_page(c, AuditFilters(), before=0)
