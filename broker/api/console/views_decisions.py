"""View model of the console's decision explain page.

What the decision was (outcome, tier and score with the factors that produced them, control mode,
TTL and uses, reasons), what it was decided on (the recorded inputs: agent, task, action and
consequence, resource sensitivity and environment, the chain so far, the human it acted for), which
Cedar policies decided it and under which bundle hash (and whether that bundle is still the one in
force), and what came of it: the grants it issued, the approval or review it opened, and the chain
detection around it — stopped **before issuance** by a detector, part of a sequence that escalated,
or revoked **after issuance** (a leak, a later escalation) with the revocation's confirmation time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.api.console.query import check_limit, keyset
from broker.approvals import store as approvals_db
from broker.approvals.model import Approval, Review
from broker.chain import store as chain_store
from broker.chain.detectors import LEAKED_SECRET
from broker.chain.model import StepKind
from broker.container import Container
from broker.errors import InvalidInput, NotFound
from broker.models import Grant, Outcome, Task
from broker.store import outbox
from broker.store.rows import Revocation, StoredDecision

DECISION_ID = re.compile(r"^dec_[0-9a-f]{32}$")

# the recorded inputs, in the order the page lists them, with their labels
INPUT_LABELS = (
    ("agent", "agent"),
    ("agent_trust", "agent trust"),
    ("agent_owner", "agent owner"),
    ("task_id", "task"),
    ("profile", "profile"),
    ("profile_ceiling", "profile ceiling"),
    ("action", "action"),
    ("consequence", "consequence class"),
    ("reversible", "reversible"),
    ("resource", "resource"),
    ("resource_kind", "resource kind"),
    ("sensitivity", "sensitivity"),
    ("environment", "environment"),
    ("resource_external", "external"),
    ("on_behalf_of", "on behalf of (as stated)"),
    ("acting_for", "acting for (verified)"),
    ("chain", "chain so far"),
    ("approval_id", "approval presented"),
    ("approval_approved", "approval approved"),
    ("task_purpose", "task purpose"),
    ("decided_at", "decided at"),
)


@dataclass(frozen=True, slots=True)
class Detection:
    """Chain detection around this decision.

    ``stage``: ``pre_issuance`` (a detector denied this request before anything was issued),
    ``in_sequence`` (this step was part of a pattern that escalated later) or ``post_issuance``
    (what this decision issued was revoked afterwards: ``revocation`` says why and when)."""

    stage: str
    detector: str
    rule: str | None
    reason: str
    at: datetime
    revocation: Revocation | None = None


@dataclass(frozen=True, slots=True)
class Factor:
    name: str
    value: Any
    weight: Any  # None when the record has none


@dataclass(frozen=True, slots=True)
class DecisionExplain:
    decision: StoredDecision
    task: Task | None
    grants: tuple[Grant, ...]
    approval: Approval | None
    review: Review | None
    revocations: tuple[Revocation, ...]  # of its grants (or of the task handle covering them)
    detections: tuple[Detection, ...]
    bundle_in_force: bool

    @property
    def record(self) -> Mapping[str, Any]:
        return self.decision.record

    @property
    def score(self) -> Any:
        return self.record.get("score")

    @property
    def uses(self) -> Any:
        return self.record.get("uses")

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(str(r) for r in self.record.get("reasons") or ())

    @property
    def policy_ids(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.record.get("policy_ids") or ())

    @property
    def factors(self) -> tuple[Factor, ...]:
        """The risk model's factors: what each one saw and what it weighed in the score."""
        raw = self.record.get("factors") or {}
        if not isinstance(raw, Mapping):
            return ()
        out = []
        for name, v in raw.items():
            if isinstance(v, Mapping) and "value" in v:
                out.append(Factor(str(name), v.get("value"), v.get("weight")))
            else:
                out.append(Factor(str(name), v, None))
        return tuple(out)

    @property
    def inputs(self) -> tuple[tuple[str, Any], ...]:
        """(label, value) of the recorded inputs, in page order; unknown keys after them."""
        raw = self.record.get("inputs") or {}
        if not isinstance(raw, Mapping):
            return ()
        known = [(label, raw[key]) for key, label in INPUT_LABELS if key in raw]
        seen = {key for key, _ in INPUT_LABELS}
        return (*known, *((k, v) for k, v in raw.items() if k not in seen))


def decision_explain(c: Container, decision_id: str) -> DecisionExplain:
    with c.store.read() as conn:
        decision = c.store.get_decision(conn, decision_id)
        if decision is None:
            raise NotFound(f'decision "{decision_id}" does not exist')
        task = c.store.get_task(conn, decision.task_id)
        grants = tuple(g for g in c.store.grants(conn, decision.task_id) if g.decision_id == decision_id)
        approval = approvals_db.approval_for_decision(conn, decision_id)
        review = approvals_db.review_for_decision(conn, decision_id)
        events = chain_store.events(conn, decision.task_id)
        revocations = outbox.for_task(conn, decision.task_id)
    detections: list[Detection] = []
    for e in events:
        if e.kind is not StepKind.ESCALATION:
            continue
        refs = [str(s.get("ref")) for s in e.detail.get("steps") or () if isinstance(s, Mapping)]
        if decision_id not in refs:
            continue
        last = refs[-1] == decision_id and decision.outcome is Outcome.DENY
        detections.append(
            Detection(
                stage="pre_issuance" if last else "in_sequence",
                detector=str(e.detail.get("detector", "")),
                rule=str(e.detail["rule"]) if e.detail.get("rule") else None,
                reason=str(e.detail.get("reason", "")),
                at=e.created_at,
            )
        )
    # what revoked this decision's grants: their own outbox rows, or the task's parent token's
    # (an OpenBao child covered by it dies with it: one row without a grant id)
    mine = {g.grant_id for g in grants}
    covered = any(g.covered_by_task_handle for g in grants)
    revoked_by = tuple(r for r in revocations if r.grant_id in mine or (covered and r.handle_id is not None))
    detectors = {str(e.detail.get("detector")) for e in events if e.kind is StepKind.ESCALATION} | {LEAKED_SECRET}
    for r in revoked_by:
        detector, _, reason = r.reason.partition(": ")
        if detector in detectors:
            detections.append(Detection("post_issuance", detector, None, reason, r.created_at, r))
    detections.sort(key=lambda d: d.at)
    return DecisionExplain(
        decision=decision,
        task=task,
        grants=grants,
        approval=approval,
        review=review,
        revocations=revoked_by,
        detections=tuple(detections),
        bundle_in_force=decision.bundle_hash == c.policies.bundle_hash,
    )


@dataclass(frozen=True, slots=True)
class DecisionPage:
    """Recent decisions, newest first; ``next_before`` is the decision id to continue after."""

    items: tuple[StoredDecision, ...]
    outcome: Outcome | None
    agent: str | None
    next_before: str | None


def decision_page(
    c: Container, *, outcome: Outcome | None, agent: str | None, before: str | None, limit: int = 50
) -> DecisionPage:
    check_limit(limit)
    with c.store.read() as conn:
        cursor: tuple[datetime, str] | None = None
        if before is not None:
            last = c.store.get_decision(conn, before)
            if last is None:
                raise InvalidInput("before", f'decision "{before}" does not exist')
            cursor = (last.created_at, last.decision_id)
        rows = c.store.recent_decisions(conn, outcome=outcome, agent=agent, before=cursor, limit=limit + 1)
    items, after = keyset(rows, limit, lambda d: d.decision_id)
    return DecisionPage(items, outcome, agent, after)
