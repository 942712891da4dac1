"""Chain events the agent reports (``POST /v1/tasks/{id}/events``).

The step is recorded (its text never is: length and fingerprint only), a reported tool call runs
the chain's sequence detectors, and the text is scanned: a broker-issued secret in it revokes that
grant and escalates its task (``leaked_secret``) — the answer's ``escalation`` says so when it was
this task's own grant; other secrets come back as findings, redacted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from broker.audit import AuditLog
from broker.chain.model import RecordedEvent, StepKind
from broker.chain.service import ChainService
from broker.models import Agent
from broker.services.scanning import Leak, LiveScanner
from broker.services.tasks import TaskService
from scanners.engine import Finding


@dataclass(frozen=True, slots=True)
class EventReport:
    event: RecordedEvent  # the step as recorded, and the escalation it set off
    leaks: tuple[Leak, ...] | None  # what each broker-issued secret in the text set off (None: no text)
    findings: tuple[Finding, ...]  # secrets found in the text (presented per caller by the API)


class EventService:
    def __init__(self, tasks: TaskService, chain: ChainService, scanning: LiveScanner, audit: AuditLog) -> None:
        self.tasks = tasks
        self.chain = chain
        self.scanning = scanning
        self.audit = audit

    def report(
        self, agent: Agent, task_id: str, kind: StepKind, text: str | None, action: str | None, resource: str | None
    ) -> EventReport:
        task = self.tasks.task_for(agent, task_id)
        with self.chain.lock(task_id):
            self.tasks.ensure_active(task, datetime.now(UTC))
            event = self.chain.record_event(agent, task, kind, text, action, resource)
            findings: tuple[Finding, ...] = ()
            leaks: tuple[Leak, ...] | None = None
            if text:
                outcome = self.scanning.scan_sync(text, source=f"event:{task_id}:{kind.value}")
                findings = outcome.result.findings
                if findings:
                    self.audit.record(
                        "finding.detected",
                        actor=agent.name,
                        task_id=task_id,
                        outcome=str(len(findings)),
                        data={
                            "source": f"event:{kind.value}",
                            "event_id": event.event_id,
                            "findings": [
                                {
                                    "rule": f.rule_id,
                                    "fingerprint": f.fingerprint,
                                    "line": f.line,
                                    "span": [f.start, f.end],
                                }
                                for f in findings
                            ],
                        },
                    )
                leaks = outcome.leaks
                # a leak of this task's own grant escalated it: say so, like a detector hit would
                own = next(
                    (
                        leak.outcome.escalation
                        for leak in leaks
                        if leak.task_id == task_id and leak.outcome.escalation is not None
                    ),
                    None,
                )
                if event.escalation is None and own is not None:
                    event = replace(event, escalation=own)
            return EventReport(event, leaks, findings)
