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

from broker.chain.model import ChainEvent, ChainStep, StepKind
from broker.models import Outcome, TaskId, Tier
from broker.store import tables as t
from broker.store.repo import utcnow
from broker.store.rows import StoredDecision, aware_ts


def add_event(
    conn: Connection,
    *,
    task_id: str,
    kind: StepKind,
    action: str | None = None,
    resource: str | None = None,
    text_length: int | None = None,
    text_fingerprint: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> tuple[str, datetime]:
    event_id = "evt_" + uuid.uuid4().hex
    created = at or utcnow()
    conn.execute(
        insert(t.chain_events).values(
            event_id=event_id,
            task_id=task_id,
            kind=kind.value,
            action=action,
            resource=resource,
            text_length=text_length,
            text_fingerprint=text_fingerprint,
            detail=dict(detail or {}),
            created_at=created,
        )
    )
    return event_id, created


_EVENTS = (
    select(t.chain_events)
    .where(t.chain_events.c.task_id == bindparam("task_id"))
    .order_by(t.chain_events.c.created_at, t.chain_events.c.event_id)
)
_d = t.decisions.c
_inputs = _d.record["inputs"]
# columns written since revision 0008; older rows fall back to the JSON record (coalesce)
_DECISION_FACTS = (
    select(
        _d.decision_id,
        _d.action,
        _d.resource,
        _d.outcome,
        _d.tier,
        _d.created_at,
        func.coalesce(_d.consequence, _inputs["consequence"].as_string()).label("consequence"),
        func.coalesce(_d.sensitivity, _inputs["sensitivity"].as_string()).label("sensitivity"),
        func.coalesce(_d.external, _inputs["resource_external"].as_boolean()).label("external"),
        _inputs["approval_id"].as_string().label("approval_id"),
    )
    .where(_d.task_id == bindparam("task_id"))
    .order_by(_d.created_at)
)


def events(conn: Connection, task_id: str) -> list[ChainEvent]:
    return [
        ChainEvent(
            event_id=r.event_id,
            task_id=TaskId(r.task_id),
            kind=StepKind(r.kind),
            action=r.action,
            resource=r.resource,
            text_length=r.text_length,
            text_fingerprint=r.text_fingerprint,
            detail=dict(r.detail or {}),
            created_at=aware_ts(r.created_at),
        )
        for r in conn.execute(_EVENTS, {"task_id": task_id})
    ]


def decision_rows(conn: Connection, task_id: str) -> list[StoredDecision]:
    rows = conn.execute(select(t.decisions).where(t.decisions.c.task_id == task_id).order_by(t.decisions.c.created_at))
    return [StoredDecision.from_row(r._mapping) for r in rows]


def decision_steps(conn: Connection, task_id: str, consequence_of: Mapping[str, str]) -> list[ChainStep]:
    """The task's credential requests as chain steps, with only the facts detectors need,
    extracted in SQL (the full JSON records are large; this runs on every request, before
    issuance). Rows before revision 0008 take their facts from the record."""
    return [
        ChainStep(
            ref=r.decision_id,
            kind=StepKind.CREDENTIAL_REQUEST,
            at=aware_ts(r.created_at),
            action=r.action,
            resource=r.resource,
            consequence=r.consequence or consequence_of.get(r.action),
            sensitivity=r.sensitivity,
            external=bool(r.external) if r.external is not None else None,
            tier=Tier(r.tier),
            outcome=Outcome(r.outcome),
            collection=bool(r.approval_id),
        )
        for r in conn.execute(_DECISION_FACTS, {"task_id": task_id})
    ]


def step_from_event(e: ChainEvent) -> ChainStep:
    external = e.detail.get("external")
    return ChainStep(
        ref=e.event_id,
        kind=e.kind,
        at=e.created_at,
        action=e.action,
        resource=e.resource,
        consequence=e.detail.get("consequence"),
        sensitivity=e.detail.get("sensitivity"),
        external=bool(external) if external is not None else None,
    )


def history(conn: Connection, task_id: str, consequence_of: Mapping[str, str]) -> list[ChainStep]:
    steps = decision_steps(conn, task_id, consequence_of)
    steps += [step_from_event(e) for e in events(conn, task_id)]
    steps.sort(key=lambda s: s.at)
    return steps
