"""The audit trail: append-only, keyed hash chain.

Each event's hash is HMAC-SHA256, under the audit key (:mod:`broker.audit.keys`, never in the
database), over the previous event's hash and the canonical JSON of the event (seq, event_id, ts,
kind, actor, task_id, outcome, data). Without the key, a row cannot be rewritten, inserted or
re-chained so that it verifies. What the chain alone cannot show — the last events deleted and the
head moved back — the signed checkpoints exported outside the database show
(:mod:`broker.audit.checkpoints`).

Stores written before the chain was keyed (plain SHA-256 links) keep their rows as they are: the
first keyed event is an ``audit.chain_keyed`` anchor whose MAC covers the last legacy hash, so from
that moment the legacy prefix cannot change either (see docs/design-notes.md).

A single ``audit_head`` row is updated *first* in each append: a row lock on PostgreSQL held to the
end of the transaction (replicas append one at a time), and SQLite writers are serialised by
:class:`~broker.store.repo.Store`. The events of one transaction may be appended together
(:meth:`AuditLog.batch`): one head update takes the lock and reserves their sequence numbers, one
insert (one executemany) writes them, linked one to the next, and one update moves the head to the last —
three statements for the batch instead of three per event, the same chain (two on PostgreSQL,
where the insert rides in a data-modifying CTE of the head's update).

Event kinds are fixed names: ``auth.failed``, ``task.opened``, ``task.ended``, ``decision.allowed``,
``decision.denied``, ``decision.step_up``, ``credential.issued``, ``credential.revoked``,
``task.revoked``, ``admin.changed``, ``audit.chain_keyed``, ...
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update

from broker.audit.chain import ANCHOR_KIND, GENESIS, event_fields, keyed_digest
from broker.audit.checkpoints import Checkpoint
from broker.audit.keys import ALGORITHM, AuditKey, AuditKeyError
from broker.audit.verify import ChainHead, VerifyResult, walk
from broker.errors import BrokerError
from broker.logging import _redact
from broker.store import tables as t
from broker.store.repo import Store, utcnow
from broker.store.rows import aware_ts

__all__ = ["ANCHOR_KIND", "GENESIS", "AuditLog", "VerifyResult"]


class _Raced(Exception):
    pass


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A stored audit event and its link: ``hash`` covers ``prev_hash`` and the event's fields
    (:func:`broker.audit.chain.event_fields`)."""

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


@dataclass(slots=True)
class AuditBatch:
    """Events of one write transaction, appended to the chain together when the batch closes
    (:meth:`AuditLog.batch`). Each event's id is known at once; its seq, timestamp and link are
    given under the head's lock."""

    pending: list[dict[str, Any]] = field(default_factory=list)

    def append(
        self,
        kind: str,
        *,
        actor: str,
        task_id: str | None = None,
        outcome: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> str:
        event_id = uuid.uuid4().hex
        self.pending.append(
            {
                "event_id": event_id,
                "kind": kind,
                "actor": actor,
                "task_id": task_id,
                "outcome": outcome,
                # copied (and redacted) now: the caller's mapping may change before the flush
                "data": _redact(json.loads(json.dumps(dict(data or {}), default=str))),
            }
        )
        return event_id


def _event_of(r: Any) -> AuditEvent:
    return AuditEvent(
        seq=int(r.seq),
        event_id=r.event_id,
        ts=aware_ts(r.ts),
        kind=r.kind,
        actor=r.actor,
        task_id=r.task_id,
        outcome=r.outcome,
        data=r.data,
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


_EVENT_COLUMNS = ("seq", "event_id", "ts", "kind", "actor", "task_id", "outcome", "data", "prev_hash", "hash")
_CACHED_BATCH_SIZES = 16


@functools.cache
def _pg_append(n: int) -> Any:
    """PostgreSQL: a batch of ``n`` events inserted in a data-modifying CTE of the head's update
    (one statement), as typed text with named bind parameters (``seq_0``, ``hash_1``, ...), built
    once per ``n``. SQLAlchemy cannot cache a multi-row ``insert().values()`` (its cache key is
    None), so that form was compiled on every request: a third of the audit's CPU."""
    columns = ", ".join(_EVENT_COLUMNS)
    values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in _EVENT_COLUMNS) + ")" for i in range(n))
    # only constant column names and generated parameter names go into the text: values are bound
    sql = (
        f"WITH appended AS (INSERT INTO audit_events ({columns}) VALUES {values}) "  # noqa: S608
        "UPDATE audit_head SET hash = :new_hash WHERE audit_head.id = 1"
    )
    params = [bindparam(f"{c}_{i}", type_=t.audit_events.c[c].type) for i in range(n) for c in _EVENT_COLUMNS]
    return text(sql).bindparams(*params, bindparam("new_hash", type_=t.audit_head.c.hash.type))


