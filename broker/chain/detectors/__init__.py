"""Chain escalation detectors: one per file, each with the name the audit trail shows.

Evaluated inline (before issuance) over the chain so far and the candidate step:
``ceiling_exceeded``, ``dangerous_sequence``, ``burst``. Reported from outside the request flow
(:class:`broker.chain.service.ChainService`): ``leaked_secret``, ``review_flagged``,
``admin_revoke``. The inline ones run right after issuance instead for the control modes
``chain.yaml`` checks post-issuance (``detection``); ``post_issuance_check_failed`` escalates a
task whose post-issuance check could not run.
"""

from __future__ import annotations

from broker.chain.config import ChainConfig
from broker.chain.detectors.burst import BurstDetector
from broker.chain.detectors.ceiling import CeilingDetector
from broker.chain.detectors.sequence import SequenceDetector
from broker.chain.model import Detector

LEAKED_SECRET = "leaked_secret"
REVIEW_FLAGGED = "review_flagged"
ADMIN_REVOKE = "admin_revoke"
DELEGATE_ESCALATED = "delegate_escalated"
# a post-issuance check (chain.yaml ``detection``) that could not run: fail closed, revoke the task
POST_ISSUANCE_CHECK_FAILED = "post_issuance_check_failed"


def inline_detectors(config: ChainConfig) -> list[Detector]:
    d = config.detectors
    out: list[Detector] = []
    if d.ceiling_exceeded.enabled:
        out.append(CeilingDetector())
    if d.dangerous_sequence.enabled and d.dangerous_sequence.sequences:
        out.append(SequenceDetector(d.dangerous_sequence.sequences))
    if d.burst.enabled:
        out.append(BurstDetector(d.burst))
    return out


__all__ = [
    "ADMIN_REVOKE",
    "DELEGATE_ESCALATED",
    "LEAKED_SECRET",
    "POST_ISSUANCE_CHECK_FAILED",
    "REVIEW_FLAGGED",
    "BurstDetector",
    "CeilingDetector",
    "SequenceDetector",
    "inline_detectors",
]
