"""Scenarios the console's Tasks / Decisions / Findings / Audit pages are tested on, played against a
real broker (its agent API over HTTP, real OpenBao): an escalated task with a delegated sub-task,
a step-up waiting for approval, a scheduled scan's findings."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.broker import RunningBroker
from support.wait import wait_until

from broker.client import CredentialDenied
from broker.identity.dev_issuer import DEV_ISSUER
from broker.models import Agent, IdentityBinding, Tier, TrustLevel
from broker.store import outbox

# agent-controlled text: the page must show it as text, never run it
XSS = '<script>alert("xss")</script><img src=x onerror=alert(1)>'


@dataclass(frozen=True)
class Escalated:
    task_id: str
    child_task_id: str
    read_decision: str
    secret_decision: str
    export_decision: str


def escalated_task(b: RunningBroker) -> Escalated:
    """db.read, secrets.read, a sub-task delegated to ``helper-agent``, then data.export: the
    ``secret_then_export`` sequence escalates; every revocation confirmed by OpenBao."""
    c = b.container
    c.registry.put_agent(
        Agent(
            name="helper-agent",
            owner="platform-team",
            trust_level=TrustLevel.STANDARD,
            bindings=(IdentityBinding(DEV_ISSUER, "helper-agent"),),
            profiles=("demo",),
        ),
        "test",
    )
    agent = b.agent()
    task_id = agent.open_task("demo", f"nightly export {XSS}", on_behalf_of=f"mallory {XSS}")["task_id"]
    read = agent.request_credential(task_id, "db.read", "demo-data")
    secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")
    with c.store.read() as conn:
        demo = c.store.get_agent(conn, "demo-agent")
    assert demo is not None
    child = c.tasks.delegate(
        demo,
        task_id,
        to_agent="helper-agent",
        actions=["db.read"],
        ceiling=Tier.MEDIUM,
        lifetime_seconds=None,
        purpose=f"read the numbers {XSS}",
    )
    with pytest.raises(CredentialDenied) as denied:
        agent.request_credential(task_id, "data.export", "demo-data")

    wait_until(lambda: revocations_confirmed(b, task_id), what="the escalation's revocations to be confirmed")
    return Escalated(
        task_id=task_id,
        child_task_id=child.task_id,
        read_decision=read.decision["decision_id"],
        secret_decision=secret.decision["decision_id"],
        export_decision=denied.value.decision["decision_id"],
    )


def revocations_confirmed(b: RunningBroker, task_id: str) -> bool:
    """The task has revocations queued and the backend confirmed every one."""
    with b.container.store.read() as conn:
        rows = outbox.for_task(conn, task_id)
    return bool(rows) and all(r.completed_at is not None for r in rows)


@dataclass(frozen=True)
class SteppedUp:
    task_id: str
    read_decision: str
    decision_id: str
    approval_id: str


def stepped_up_task(b: RunningBroker) -> SteppedUp:
    """A read, then a critical payment: step-up, an approval pending."""
    agent = b.agent()
    task_id = agent.open_task("demo", "charge the invoice")["task_id"]
    read = agent.request_credential(task_id, "db.read", "demo-data")
    pending = agent.request_credential(task_id, "payments.charge", "prod-payments")
    assert pending.decision["outcome"] == "step_up" and pending.approval_id
    return SteppedUp(task_id, read.decision["decision_id"], pending.decision["decision_id"], pending.approval_id)


def aws_key() -> str:
    return "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def findings_of_a_scan(b: RunningBroker, directory: Path, job: str, count: int) -> None:
    """A scheduled scan job over a file with ``count`` planted AWS key ids, run once."""
    log = directory / f"{job}.log"
    log.write_text("".join(f"line {i} {aws_key()}\n" for i in range(count)))
    admin = b.admin()
    admin.request(
        "PUT",
        f"/v1/admin/scan-jobs/{job}",
        {"source": {"kind": "files", "path": str(log)}, "schedule": {"every_seconds": 3600}},
    )
    admin.request("POST", f"/v1/admin/scan-jobs/{job}/run")
