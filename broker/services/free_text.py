"""Agent free text the broker keeps (a task's ``purpose``, ``on_behalf_of``) is scanned like
event text before it is stored: a secret in it is stored redacted, never verbatim (the audit
trail included), reported as a finding (``finding.detected``), and a broker-issued secret is a
leak: its grant is revoked and its task escalated, like anywhere else (``finding.leaked_grant``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.audit import AuditLog
from broker.models import Agent
from broker.services.scanning import ScanService, finding_body


@dataclass(frozen=True, slots=True)
class Screened:
    text: str  # what may be stored: every secret replaced by its label
    findings: tuple[dict[str, Any], ...]
    leaks: tuple[dict[str, Any], ...]


def screen(scanning: ScanService, audit: AuditLog, agent: Agent, text: str, *, field: str,
           max_length: int) -> Screened:
    outcome = scanning.scan_sync(text, source=f"{field}:{agent.name}")
    if not outcome.result.findings:
        return Screened(text, (), ())
    findings = tuple(finding_body(f, agent.name) for f in outcome.result.findings)
    audit.record("finding.detected", actor=agent.name, outcome=str(len(findings)),
                 data={"source": field, "findings": [{k: f[k] for k in ("rule", "fingerprint", "line", "span")}
                                                     for f in findings]})
    leaks = tuple({"action": leak["action"]} for leak in outcome.leaks)
    return Screened(outcome.result.redacted_text[:max_length], findings, leaks)
