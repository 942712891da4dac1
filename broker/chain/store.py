"""The chain's repository: chain events in, ordered chain steps out (the only SQL of the chain).

Credential requests come from the ``decisions`` table (their record keeps the consequence,
sensitivity and externality that were decided on); events, leak and review reports and
escalations come from ``chain_events``. Raw event text is never stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, insert, or_, select

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
_FACTS = (
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
_DECISION_FACTS = select(*_FACTS).where(_d.task_id == bindparam("task_id")).order_by(_d.created_at)


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


# -- the compact history of the request path ---------------------------------------------------
# A step's *signature* is every fact a detector or the policy context reads of an earlier step
# except its time: kind, action, resource, consequence, sensitivity, externality, tier, outcome.
# Two steps with one signature differ for the detectors only in time, and the later one is always
# the better ``first`` of a ``dangerous_sequence`` (``within_seconds`` bounds how old it may be).
# ``burst`` counts only the requests inside its window, and those are read in full.
_e = t.chain_events.c
# The facts are the columns of revision 0008; a row older than that (its facts only in the JSON
# record) is a signature of its own, never compacted (no JSON is parsed to group the rows).
_legacy = case((_d.consequence.is_(None), _d.decision_id), else_=None)
_D_SIG = (_d.action, _d.resource, _d.outcome, _d.tier, _d.consequence, _d.sensitivity, _d.external)
# one pass over the covering index ix_decisions_task_chain (migration 0017): per signature the
# newest and first time and how many
_d_groups = (
    select(
        *_D_SIG,
        _legacy.label("legacy"),
        func.max(_d.created_at).label("newest_at"),
        func.min(_d.created_at).label("first_at"),
        func.count().label("same"),
    )
    .where(_d.task_id == bindparam("task_id"), _d.decision_id != bindparam("exclude"))
    .group_by(*_D_SIG, _legacy)
    .subquery()
)
_g = _d_groups.c
# the chosen rows: the newest of each signature and every request since the burst window's start
# (read from the covering index too: ``created_at`` sits after the JSON record in the row)
_k = t.decisions.alias("k")
_k_legacy = case((_k.c.consequence.is_(None), _k.c.decision_id), else_=None)
_chosen = (
    select(_k.c.decision_id, _g.legacy, _g.first_at, _g.same)
    .join(
        _d_groups,
        and_(
            *(_k.c[col.name].is_not_distinct_from(_g[col.name]) for col in _D_SIG),
            _k_legacy.is_not_distinct_from(_g.legacy),
        ),
    )
    .where(
        _k.c.task_id == bindparam("task_id"),
        _k.c.decision_id != bindparam("exclude"),
        or_(_k.c.created_at == _g.newest_at, _k.c.created_at >= bindparam("since")),
    )
    .distinct()  # not flattened into the outer query: the rows are chosen before any is read
    .subquery()
)
# then the facts (the JSON ``approval_id`` among them) of those rows only
_COMPACT_DECISIONS = select(*_FACTS, _chosen.c.legacy, _chosen.c.first_at, _chosen.c.same).join(
    _chosen, _chosen.c.decision_id == _d.decision_id
)

_E_SIG = (
    _e.kind,
    _e.action,
    _e.resource,
    _e.detail["consequence"].as_string(),
    _e.detail["sensitivity"].as_string(),
    _e.detail["external"].as_boolean(),
)
_e_ranked = (
    select(
        _e.event_id,
        _e.kind,
        _e.action,
        _e.resource,
        _e.detail,
        _e.created_at,
        func.row_number().over(partition_by=_E_SIG, order_by=(_e.created_at.desc(), _e.event_id.desc())).label("rank"),
    )
    .where(_e.task_id == bindparam("task_id"), _e.event_id != bindparam("exclude"))
    .subquery()
)
_COMPACT_EVENTS = select(_e_ranked).where(_e_ranked.c.rank == 1)


@dataclass(frozen=True, slots=True)
class CompactHistory:
    """What a request reads of its task's chain, bounded by the catalog, the registered resources
    and the burst window, never by the history's length: the newest step of each signature, every
    credential request since ``since``, in time order; and the facts of the policy context that
    need the whole history (how many requests; the allowed actions in order of first appearance)."""

    steps: list[ChainStep]
    requests: int
    allowed_actions: tuple[str, ...]


def _decision_step(r: Any, consequence_of: Mapping[str, str]) -> ChainStep:
    return ChainStep(
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


def compact_history(
    conn: Connection, task_id: str, consequence_of: Mapping[str, str], *, since: datetime, exclude: str | None = None
) -> CompactHistory:
    """The request path's history (see :class:`CompactHistory`): two indexed queries whose result
    does not grow with the task's history. ``since``: the start of the burst window (every request
    at or after it is returned); ``exclude``: a step already recorded that is the candidate now."""
    params = {"task_id": task_id, "exclude": exclude or "", "since": since}
    steps: list[ChainStep] = []
    requests = 0
    first_allowed: dict[str, datetime] = {}
    groups: set[tuple[Any, ...]] = set()
    for r in conn.execute(_COMPACT_DECISIONS, params):
        steps.append(_decision_step(r, consequence_of))
        group = (r.action, r.resource, r.outcome, r.tier, r.consequence, r.sensitivity, r.external, r.legacy)
        if group in groups:  # another row of a counted signature (in the window, or a tie)
            continue
        groups.add(group)
        requests += r.same
        if r.outcome == Outcome.ALLOW.value:
            first = aware_ts(r.first_at)
            if r.action not in first_allowed or first < first_allowed[r.action]:
                first_allowed[r.action] = first
    for r in conn.execute(_COMPACT_EVENTS, params):
        steps.append(
            step_from_event(
                ChainEvent(
                    event_id=r.event_id,
                    task_id=TaskId(task_id),
                    kind=StepKind(r.kind),
                    action=r.action,
                    resource=r.resource,
                    text_length=None,
                    text_fingerprint=None,
                    detail=dict(r.detail or {}),
                    created_at=aware_ts(r.created_at),
                )
            )
        )
    steps.sort(key=lambda s: s.at)
    allowed = tuple(sorted(first_allowed, key=lambda a: first_allowed[a]))
    return CompactHistory(steps=steps, requests=requests, allowed_actions=allowed)