class AuditLog:
    def __init__(self, store: Store, key: AuditKey) -> None:
        self.store = store
        self.key = key

    # statements built once (bound at execution): this runs twice per credential request
    _BUMP = (
        update(t.audit_head)
        .where(t.audit_head.c.id == 1)
        .values(seq=t.audit_head.c.seq + bindparam("n"))
        .returning(t.audit_head.c.seq, t.audit_head.c.hash, t.audit_head.c.key_id)
    )
    _INSERT = insert(t.audit_events)
    _SET_HEAD = update(t.audit_head).where(t.audit_head.c.id == 1).values(hash=bindparam("new_hash"))
    _SET_KEY = update(t.audit_head).where(t.audit_head.c.id == 1).values(key_id=bindparam("new_key_id"))

    def check_key(self) -> None:
        """Start-up check: the chain is unkeyed (it will be anchored) or keyed with this key."""
        with self.store.read() as conn:
            head = conn.execute(select(t.audit_head)).first()
        if head is None:
            raise BrokerError("audit head row is missing; run `nhi-broker audit verify`")
        if head.key_id is not None and head.key_id != self.key.key_id:
            raise AuditKeyError(
                f"the audit chain is keyed with {head.key_id} but this broker's audit key is "
                f"{self.key.key_id}: restore the audit key (audit.key / audit.key_file)"
            )

    def append(
        self,
        conn: Connection,
        kind: str,
        *,
        actor: str,
        task_id: str | None = None,
        outcome: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> str:
        """Append inside the caller's write transaction (so the event commits with the change)."""
        batch = AuditBatch()
        event_id = batch.append(kind, actor=actor, task_id=task_id, outcome=outcome, data=data)
        self._flush(conn, batch.pending)
        return event_id

    @contextmanager
    def batch(self, conn: Connection) -> Iterator[AuditBatch]:
        """Collect the events of the caller's write transaction and append them together when the
        block ends (three statements for the batch). Nothing is written if the block raises: the
        transaction rolls back anyway."""
        events = AuditBatch()
        yield events
        self._flush(conn, events.pending)

    def _flush(self, conn: Connection, pending: Sequence[dict[str, Any]]) -> None:
        if not pending:
            return
        # lock the head first (row lock on PostgreSQL; SQLite writers are serialised by Store) and
        # reserve the batch's sequence numbers
        last, prev, key_id = self._bump(conn, len(pending))
        first = last - len(pending) + 1
        if key_id != self.key.key_id:
            if key_id is not None:
                raise AuditKeyError(
                    f"the audit chain is keyed with {key_id}, not with this broker's key {self.key.key_id}"
                )
            prev = self._anchor(conn, first, prev)  # the anchor takes the first reserved seq
            first += 1
            self._bump(conn)
        ts = utcnow()
        rows = []
        for seq, fields in enumerate(pending, start=first):
            event = {"seq": seq, "ts": ts, **fields}
            digest = keyed_digest(self.key, prev, event_fields(event))
            rows.append({**event, "prev_hash": prev, "hash": digest})
            prev = digest
        if conn.dialect.name == "postgresql":
            # one statement: the rows inserted in a data-modifying CTE of the head's update (run to
            # completion whether or not the update reads it; under the row lock taken above)
            if len(rows) <= _CACHED_BATCH_SIZES:
                params = {f"{c}_{i}": row.get(c) for i, row in enumerate(rows) for c in _EVENT_COLUMNS}
                conn.execute(_pg_append(len(rows)), {**params, "new_hash": prev})
            else:
                rows_cte = insert(t.audit_events).values(rows).cte("appended")
                conn.execute(update(t.audit_head).where(t.audit_head.c.id == 1).values(hash=prev).add_cte(rows_cte))
            return
        if len(rows) == 1:
            conn.execute(self._INSERT, rows[0])
        else:  # one executemany of the cached statement (a multi-VALUES insert compiled per call: 2x slower)
            conn.execute(self._INSERT, rows)
        conn.execute(self._SET_HEAD, {"new_hash": prev})

    def anchor(self) -> bool:
        """Key an unkeyed chain now (start-up of the guard). True when an anchor was written."""
        try:
            with self.store.write() as conn:
                head = conn.execute(select(t.audit_head).where(t.audit_head.c.id == 1)).first()
                if head is None or head.key_id is not None:
                    return False
                seq, prev, key_id = self._bump(conn)
                if key_id is not None:  # another replica anchored between the read and the lock
                    raise _Raced
                self._anchor(conn, seq, prev)
                return True
        except _Raced:  # the bump is rolled back with the transaction
            return False

    def _bump(self, conn: Connection, n: int = 1) -> tuple[int, str, str | None]:
        """Lock the head and advance it by ``n``: the new last seq, the hash before, the key id."""
        head = conn.execute(self._BUMP, {"n": n}).first()
        if head is None:  # the migration creates the head row; its absence is tampering
            raise BrokerError("audit head row is missing; run `nhi-broker audit verify`")
        return int(head.seq), str(head.hash), head.key_id

    def _anchor(self, conn: Connection, seq: int, prev: str) -> str:
        """The first keyed event: its MAC covers the last legacy hash (``prev``)."""
        event = self._event(
            seq,
            ANCHOR_KIND,
            "broker",
            None,
            "keyed",
            {"key_id": self.key.key_id, "algorithm": ALGORITHM, "legacy_events": seq - 1, "legacy_head": prev},
        )
        digest = self._write(conn, event, prev)
        conn.execute(self._SET_KEY, {"new_key_id": self.key.key_id})
        return digest

    def _event(
        self, seq: int, kind: str, actor: str, task_id: str | None, outcome: str | None, data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "seq": seq,
            "event_id": uuid.uuid4().hex,
            "ts": utcnow(),
            "kind": kind,
            "actor": actor,
            "task_id": task_id,
            "outcome": outcome,
            "data": _redact(json.loads(json.dumps(data, default=str))),
        }

    def _write(self, conn: Connection, event: dict[str, Any], prev: str) -> str:
        digest = keyed_digest(self.key, prev, event_fields(event))
        conn.execute(self._INSERT, {**event, "prev_hash": prev, "hash": digest})
        conn.execute(self._SET_HEAD, {"new_hash": digest})
        return digest

    def record(self, kind: str, **kwargs: Any) -> str:
        with self.store.write() as conn:
            return self.append(conn, kind, **kwargs)

    def events(
        self, *, task_id: str | None = None, kind: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEvent]:
        q = select(t.audit_events).where(t.audit_events.c.seq > after_seq)
        if task_id:
            q = q.where(t.audit_events.c.task_id == task_id)
        if kind:
            q = q.where(t.audit_events.c.kind == kind)
        with self.store.read() as conn:
            rows = conn.execute(q.order_by(t.audit_events.c.seq).limit(limit)).all()
        return [_event_of(r) for r in rows]

    def page(
        self,
        *,
        kind: str | None = None,
        task_id: str | None = None,
        actor: str | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Events newest first (the console's audit list); ``before_seq``: the seq of the last
        event of the previous page."""
        c = t.audit_events.c
        q = select(t.audit_events)
        for col, value in ((c.kind, kind), (c.task_id, task_id), (c.actor, actor)):
            if value is not None:
                q = q.where(col == value)
        if before_seq is not None:
            q = q.where(c.seq < before_seq)
        with self.store.read() as conn:
            rows = conn.execute(q.order_by(c.seq.desc()).limit(limit)).all()
        return [_event_of(r) for r in rows]

    # -- verification --------------------------------------------------------------------------
    def head(self) -> ChainHead:
        with self.store.read() as conn:
            row = conn.execute(select(t.audit_head)).first()
        if row is None:
            raise BrokerError("the audit head row is missing (the table was tampered with)")
        return ChainHead(seq=int(row.seq), hash=str(row.hash), key_id=row.key_id)

    def _rows(self, after: int, upto: int, batch: int = 5000) -> Iterator[Any]:
        last = after
        while last < upto:
            with self.store.read() as conn:
                rows = conn.execute(
                    select(t.audit_events)
                    .where(t.audit_events.c.seq > last, t.audit_events.c.seq <= upto)
                    .order_by(t.audit_events.c.seq)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for r in rows:
                yield r._mapping
            last = rows[-1].seq

    def verify(self, checkpoints: Sequence[Checkpoint] = (), *, start: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the chain up to the head read *first* (appends racing the walk are left to the next
        run). ``checkpoints`` (:class:`~broker.audit.checkpoints.Checkpoint`, already signature-
        checked) must all match; ``start`` = a (seq, hash) verified before: walk only what follows."""
        head = self.head()
        after = start[0] if start else 0
        return walk(self.key, self._rows(after, head.seq), head, checkpoints, start=start)
