"""The audit trail: append-only, hash-chained events.

Each event's hash is SHA-256 over the previous event's hash and the canonical JSON of the event
(seq, event_id, ts, kind, actor, task_id, outcome, data). ``verify`` walks the chain and reports
the first modified, inserted or deleted event. A single ``audit_head`` row is updated *first* in
each append, which serialises appenders on both SQLite and PostgreSQL (row lock).

Event kinds are fixed names: ``auth.failed``, ``task.opened``, ``task.ended``, ``decision.allowed``,
``decision.denied``, ``decision.step_up``, ``credential.issued``, ``credential.revoked``,
``task.revoked``, ``admin.changed``, ...
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from broker.logging import _redact
from broker.store import tables as t
from broker.store.repo import Store, aware, utcnow
from broker.store.rows import aware_ts

GENESIS = "0" * 64


def _canonical(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()


def _digest(prev_hash: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(event)).hexdigest()


def _ts(value: datetime) -> str:
    v = aware(value)
    assert v is not None
    return v.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A stored audit event. ``hash`` is SHA-256 over ``prev_hash`` and the canonical JSON of the
    event (seq, event_id, ts, kind, actor, task_id, outcome, data)."""

    seq: int
    event_id: str
    ts: datetime
    kind: str
    actor: str
    task_id: str | None
    outcome: str | None
    data: Mapping[str, Any]
    prev_hash: str
    hash: str

    @property
    def ts_text(self) -> str:
        """The timestamp as it is hashed and shown: ISO 8601 in UTC."""
        return self.ts.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int
    problem: str | None = None
    seq: int | None = None


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    # statements built once (bound at execution): this runs twice per credential request
    _BUMP = (update(t.audit_head).where(t.audit_head.c.id == 1).values(seq=t.audit_head.c.seq + 1)
             .returning(t.audit_head.c.seq, t.audit_head.c.hash))
    _INSERT = insert(t.audit_events)
    _SET_HEAD = update(t.audit_head).where(t.audit_head.c.id == 1).values(hash=bindparam("new_hash"))

    def append(self, conn: Connection, kind: str, *, actor: str, task_id: str | None = None,
               outcome: str | None = None, data: Mapping[str, Any] | None = None) -> str:
        """Append inside the caller's write transaction (so the event commits with the change)."""
        # lock the head first (row lock on PostgreSQL; SQLite writers are serialised by Store)
        head = conn.execute(self._BUMP).first()
        if head is None:  # the migration creates the head row; its absence is tampering
            raise RuntimeError("audit head row is missing; run `nhi-broker audit verify`")
        now = utcnow()
        event = {
            "seq": int(head.seq), "event_id": uuid.uuid4().hex, "ts": now.isoformat(), "kind": kind,
            "actor": actor, "task_id": task_id, "outcome": outcome,
            "data": _redact(json.loads(json.dumps(dict(data or {}), default=str))),
        }
        digest = _digest(head.hash, event)
        conn.execute(self._INSERT, {**event, "ts": now, "prev_hash": head.hash, "hash": digest})
        conn.execute(self._SET_HEAD, {"new_hash": digest})
        return str(event["event_id"])

    def record(self, kind: str, **kwargs: Any) -> str:
        with self.store.write() as conn:
            return self.append(conn, kind, **kwargs)

    def events(self, *, task_id: str | None = None, kind: str | None = None, after_seq: int = 0,
               limit: int = 1000) -> list[AuditEvent]:
        q = select(t.audit_events).where(t.audit_events.c.seq > after_seq)
        if task_id:
            q = q.where(t.audit_events.c.task_id == task_id)
        if kind:
            q = q.where(t.audit_events.c.kind == kind)
        with self.store.read() as conn:
            rows = conn.execute(q.order_by(t.audit_events.c.seq).limit(limit)).all()
        return [AuditEvent(seq=int(r.seq), event_id=r.event_id, ts=aware_ts(r.ts), kind=r.kind, actor=r.actor,
                           task_id=r.task_id, outcome=r.outcome, data=r.data, prev_hash=r.prev_hash,
                           hash=r.hash) for r in rows]

    def _iter_all(self, batch: int = 5000) -> Iterator[Any]:
        last = 0
        while True:
            with self.store.read() as conn:
                rows = conn.execute(select(t.audit_events).where(t.audit_events.c.seq > last)
                                    .order_by(t.audit_events.c.seq).limit(batch)).all()
            if not rows:
                return
            for r in rows:
                yield r._mapping
            last = rows[-1].seq

    def verify(self) -> VerifyResult:
        prev, expected_seq, count = GENESIS, 1, 0
        for row in self._iter_all():
            if row["seq"] != expected_seq:
                return VerifyResult(False, count, f"event {expected_seq} is missing (next is {row['seq']})",
                                    expected_seq)
            if row["prev_hash"] != prev:
                return VerifyResult(False, count, f"event {row['seq']} does not link to the event before it",
                                    row["seq"])
            event = {"seq": row["seq"], "event_id": row["event_id"], "ts": _ts(row["ts"]), "kind": row["kind"],
                     "actor": row["actor"], "task_id": row["task_id"], "outcome": row["outcome"],
                     "data": row["data"]}
            if _digest(prev, event) != row["hash"]:
                return VerifyResult(False, count, f"event {row['seq']} was modified", row["seq"])
            prev, expected_seq, count = row["hash"], expected_seq + 1, count + 1
        with self.store.read() as conn:
            head = conn.execute(select(t.audit_head)).first()
        if head is None:
            return VerifyResult(False, count, "the audit head row is missing", None)
        if head.seq != expected_seq - 1 or head.hash != prev:
            return VerifyResult(False, count, f"the chain ends at event {expected_seq - 1} but the head says "
                                              f"{head.seq} (events were deleted from the end)", head.seq)
        return VerifyResult(True, count)
