"""Mapping service results to response bodies (the secret is revealed here, at the edge)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, assert_never

from broker.approvals.model import Approval, Review, Vote
from broker.audit import AuditEvent
from broker.chain.model import Escalation, StepKind
from broker.chain.view import ChainRecords
from broker.errors import Denied
from broker.models import Agent, Grant, Outcome, Resource, Task, TaskProfile, TaskState
from broker.services.events import EventReport
from broker.services.incidents import UnwrapReport
from broker.services.revocation import RevocationReport
from broker.services.scan_jobs import ScheduledJob
from broker.services.scanning import Leak
from broker.services.tasks import CredentialResult, DelegationNode, TaskView
from broker.store.findings import StoredFinding
from broker.store.rows import Registered, StoredDecision
from broker.store.scan_jobs import ScanRun
from scanners.engine import Finding
from scanners.jobs.ports import RunSummary


def task_body(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "agent": task.agent,
        "profile": task.profile,
        "purpose": task.purpose,
        "on_behalf_of": task.on_behalf_of,
        "state": task.state.value,
        "state_reason": task.state_reason,
        "created_at": task.created_at.isoformat(),
        "expires_at": task.expires_at.isoformat(),
        "acting_for": (
            {"issuer": task.acting_for.issuer, "subject": task.acting_for.subject, "verified": True}
            if task.acting_for is not None
            else None
        ),
        "parent_task_id": task.parent_task_id,
        "delegation": task.delegation.to_dict() if task.delegation is not None else None,
    }


def ended_task_body(report: RevocationReport) -> dict[str, Any]:
    """``DELETE /v1/tasks/{task_id}``: the task ended and what its revocation did."""
    return {
        "task_id": report.task_id,
        "state": TaskState.ENDED.value,
        "revocations_queued": report.queued,
        "revocations_completed": report.completed,
        "revocations_pending": report.pending,
    }


def credential_body(result: CredentialResult) -> dict[str, Any]:
    decision = result.decision.public()
    if result.decision.outcome is Outcome.DENY:
        raise Denied("; ".join(result.decision.reasons[1:] or result.decision.reasons), details={"decision": decision})
    body: dict[str, Any] = {"decision": decision, "credential": None}
    if result.credential is not None:
        cred = result.credential
        body["credential"] = {
            "kind": cred.kind,
            **cred.public,
            **{k: v.reveal() for k, v in cred.secrets.items()},
            "expires_at": cred.expires_at.isoformat(),
            "grant_id": result.grant_id,
        }
    return body


def decision_body(d: StoredDecision, *, naive_timestamps: bool) -> dict[str, Any]:
    """``GET /v1/decisions/{id}`` (explain): the stored record and where it was decided.

    ``naive_timestamps``: SQLite keeps UTC without its zone and this body has always shown
    ``created_at`` as stored (no ``+00:00``); kept so the body stays byte-compatible."""
    created = d.created_at.replace(tzinfo=None) if naive_timestamps else d.created_at
    return {
        **d.record,
        "task_id": d.task_id,
        "agent": d.agent,
        "action": d.action,
        "resource": d.resource,
        "created_at": created.isoformat(),
    }


def audit_event_body(e: AuditEvent) -> dict[str, Any]:
    """An audit event as ``GET /v1/audit`` lists it (with its hash links, to verify offline)."""
    return {
        "seq": e.seq,
        "event_id": e.event_id,
        "ts": e.ts_text,
        "kind": e.kind,
        "actor": e.actor,
        "task_id": e.task_id,
        "outcome": e.outcome,
        "data": e.data,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def vote_body(v: Vote) -> dict[str, Any]:
    return {"approver": v.approver, "subject": dict(v.subject), "reason": v.reason, "at": v.at.isoformat()}


def approval_body(a: Approval) -> dict[str, Any]:
    """An approval as the approvals API shows it; ``state`` as of the read (see ``Approval.as_of``)."""
    return {
        "approval_id": a.approval_id,
        "state": a.state.value,
        "task_id": a.task_id,
        "agent": a.agent,
        "owner": a.owner,
        "action": a.action,
        "resource": a.resource,
        "scope_hash": a.scope_hash,
        "decision_id": a.decision_id,
        "tier": a.tier.value,
        "reasons": list(a.reasons),
        "votes": [vote_body(v) for v in a.votes],
        "decided_by": a.decided_by,
        "decided_by_subject": a.decided_by_subject,
        "decision_reason": a.decision_reason,
        "created_at": _iso(a.created_at),
        "expires_at": _iso(a.expires_at),
        "decided_at": _iso(a.decided_at),
        "collected_at": _iso(a.collected_at),
        "collected_decision_id": a.collected_decision_id,
        "grant_id": a.grant_id,
        "collect_error": a.collect_error,
    }


def review_body(r: Review) -> dict[str, Any]:
    return {
        "review_id": r.review_id,
        "state": r.state.value,
        "decision_id": r.decision_id,
        "task_id": r.task_id,
        "agent": r.agent,
        "action": r.action,
        "resource": r.resource,
        "tier": r.tier.value,
        "grant_id": r.grant_id,
        "reviewer": r.reviewer,
        "reviewer_subject": r.reviewer_subject,
        "reason": r.reason,
        "escalation": dict(r.escalation) if r.escalation is not None else None,
        "created_at": r.created_at.isoformat(),
        "resolved_at": _iso(r.resolved_at),
    }


def registered_body(entry: Registered) -> dict[str, Any]:
    """An agent, profile or resource as the admin API shows it (the table's columns in order, so
    an agent's ``owner_identity`` (migration 0011) after its timestamps; a resource's backend
    settings flattened in after its timestamps)."""
    stamps = {"created_at": entry.created_at.isoformat(), "updated_at": entry.updated_at.isoformat()}
    item = entry.item
    if isinstance(item, Agent):
        return {
            "name": item.name,
            "owner": item.owner,
            "trust_level": item.trust_level.value,
            "description": item.description,
            "identities": [{"issuer": b.issuer, "subject": b.subject, "claims": dict(b.claims)} for b in item.bindings],
            "profiles": list(item.profiles),
            **stamps,
            "owner_identity": item.owner_identity.to_dict() if item.owner_identity is not None else None,
        }
    if isinstance(item, TaskProfile):
        return {
            "name": item.name,
            "allowed_actions": list(item.allowed_actions),
            "ceiling": item.ceiling.value,
            "max_lifetime_seconds": item.max_lifetime_seconds,
            "description": item.description,
            **stamps,
        }
    if isinstance(item, Resource):
        return {
            "name": item.name,
            "kind": item.kind,
            "sensitivity": item.sensitivity.value,
            "environment": item.environment.value,
            "external": item.external,
            "description": item.description,
            **stamps,
            **item.settings,
        }
    assert_never(item)


def unwrap_report_body(report: UnwrapReport) -> dict[str, Any]:
    escalation = revocations_body(report.escalation) if report.escalation is not None else None
    body: dict[str, Any] = {"grant_id": report.grant_id, "verdict": report.verdict, "escalation": escalation}
    if report.rotated is not None:
        body["rotated"] = list(report.rotated)
    return body


def task_view_body(view: TaskView) -> dict[str, Any]:
    return {
        "task": task_body(view.task),
        "chain": {"summary": view.summary.to_dict(), **chain_body(view.chain)},
        "delegations": delegations_body(view.delegations),
    }


def delegations_body(nodes: Sequence[DelegationNode]) -> list[dict[str, Any]]:
    return [
        {
            "task_id": n.task.task_id,
            "agent": n.task.agent,
            "state": n.task.state.value,
            "actions": list(n.task.delegation.actions) if n.task.delegation else [],
            "ceiling": n.task.delegation.ceiling.value if n.task.delegation else None,
            "children": delegations_body(n.children),
        }
        for n in nodes
    ]


def scan_job_body(view: ScheduledJob, *, naive_timestamps: bool) -> dict[str, Any]:
    """A scan job: its name, its spec's fields, the last and next run, when it was defined.

    ``naive_timestamps``: on SQLite this body has always shown ``created_at``/``updated_at`` as
    stored (UTC without a zone); kept so the body stays byte-compatible."""
    job = view.job

    def stamp(value: datetime) -> str:
        return (value.replace(tzinfo=None) if naive_timestamps else value).isoformat()

    return {
        "name": job.name,
        **job.spec.dump(),
        "last_run": job.last_run.to_json() if job.last_run else None,
        "next_run": view.next_run,
        "created_at": stamp(job.created_at),
        "updated_at": stamp(job.updated_at),
    }


def scan_run_body(run: ScanRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job,
        "holder": run.holder,
        "trigger": run.trigger.value,
        "status": run.status.value,
        "started_at": run.started_at.isoformat(),
        "finished_at": _iso(run.finished_at),
        "bytes": run.bytes,
        "findings": run.findings,
        "new_findings": run.new_findings,
        "error": run.error,
    }


def run_summary_body(summary: RunSummary) -> dict[str, Any]:
    return summary.to_json()


def stored_finding_body(f: StoredFinding) -> dict[str, Any]:
    """A scheduled scan's finding as ``/v1/findings`` shows it (never the secret)."""
    return {
        "finding_id": f.finding_id,
        "job": f.job,
        "source_kind": f.source_kind,
        "location": f.location,
        "line": f.line,
        "rule": f.rule,
        "severity": f.severity,
        "fingerprint": f.fingerprint,
        "excerpt": f.excerpt,
        "status": f.status.value,
        "detail": dict(f.detail),
        "occurrences": f.occurrences,
        "first_seen": f.first_seen.isoformat(),
        "last_seen": f.last_seen.isoformat(),
    }


