"""The admin chain view (``GET /v1/admin/tasks/{task_id}``): every step in order, with its
decision and its grants; events with their length and fingerprint (never their text); leak and
review reports; and the escalations with their detector and triggering steps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.chain import store as chain_store
from broker.chain.model import ChainEvent, StepKind
from broker.models import Grant, Outcome
from broker.store.repo import Store
from broker.store.rows import StoredDecision

DECISION_KEYS = ("decision_id", "outcome", "tier", "mode", "ttl_seconds", "uses", "reasons", "policy_ids")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _grant(g: Grant) -> dict[str, Any]:
    return {"grant_id": g.grant_id, "backend": g.backend, "resource": g.resource, "action": g.action,
            "state": g.state.value, "accessor": g.accessor, "lease_id": g.lease_id,
            "fingerprints": list(g.fingerprints), "issued_at": _iso(g.issued_at),
            "expires_at": _iso(g.expires_at), "revoked_at": _iso(g.revoked_at)}


@dataclass(frozen=True, slots=True)
class ChainRecords:
    """Everything the chain view shows of one task, as stored."""

    decisions: tuple[StoredDecision, ...]
    events: tuple[ChainEvent, ...]
    grants: tuple[Grant, ...]


def load(store: Store, task_id: str) -> ChainRecords:
    with store.read() as conn:
        return ChainRecords(decisions=tuple(chain_store.decision_rows(conn, task_id)),
                            events=tuple(chain_store.events(conn, task_id)),
                            grants=tuple(store.grants(conn, task_id)))


def chain_body(chain: ChainRecords) -> dict[str, Any]:
    by_decision: dict[str, list[dict[str, Any]]] = {}
    for g in chain.grants:
        by_decision.setdefault(g.decision_id, []).append(_grant(g))
    rows: list[tuple[datetime, dict[str, Any]]] = []
    for d in chain.decisions:
        rows.append((d.created_at, {
            "kind": StepKind.CREDENTIAL_REQUEST.value, "ref": d.decision_id, "action": d.action,
            "resource": d.resource, "decision": {k: d.record.get(k) for k in DECISION_KEYS},
            "grants": by_decision.get(d.decision_id, [])}))
    for e in chain.events:
        step: dict[str, Any] = {"kind": e.kind.value, "ref": e.event_id}
        if e.kind is StepKind.ESCALATION:
            step.update(e.detail)
        else:
            step.update({"action": e.action, "resource": e.resource, "text_length": e.text_length,
                         "text_fingerprint": e.text_fingerprint})
            step.update({k: v for k, v in e.detail.items() if k in ("grant_id", "finding", "review_id")})
        rows.append((e.created_at, step))
    rows.sort(key=lambda r: r[0])
    steps = [{"step": i + 1, "at": _iso(at), **body} for i, (at, body) in enumerate(rows)]
    allowed = [d.tier for d in chain.decisions if d.outcome is Outcome.ALLOW]
    tier = max(allowed, key=lambda t: t.rank).value if allowed else None
    escalations = [s for s in steps if s["kind"] == StepKind.ESCALATION.value]
    return {"tier": tier, "escalated": bool(escalations),
            "grants": {"active": sum(g.active for g in chain.grants), "total": len(chain.grants)},
            "escalations": escalations, "steps": steps}
