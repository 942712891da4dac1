"""The ``managed_secrets`` table: where each managed secret's value lives, its fingerprints and
state. The only SQL of the rotation package; values are never written here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from broker.store import tables as t
from broker.store.repo import utcnow
from broker.store.rows import aware_opt
from rotation.playbooks.base import Kind, ManagedSecret, SecretState

ms = t.managed_secrets


def to_secret(row: Any) -> ManagedSecret:
    return ManagedSecret(
        name=row["name"],
        kind=Kind(row["kind"]),
        settings=dict(row["settings"] or {}),
        kv_mount=row["kv_mount"],
        kv_path=row["kv_path"],
        max_age_seconds=row["max_age_seconds"],
        overlap_seconds=row["overlap_seconds"],
        state=SecretState(row["state"]),
        fingerprints_current=tuple(row["fingerprints_current"] or ()),
        fingerprints_previous=tuple(row["fingerprints_previous"] or ()),
        current_ref=dict(row["current_ref"] or {}),
        previous_ref=dict(row["previous_ref"]) if row["previous_ref"] is not None else None,
        retire_at=aware_opt(row["retire_at"]),
        rotated_at=aware_opt(row["rotated_at"]),
        next_attempt_at=aware_opt(row["next_attempt_at"]),
        last_error=row["last_error"],
    )


def get(conn: Connection, name: str) -> ManagedSecret | None:
    row = conn.execute(select(ms).where(ms.c.name == name)).first()
    return to_secret(row._mapping) if row else None


def all_secrets(conn: Connection) -> list[ManagedSecret]:
    return [to_secret(r._mapping) for r in conn.execute(select(ms).order_by(ms.c.name)).all()]


def put(conn: Connection, secret: ManagedSecret) -> bool:
    """Insert or replace the definition (kind, location, settings, schedule); keeps rotation state."""
    now = utcnow()
    values = {
        "kind": secret.kind.value,
        "kv_mount": secret.kv_mount,
        "kv_path": secret.kv_path,
        "settings": dict(secret.settings),
        "max_age_seconds": secret.max_age_seconds,
        "overlap_seconds": secret.overlap_seconds,
        "updated_at": now,
    }
    if conn.execute(select(ms.c.name).where(ms.c.name == secret.name)).first() is None:
        conn.execute(
            insert(ms).values(
                name=secret.name,
                state=SecretState.PENDING.value,
                fingerprints_current=[],
                fingerprints_previous=[],
                current_ref={},
                created_at=now,
                **values,
            )
        )
        return True
    conn.execute(update(ms).where(ms.c.name == secret.name).values(**values))
    return False


def remove(conn: Connection, name: str) -> bool:
    return bool(conn.execute(delete(ms).where(ms.c.name == name)).rowcount)


def claim(conn: Connection, name: str, stale_before: datetime) -> ManagedSecret | None:
    """Mark ``rotating`` unless another rotation holds it (one stuck since ``stale_before`` is taken)."""
    res = conn.execute(
        update(ms)
        .where(
            and_(
                ms.c.name == name,
                or_(ms.c.state != SecretState.ROTATING.value, ms.c.updated_at < stale_before),
            )
        )
        .values(state=SecretState.ROTATING.value, updated_at=utcnow())
    )
    return get(conn, name) if res.rowcount else None


def update_fields(conn: Connection, name: str, **values: Any) -> None:
    if "state" in values and isinstance(values["state"], SecretState):
        values["state"] = values["state"].value
    conn.execute(update(ms).where(ms.c.name == name).values(updated_at=utcnow(), **values))


def due_for_rotation(conn: Connection, now: datetime) -> list[ManagedSecret]:
    rows = conn.execute(
        select(ms).where(and_(ms.c.max_age_seconds.is_not(None), ms.c.state != SecretState.ROTATING.value))
    ).all()
    out = []
    for r in rows:
        s = to_secret(r._mapping)
        if s.next_attempt_at is not None and s.next_attempt_at > now:
            continue
        if s.rotated_at is None or (now - s.rotated_at).total_seconds() >= (s.max_age_seconds or 0):
            out.append(s)
    return out


def due_for_retirement(conn: Connection, now: datetime) -> list[str]:
    rows = conn.execute(
        select(ms.c.name).where(
            and_(ms.c.retire_at.is_not(None), ms.c.retire_at <= now, ms.c.state != SecretState.ROTATING.value)
        )
    ).all()
    return [r.name for r in rows]