def finding_body(f: Finding, caller: str | None) -> dict[str, Any]:
    """A live scan's finding as the API shows it; another agent's grant is named only as broker-issued."""
    body = f.to_dict()
    if f.grant is not None and caller is not None and f.grant.agent != caller:
        body["grant"] = {"issued_by_broker": True}
    return body


def leaks_body(leaks: Sequence[Leak]) -> list[dict[str, Any]]:
    """What the broker did about its own secrets in the text (the grant is named to no one)."""
    return [{"action": leak.outcome.action.value} for leak in leaks]


def revocations_body(e: Escalation) -> dict[str, Any]:
    """What an escalation's revocation did (admin revoke, unwrap tampering)."""
    return {
        "revocations_queued": e.revocations_queued,
        "revocations_completed": e.revocations_completed,
        "revocations_pending": e.revocations_pending,
    }


def escalation_body(e: Escalation) -> dict[str, Any]:
    return e.to_json()


def event_body(report: EventReport, caller: str) -> dict[str, Any]:
    """``POST /v1/tasks/{id}/events``: the step as recorded (never its text), the escalation it set
    off, what broker-issued secrets in the text set off, and the other findings (redacted)."""
    e = report.event
    body: dict[str, Any] = {
        "event_id": e.event_id,
        "task_id": e.task_id,
        "kind": e.kind.value,
        "at": e.at.isoformat(),
        "text_length": e.text_length,
        "text_fingerprint": e.text_fingerprint,
        "escalation": escalation_body(e.escalation) if e.escalation is not None else None,
    }
    if report.leaks is not None:
        body["leaks"] = leaks_body(report.leaks)
    return {**body, "findings": [finding_body(f, caller) for f in report.findings]}


