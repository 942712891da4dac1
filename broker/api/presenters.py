"""Mapping service results to response bodies (the secret is revealed here, at the edge)."""

from __future__ import annotations

from typing import Any

from broker.errors import Denied
from broker.models import Outcome, Task
from broker.services.events import EventReport
from broker.services.incidents import UnwrapReport
from broker.services.tasks import CredentialResult, TaskView
from scanners.engine import Finding


def task_body(task: Task) -> dict[str, Any]:
    return {"task_id": task.task_id, "agent": task.agent, "profile": task.profile, "purpose": task.purpose,
            "on_behalf_of": task.on_behalf_of, "state": task.state.value, "state_reason": task.state_reason,
            "created_at": task.created_at.isoformat(), "expires_at": task.expires_at.isoformat(),
            "acting_for": ({"issuer": task.acting_for.issuer, "subject": task.acting_for.subject, "verified": True}
                           if task.acting_for is not None else None),
            "parent_task_id": task.parent_task_id,
            "delegation": task.delegation.to_dict() if task.delegation is not None else None}


def credential_body(result: CredentialResult) -> dict[str, Any]:
    decision = result.decision.public()
    if result.decision.outcome is Outcome.DENY:
        raise Denied("; ".join(result.decision.reasons[1:] or result.decision.reasons),
                     details={"decision": decision})
    body: dict[str, Any] = {"decision": decision, "credential": None}
    if result.credential is not None:
        cred = result.credential
        body["credential"] = {"kind": cred.kind, **cred.public,
                              **{k: v.reveal() for k, v in cred.secrets.items()},
                              "expires_at": cred.expires_at.isoformat(), "grant_id": result.grant_id}
    return body


def unwrap_report_body(report: UnwrapReport) -> dict[str, Any]:
    body: dict[str, Any] = {"grant_id": report.grant_id, "verdict": report.verdict, "escalation": report.escalation}
    if report.rotated is not None:
        body["rotated"] = list(report.rotated)
    return body


def task_view_body(view: TaskView) -> dict[str, Any]:
    return {"task": task_body(view.task), "chain": {"summary": view.summary.to_dict(), **view.chain},
            "delegations": view.delegations}


def finding_body(f: Finding, caller: str | None) -> dict[str, Any]:
    """A live scan's finding as the API shows it; another agent's grant is named only as broker-issued."""
    body = f.to_dict()
    if f.grant is not None and caller is not None and f.grant.agent != caller:
        body["grant"] = {"issued_by_broker": True}
    return body


def event_body(report: EventReport, caller: str) -> dict[str, Any]:
    return {**report.result, "findings": [finding_body(f, caller) for f in report.findings]}
