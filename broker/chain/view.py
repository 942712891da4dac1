"""The admin chain view (``GET /v1/admin/tasks/{task_id}``): every step in order, with its
decision and its grants; events with their length and fingerprint (never their text); leak and
review reports; and the escalations with their detector and triggering steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.chain import store as chain_store
from broker.chain.model import StepKind
from broker.models import Grant, Outcome, Tier
from broker.store.repo import Store, aware

DECISION_KEYS = ("decision_id", "outcome", "tier", "mode", "ttl_seconds", "uses", "reasons", "policy_ids")


def _iso(value: Any) -> str | None:
    v = aware(value) if isinstance(value, datetime) else None
    return v.isoformat() if v else None


def _grant(g: Grant) -> dict[str, Any]:
    return {"grant_id": g.grant_id, "backend": g.backend, "resource": g.resource, "action": g.action,
            "state": g.state.value, "accessor": g.accessor, "lease_id": g.lease_id,
            "fingerprints": list(g.fingerprints), "issued_at": _iso(g.issued_at),
            "expires_at": _iso(g.expires_at), "revoked_at": _iso(g.revoked_at)}


def chain_view(store: Store, task_id: str) -> dict[str, Any]:
    with store.read() as conn:
        decisions = chain_store.decision_rows(conn, task_id)
        events = chain_store.events(conn, task_id)
        grants = store.grants(conn, task_id)
    by_decision: dict[str, list[dict[str, Any]]] = {}
    for g in grants:
        by_decision.setdefault(g.decision_id, []).append(_grant(g))
    rows: list[tuple[datetime, dict[str, Any]]] = []
    for d in decisions:
        record = d["record"] or {}
        rows.append((aware(d["created_at"]) or d["created_at"], {
            "kind": StepKind.CREDENTIAL_REQUEST.value, "ref": d["decision_id"], "action": d["action"],
            "resource": d["resource"], "decision": {k: record.get(k) for k in DECISION_KEYS},
            "grants": by_decision.get(d["decision_id"], [])}))
    for e in events:
        step: dict[str, Any] = {"kind": e["kind"], "ref": e["event_id"]}
        if e["kind"] == StepKind.ESCALATION.value:
            step.update(e["detail"])
        else:
            step.update({"action": e["action"], "resource": e["resource"], "text_length": e["text_length"],
                         "text_fingerprint": e["text_fingerprint"]})
            step.update({k: v for k, v in (e["detail"] or {}).items() if k in ("grant_id", "finding", "review_id")})
        rows.append((aware(e["created_at"]) or e["created_at"], step))
    rows.sort(key=lambda r: r[0])
    steps = [{"step": i + 1, "at": _iso(at), **body} for i, (at, body) in enumerate(rows)]
    allowed = [Tier(d["tier"]) for d in decisions if d["outcome"] == Outcome.ALLOW.value]
    tier = max(allowed, key=lambda t: t.rank).value if allowed else None
    escalations = [s for s in steps if s["kind"] == StepKind.ESCALATION.value]
    return {"tier": tier, "escalated": bool(escalations),
            "grants": {"active": sum(g.active for g in grants), "total": len(grants)},
            "escalations": escalations, "steps": steps}