CHAIN_DECISION_KEYS = (
    "decision_id",
    "outcome",
    "tier",
    "mode",
    "ttl_seconds",
    "uses",
    "reasons",
    "policy_ids",
    "detection",
)


def chain_grant_body(g: Grant) -> dict[str, Any]:
    return {
        "grant_id": g.grant_id,
        "backend": g.backend,
        "resource": g.resource,
        "action": g.action,
        "state": g.state.value,
        "accessor": g.accessor,
        "lease_id": g.lease_id,
        "fingerprints": list(g.fingerprints),
        "issued_at": _iso(g.issued_at),
        "expires_at": _iso(g.expires_at),
        "revoked_at": _iso(g.revoked_at),
    }


def chain_body(chain: ChainRecords) -> dict[str, Any]:
    """The admin chain view: every step in order, with its decision and its grants; events with
    their length and fingerprint (never their text); leak and review reports; the escalations with
    their detector and triggering steps."""
    by_decision: dict[str, list[dict[str, Any]]] = {}
    for g in chain.grants:
        by_decision.setdefault(g.decision_id, []).append(chain_grant_body(g))
    rows: list[tuple[datetime, dict[str, Any]]] = []
    for d in chain.decisions:
        rows.append(
            (
                d.created_at,
                {
                    "kind": StepKind.CREDENTIAL_REQUEST.value,
                    "ref": d.decision_id,
                    "action": d.action,
                    "resource": d.resource,
                    "decision": {k: d.record.get(k) for k in CHAIN_DECISION_KEYS},
                    "grants": by_decision.get(d.decision_id, []),
                },
            )
        )
    for e in chain.events:
        step: dict[str, Any] = {"kind": e.kind.value, "ref": e.event_id}
        if e.kind is StepKind.ESCALATION:
            step.update(e.detail)
        elif e.kind is StepKind.GATEWAY_CALL:  # method, path template, status, byte counts
            step.update({"action": e.action, "resource": e.resource, "gateway": dict(e.detail)})
        else:
            step.update(
                {
                    "action": e.action,
                    "resource": e.resource,
                    "text_length": e.text_length,
                    "text_fingerprint": e.text_fingerprint,
                }
            )
            step.update({k: v for k, v in e.detail.items() if k in ("grant_id", "finding", "review_id")})
        rows.append((e.created_at, step))
    rows.sort(key=lambda r: r[0])
    steps = [{"step": i + 1, "at": _iso(at), **body} for i, (at, body) in enumerate(rows)]
    allowed = [d.tier for d in chain.decisions if d.outcome is Outcome.ALLOW]
    tier = max(allowed, key=lambda t: t.rank).value if allowed else None
    escalations = [s for s in steps if s["kind"] == StepKind.ESCALATION.value]
    return {
        "tier": tier,
        "escalated": bool(escalations),
        "grants": {"active": sum(g.active for g in chain.grants), "total": len(chain.grants)},
        "escalations": escalations,
        "steps": steps,
    }
