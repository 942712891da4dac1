"""Agent free text the broker keeps (a task's ``purpose``, ``on_behalf_of``) is scanned like
event text before it is stored: a secret in it is stored redacted, never verbatim (the audit
trail included), reported as a finding (``finding.detected``), and a broker-issued secret is a
leak: its grant is revoked and its task escalated, like anywhere else (``finding.leaked_grant``).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.audit import AuditLog
from broker.models import Agent
from broker.services.scanning import Leak, LiveScanner
from scanners.engine import Finding


@dataclass(frozen=True, slots=True)
class Screened:
    text: str  # what may be stored: every secret replaced by its label
    findings: tuple[Finding, ...]  # presented per caller by the API
    leaks: tuple[Leak, ...]


def screen(scanning: LiveScanner, audit: AuditLog, agent: Agent, text: str, *, field: str, max_length: int) -> Screened:
    outcome = scanning.scan_sync(text, source=f"{field}:{agent.name}")
    findings = outcome.result.findings
    if not findings:
        return Screened(text, (), ())
    audit.record(
        "finding.detected",
        actor=agent.name,
        outcome=str(len(findings)),
        data={
            "source": field,
            "findings": [
                {"rule": f.rule_id, "fingerprint": f.fingerprint, "line": f.line, "span": [f.start, f.end]}
                for f in findings
            ],
        },
    )
    return Screened(outcome.result.redacted_text[:max_length], tuple(findings), tuple(outcome.leaks))
