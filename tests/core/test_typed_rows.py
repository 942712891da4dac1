"""The store hands typed rows upward (frozen dataclasses, enums, aware timestamps) on SQLite and
PostgreSQL, and the HTTP presenters turn them into the same bodies as before."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from broker.api.presenters import (
    audit_event_body,
    decision_body,
    event_body,
    registered_body,
    scan_job_body,
    scan_run_body,
    stored_finding_body,
)
from broker.approvals import store as review_db
from broker.approvals.model import Review, ReviewId, ReviewState
from broker.approvals.reviews import ReviewService
from broker.audit import AuditLog, LocalAuditKey
from broker.chain.model import Escalation, RecordedEvent, StepKind
from broker.models import (
    Agent,
    DecisionId,
    Environment,
    FindingStatus,
    Grant,
    GrantId,
    GrantState,
    IdentityBinding,
    LeakAction,
    Mode,
    Outcome,
    Resource,
    Sensitivity,
    Task,
    TaskId,
    TaskProfile,
    TaskState,
    Tier,
    TrustLevel,
)
from broker.people.model import Caller, Person, PersonName, Role, Via
from broker.people.service import Parties
from broker.services.events import EventReport
from broker.services.scan_jobs import ScheduledJob
from broker.services.scanning import Leak, LeakOutcome
from broker.store import outbox
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.findings import list_findings
from broker.store.repo import Store, utcnow
from broker.store.rows import Entity, FailureKind, HandleState, RevocationState
from broker.store.scan_jobs import ScanStore
from scanners.jobs.ports import RawFinding, RunStatus, RunSummary, Trigger
from scanners.jobs.spec import ScanJobSpec

AT = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'rows.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    engine = make_engine(url)
    migrate(engine)
    yield Store(engine)
    engine.dispose()


def _task(store: Store, task_id: str = "tsk_rows") -> Task:
    task = Task(
        task_id=TaskId(task_id),
        agent="a1",
        profile="p1",
        purpose="rows",
        on_behalf_of=None,
        state=TaskState.ACTIVE,
        created_at=AT,
        expires_at=AT + timedelta(hours=1),
    )
    with store.write() as conn:
        store.create_task(conn, task)
    return task


def _grant(task: Task, grant_id: str = "grt_1", **over: object) -> Grant:
    values: dict[str, object] = dict(
        grant_id=GrantId(grant_id),
        task_id=task.task_id,
        decision_id=DecisionId("dec_1"),
        backend="vault_token",
        resource="demo-data",
        action="db.read",
        lease_id=None,
        accessor="acc-1",
        fingerprints=("fp1", "fp2"),
        issued_at=AT,
        expires_at=AT + timedelta(minutes=5),
        state=GrantState.ACTIVE,
        revocation={"accessor": "acc-1"},
        covered_by_task_handle=True,
        public={"ttl": 300},
        secret_lengths={"fp1": 26},
        revoked_at=None,
    )
    values.update(over)
    return Grant(**values)  # type: ignore[arg-type]


def test_a_stored_grant_comes_back_as_the_frozen_grant_that_was_written(store):
    task = _task(store)
    written = _grant(task)
    with store.write() as conn:
        store.add_grant(conn, written)
    with store.read() as conn:
        read = store.get_grant(conn, "grt_1")
        active = store.grants(conn, task.task_id, GrantState.ACTIVE)
        index = store.active_grant_fingerprints(conn)
    assert read == written
    assert read.state is GrantState.ACTIVE and read.active
    assert read.issued_at.tzinfo is not None and read.issued_at == AT
    assert active == [written]
    assert [(f.grant_id, f.agent, f.fingerprints, dict(f.secret_lengths)) for f in index] == [
        ("grt_1", "a1", ("fp1", "fp2"), {"fp1": 26})
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.state = GrantState.REVOKED  # type: ignore[misc]


def test_outbox_rows_are_typed_and_confirming_one_revokes_what_the_handle_covered(store):
    task = _task(store)
    with store.write() as conn:
        store.add_grant(conn, _grant(task))
        store.add_handle(conn, task.task_id, "vault_token", {"accessor": "parent"})
    with store.read() as conn:
        (handle,) = store.handles(conn, task.task_id)
        assert outbox.grants_to_revoke(conn, task.task_id, {"vault_token"}) == []  # covered by the handle
    assert handle.state is HandleState.ACTIVE and handle.reference == {"accessor": "parent"}
    with store.write() as conn:
        rid = outbox.enqueue(
            conn,
            task_id=task.task_id,
            backend=handle.backend,
            reference=handle.reference,
            reason="test",
            handle_id=handle.id,
        )
    with store.read() as conn:
        (row,) = outbox.due(conn, utcnow())
    assert (row.id, row.handle_id, row.grant_id, row.state, row.attempts) == (
        rid,
        handle.id,
        None,
        RevocationState.PENDING,
        0,
    )
    with store.write() as conn:
        outbox.mark_failed(conn, row, "unreachable", kind=FailureKind.UNAVAILABLE)
        failed = outbox.get(conn, rid)
        assert failed is not None and failed.last_error_kind is FailureKind.UNAVAILABLE
        assert outbox.mark_done(conn, failed) is True
    with store.read() as conn:
        grant = store.get_grant(conn, "grt_1")
        assert store.handles(conn, task.task_id) == []
        assert [h.state for h in store.handles(conn, task.task_id, HandleState.REVOKED)] == [HandleState.REVOKED]
    assert grant is not None and grant.state is GrantState.REVOKED and grant.revoked_at is not None


def test_registry_bodies_keep_the_columns_in_order_with_resource_settings_last(store):
    with store.write() as conn:
        store.put_profile(conn, TaskProfile("p1", ("db.read", "db.write"), Tier.HIGH, 600, "profile"))
        store.put_agent(
            conn, Agent("a1", "owner", TrustLevel.HIGH, (IdentityBinding("iss", "sub", {"k": "v"}),), ("p1",), "agent")
        )
        store.put_resource(
            conn,
            Resource(
                "r1", "vault_kv", Sensitivity.RESTRICTED, Environment.PROD, {"mount": "kv", "path": "x/y"}, "res", True
            ),
        )
        for table in (t.agents, t.profiles, t.resources):
            conn.execute(update(table).values(created_at=AT, updated_at=AT))
    with store.read() as conn:
        bodies = [registered_body(e) for entity in Entity for e in store.list_registered(conn, entity)]
    stamps = '"created_at": "2026-12-01T09:30:15.123456+00:00", "updated_at": "2026-12-01T09:30:15.123456+00:00"'
    assert [json.dumps(b) for b in bodies] == [
        '{"name": "a1", "owner": "owner", "trust_level": "high", "description": "agent", "identities": '
        '[{"issuer": "iss", "subject": "sub", "claims": {"k": "v"}}], "profiles": ["p1"], '
        + stamps
        + ', "owner_identity": null}',
        '{"name": "p1", "allowed_actions": ["db.read", "db.write"], "ceiling": "high", '
        '"max_lifetime_seconds": 600, "description": "profile", ' + stamps + "}",
        '{"name": "r1", "kind": "vault_kv", "sensitivity": "restricted", "environment": "prod", '
        '"external": true, "agent_may_hold": true, "description": "res", ' + stamps + ', "mount": "kv", "path": "x/y"}',
    ]


def test_a_stored_decision_is_typed_and_explained_with_its_timestamp_as_stored(store):
    task = _task(store)
    record = {
        "decision_id": "dec_1",
        "outcome": "allow",
        "tier": "medium",
        "mode": "monitor",
        "ttl_seconds": 900,
        "bundle_hash": "h" * 64,
        "inputs": {"consequence": "observe"},
    }
    with store.write() as conn:
        store.add_decision(conn, record, task.task_id, "a1", "db.read", "demo-data", AT)
    with store.read() as conn:
        d = store.get_decision(conn, "dec_1")
        (step,) = store.decision_steps(conn, task.task_id)
    assert d is not None and (d.outcome, d.tier, d.mode) == (Outcome.ALLOW, Tier.MEDIUM, Mode.MONITOR)
    assert (step.outcome, step.tier) == (Outcome.ALLOW, Tier.MEDIUM) and d.consequence == "observe"
    body = decision_body(d, naive_timestamps=store.dialect == "sqlite")
    if store.dialect == "sqlite":  # SQLite keeps UTC without its zone; the explain body always showed that
        assert body["created_at"] == "2026-12-01T09:30:15.123456"
    else:
        assert datetime.fromisoformat(body["created_at"]) == AT
    assert list(body)[: len(record)] == list(record) and body["task_id"] == task.task_id


def test_audit_events_are_typed_and_their_body_carries_the_hashed_timestamp(store):
    audit = AuditLog(store, LocalAuditKey(b"k" * 32))
    audit.record("task.opened", actor="a1", task_id="tsk_rows", outcome="opened", data={"n": 1})
    (event,) = audit.events(task_id="tsk_rows")
    assert (event.kind, event.actor, dict(event.data)) == ("task.opened", "a1", {"n": 1}) and event.seq >= 1
    body = audit_event_body(event)
    assert list(body) == ["seq", "event_id", "ts", "kind", "actor", "task_id", "outcome", "data", "prev_hash", "hash"]
    assert body["ts"].endswith("+00:00") and audit.verify().ok


def test_scan_jobs_runs_and_findings_are_typed_and_presented_with_the_same_keys(store):
    scans = ScanStore(store)
    spec = ScanJobSpec.load({"source": {"kind": "files", "path": "/var/log/*.log"}, "schedule": {"every_seconds": 60}})
    scans.put_job("j", spec)
    run_id, started = scans.start_run("j", "replica-a", Trigger.MANUAL)
    summary = RunSummary(run_id, RunStatus.OK, Trigger.MANUAL, started, 1.5, 10, 1, 1, None, "replica-a")
    scans.finish_run("j", summary)
    scans.commit_checkpoint("j", "files", {}, [RawFinding("aws-key", "high", "ab" * 16, "/var/log/a.log", 3, "AKIA**")])
    job = scans.get_job("j")
    (run,) = scans.runs("j")
    with store.read() as conn:
        (finding,) = list_findings(conn)
    assert job is not None and job.spec == spec and job.last_run == summary
    assert (run.status, run.trigger, run.findings) == (RunStatus.OK, Trigger.MANUAL, 1)
    assert finding.status is FindingStatus.OPEN and finding.first_seen.tzinfo is not None
    body = scan_job_body(ScheduledJob(job, None), naive_timestamps=store.dialect == "sqlite")
    assert list(body) == [
        "name",
        "source",
        "schedule",
        "on_finding",
        "enabled",
        "last_run",
        "next_run",
        "created_at",
        "updated_at",
    ]
    assert body["last_run"] == summary.to_json() and body["last_run"]["started_at"] == started.isoformat()
    assert list(scan_run_body(run)) == [
        "run_id",
        "job",
        "holder",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "bytes",
        "findings",
        "new_findings",
        "error",
    ]
    assert list(stored_finding_body(finding)) == [
        "finding_id",
        "job",
        "source_kind",
        "location",
        "line",
        "rule",
        "severity",
        "fingerprint",
        "excerpt",
        "status",
        "detail",
        "occurrences",
        "first_seen",
        "last_seen",
    ]


def test_an_event_body_keeps_its_keys_with_the_escalation_it_set_off():
    escalation = Escalation(
        task_id="tsk_1",
        task_state=TaskState.QUARANTINED,
        detector="exfil",
        revocations_queued=2,
        revocations_completed=1,
        revocations_pending=1,
    )
    event = RecordedEvent(
        event_id="evt_1",
        task_id="tsk_1",
        kind=StepKind.TOOL_CALL,
        at=AT,
        text_length=4,
        text_fingerprint="ab" * 16,
        escalation=escalation,
    )
    leak = Leak(
        grant_id="grt_1", task_id="tsk_1", agent="a2", fingerprint="cd" * 16, outcome=LeakOutcome(LeakAction.NONE)
    )
    body = event_body(EventReport(event, (leak,), ()), "a1")
    assert json.dumps(body) == (
        '{"event_id": "evt_1", "task_id": "tsk_1", "kind": "tool_call", "at": "2026-12-01T09:30:15.123456+00:00", '
        '"text_length": 4, "text_fingerprint": "' + "ab" * 16 + '", "escalation": {"task_id": "tsk_1", '
        '"task_state": "quarantined", "detector": "exfil", "revocations_queued": 2, "revocations_completed": 1, '
        '"revocations_pending": 1}, "leaks": [{"action": "none"}], "findings": []}'
    )
    no_text = event_body(EventReport(dataclasses.replace(event, escalation=None), None, ()), "a1")
    assert "leaks" not in no_text and no_text["escalation"] is None


@pytest.mark.parametrize("escalation", [None, Escalation("tsk_rows", TaskState.QUARANTINED, "review_flagged", 1, 1, 0)])
def test_a_flagged_review_keeps_the_escalation_it_reported(store, escalation):
    audit = AuditLog(store, LocalAuditKey(b"k" * 32))
    parties = Parties(owner=frozenset({("people", "olga")}), agent=frozenset({("https://agents", "a1")}))
    reviews = ReviewService(store, audit, lambda task_id, review_id, reason: escalation, lambda agent: parties)
    dana = Person(
        name=PersonName("dana"),
        roles=frozenset({Role.REVIEWER}),
        identities=(),
        display_name="Dana",
        disabled=False,
        created_at=AT,
        updated_at=AT,
    )
    with store.write() as conn:
        review_db.insert_review(
            conn,
            Review(
                review_id=ReviewId("rev_1"),
                decision_id="dec_1",
                task_id=TaskId("tsk_rows"),
                agent="a1",
                action="db.write",
                resource="demo-data",
                tier=Tier.LOW,
                grant_id=None,
                state=ReviewState.PENDING,
                reviewer=None,
                reviewer_subject=None,
                reason=None,
                escalation=None,
                created_at=AT,
                resolved_at=None,
            ),
        )
    flagged = reviews.flag("rev_1", Caller(via=Via.TOKEN, person=dana, issuer="people", subject="dana"), "looked odd")
    assert flagged.state is ReviewState.FLAGGED and flagged.tier is Tier.LOW
    if escalation is None:  # review_flagged disabled: the flag is recorded, nothing escalated
        assert flagged.escalation == {"detector": None}
    else:
        assert flagged.escalation == {
            "detector": "review_flagged",
            "task_state": "quarantined",
            "revocations_queued": 1,
            "revocations_completed": 1,
            "revocations_pending": 0,
        }
