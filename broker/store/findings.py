"""SQL for the findings of scheduled scans (``scan_findings``): read them as typed rows, change
their status. Recording them (de-duplicated, with the source's state) is the runner's checkpoint:
:meth:`broker.store.scan_jobs.ScanStore.commit_checkpoint`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, or_, select, update

from broker.models import FindingStatus
from broker.store import tables as t
from broker.store.rows import aware_ts

F = t.scan_findings.c


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """A detected secret as stored: never the secret — its keyed fingerprint, rule, where it was
    and a redacted excerpt. ``detail`` holds what the source and the actions added (commit, path,
    the grant or managed secret acted on, triage)."""

    finding_id: str
    job: str
    source_kind: str
    location: str
    line: int | None
    rule: str
    severity: str
    fingerprint: str
    excerpt: str
    status: FindingStatus
    detail: Mapping[str, Any]
    occurrences: int
    first_seen: datetime
    last_seen: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> StoredFinding:
        return cls(
            finding_id=m["finding_id"],
            job=m["job"],
            source_kind=m["source_kind"],
            location=m["location"],
            line=m["line"],
            rule=m["rule"],
            severity=m["severity"],
            fingerprint=m["fingerprint"],
            excerpt=m["excerpt"],
            status=FindingStatus(m["status"]),
            detail=dict(m["detail"] or {}),
            occurrences=int(m["occurrences"]),
            first_seen=aware_ts(m["first_seen"]),
            last_seen=aware_ts(m["last_seen"]),
        )


def list_findings(
    conn: Connection,
    *,
    status: str | None = None,
    job: str | None = None,
    rule: str | None = None,
    source: str | None = None,
    fingerprint: str | None = None,
    since: datetime | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 100,
) -> list[StoredFinding]:
    """Most recently seen first. ``before``: the (last_seen, finding_id) of the last row of the
    previous page (keyset pagination)."""
    q = select(t.scan_findings)
    for col, value in (
        (F.status, status),
        (F.job, job),
        (F.rule, rule),
        (F.source_kind, source),
        (F.fingerprint, fingerprint),
    ):
        if value is not None:
            q = q.where(col == value)
    if since is not None:
        q = q.where(F.last_seen >= since)
    if before is not None:
        seen, finding_id = before
        q = q.where(or_(F.last_seen < seen, and_(F.last_seen == seen, F.finding_id > finding_id)))
    rows = conn.execute(q.order_by(F.last_seen.desc(), F.finding_id).limit(limit))
    return [StoredFinding.from_row(r._mapping) for r in rows]


def get_finding(conn: Connection, finding_id: str) -> StoredFinding | None:
    row = conn.execute(select(t.scan_findings).where(F.finding_id == finding_id)).first()
    return StoredFinding.from_row(row._mapping) if row else None


def set_status(conn: Connection, finding_id: str, status: FindingStatus, extra: Mapping[str, Any]) -> None:
    """Set the status and merge ``extra`` into the finding's detail."""
    row = conn.execute(select(F.detail).where(F.finding_id == finding_id)).first()
    detail = {**((row.detail if row else None) or {}), **extra}
    conn.execute(update(t.scan_findings).where(F.finding_id == finding_id).values(status=status.value, detail=detail))
