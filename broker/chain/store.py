"""The chain's repository: chain events in, ordered chain steps out (the only SQL of the chain).

Credential requests come from the ``decisions`` table (their record keeps the consequence,
sensitivity and externality that were decided on); events, leak and review reports and
escalations come from ``chain_events``. Raw event text is never stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select

from broker.chain.model import ChainStep, StepKind
from broker.models import Outcome, Tier
from broker.store import tables as t
from broker.store.repo import aware, utcnow


def add_event(conn: Connection, *, task_id: str, kind: StepKind, action: str | None = None,
              resource: str | None = None, text_length: int | None = None, text_fingerprint: str | None = None,
              detail: Mapping[str, Any] | None = None, at: datetime | None = None) -> tuple[str, datetime]:
    event_id = "evt_" + uuid.uuid4().hex
    created = at or utcnow()
    conn.execute(insert(t.chain_events).values(
        event_id=event_id, task_id=task_id, kind=kind.value, action=action, resource=resource,
        text_length=text_length, text_fingerprint=text_fingerprint, detail=dict(detail or {}),
        created_at=created))
    return event_id, created


_EVENTS = (select(t.chain_events).where(t.chain_events.c.task_id == bindparam("task_id"))
           .order_by(t.chain_events.c.created_at, t.chain_events.c.event_id))
_d = t.decisions.c
_inputs = _d.record["inputs"]
# columns written since revision 0008; older rows fall back to the JSON record (coalesce)
_DECISION_FACTS = select(
    _d.decision_id, _d.action, _d.resource, _d.outcome, _d.tier, _d.created_at,
    func.coalesce(_d.consequence, _inputs["consequence"].as_string()).label("consequence"),
    func.coalesce(_d.sensitivity, _inputs["sensitivity"].as_string()).label("sensitivity"),
    func.coalesce(_d.external, _inputs["resource_external"].as_boolean()).label("external"),
    _inputs["approval_id"].as_string().label("approval_id"),
).where(_d.task_id == bindparam("task_id")).order_by(_d.created_at)


def events(conn: Connection, task_id: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(_EVENTS, {"task_id": task_id})]


def decision_rows(conn: Connection, task_id: str) -> list[dict[str, Any]]:
    d = t.decisions.c
    rows = conn.execute(select(d.decision_id, d.action, d.resource, d.outcome, d.tier, d.created_at, d.record)
                        .where(d.task_id == task_id).order_by(d.created_at))
    return [dict(r._mapping) for r in rows]


def decision_facts(conn: Connection, task_id: str) -> list[dict[str, Any]]:
    """Like :func:`decision_rows` but only the facts detectors need, extracted in SQL (the full
    JSON records are large; this runs on every request, before issuance)."""
    return [dict(r._mapping) for r in conn.execute(_DECISION_FACTS, {"task_id": task_id})]


def _ts(value: Any) -> datetime:
    v = aware(value)
    assert v is not None
    return v


def step_from_decision(row: Mapping[str, Any], consequence_of: Mapping[str, str]) -> ChainStep:
    external = row.get("external")
    return ChainStep(
        ref=row["decision_id"], kind=StepKind.CREDENTIAL_REQUEST, at=_ts(row["created_at"]),
        action=row["action"], resource=row["resource"],
        consequence=row.get("consequence") or consequence_of.get(row["action"]),
        sensitivity=row.get("sensitivity"), external=bool(external) if external is not None else None,
        tier=Tier(row["tier"]), outcome=Outcome(row["outcome"]), collection=bool(row.get("approval_id")))


def step_from_event(row: Mapping[str, Any]) -> ChainStep:
    detail = row.get("detail") or {}
    external = detail.get("external")
    return ChainStep(
        ref=row["event_id"], kind=StepKind(row["kind"]), at=_ts(row["created_at"]), action=row["action"],
        resource=row["resource"], consequence=detail.get("consequence"), sensitivity=detail.get("sensitivity"),
        external=bool(external) if external is not None else None)


def history(conn: Connection, task_id: str, consequence_of: Mapping[str, str]) -> list[ChainStep]:
    steps = [step_from_decision(r, consequence_of) for r in decision_facts(conn, task_id)]
    steps += [step_from_event(r) for r in events(conn, task_id)]
    steps.sort(key=lambda s: s.at)
    return steps


def escalations(conn: Connection, task_id: str) -> list[dict[str, Any]]:
    return [e for e in events(conn, task_id) if e["kind"] == StepKind.ESCALATION.value]
