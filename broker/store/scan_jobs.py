"""SQL for scheduled scans: job definitions, leases, incremental state, runs, findings.

The lease is what makes a run happen once when several replicas share one store:

    UPDATE scan_job_leases SET holder=:me, until=:t, last_slot=:slot
    WHERE job=:j AND (until IS NULL OR until < :now) AND (last_slot IS NULL OR last_slot < :slot)

The row lock makes this atomic on PostgreSQL (the loser re-evaluates the WHERE after the winner
commits and updates nothing); SQLite serialises writers. A scheduled run claims its slot (the
interval period it belongs to), so a replica that fires a few milliseconds after another one
finds the slot taken; a manual run claims no slot but still cannot overlap a running one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from broker.models import FindingStatus
from broker.store import tables as t
from broker.store.repo import Store, utcnow
from broker.store.rows import aware_opt, aware_ts
from scanners.jobs.ports import RawFinding, Recorded, RunStatus, RunSummary, Trigger
from scanners.jobs.spec import ScanJobSpec


def dedup_key(fingerprint: str, location: str) -> str:
    return hashlib.sha256(f"{fingerprint}\0{location}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ScanJob:
    """A scan job's definition as stored, with its last run."""

    name: str
    spec: ScanJobSpec
    last_run: RunSummary | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> ScanJob:
        return cls(
            name=m["name"],
            spec=ScanJobSpec.load(m["spec"]),
            last_run=RunSummary.from_json(m["last_run"]) if m["last_run"] else None,
            created_at=aware_ts(m["created_at"]),
            updated_at=aware_ts(m["updated_at"]),
        )


@dataclass(frozen=True, slots=True)
class ScanRun:
    """A row of ``scan_runs``: one run of a job, ``running`` until it finishes."""

    run_id: str
    job: str
    holder: str
    trigger: Trigger
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    bytes: int
    findings: int
    new_findings: int
    error: str | None


@dataclass(frozen=True, slots=True)
class ScanLease:
    """Who runs a job now (``holder`` until ``until``) and the last scheduled slot that ran."""

    job: str
    holder: str | None
    until: datetime | None
    last_slot: int | None


class ScanStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- jobs -------------------------------------------------------------------------------------
    def put_job(self, name: str, spec: ScanJobSpec) -> bool:
        now = utcnow()
        with self.store.write() as conn:
            exists = conn.execute(select(t.scan_jobs.c.name).where(t.scan_jobs.c.name == name)).first()
            if exists is None:
                conn.execute(insert(t.scan_jobs).values(name=name, spec=spec.dump(), created_at=now, updated_at=now))
            else:
                conn.execute(
                    update(t.scan_jobs).where(t.scan_jobs.c.name == name).values(spec=spec.dump(), updated_at=now)
                )
            if conn.execute(select(t.scan_job_leases.c.job).where(t.scan_job_leases.c.job == name)).first() is None:
                conn.execute(insert(t.scan_job_leases).values(job=name))
        return exists is None

    def get_job(self, name: str) -> ScanJob | None:
        with self.store.read() as conn:
            row = conn.execute(select(t.scan_jobs).where(t.scan_jobs.c.name == name)).first()
        return ScanJob.from_row(row._mapping) if row else None

    def list_jobs(self) -> list[ScanJob]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.scan_jobs).order_by(t.scan_jobs.c.name)).all()
        return [ScanJob.from_row(r._mapping) for r in rows]

    def delete_job(self, name: str) -> bool:
        with self.store.write() as conn:
            conn.execute(delete(t.scan_state).where(t.scan_state.c.job == name))
            conn.execute(delete(t.scan_job_leases).where(t.scan_job_leases.c.job == name))
            return bool(conn.execute(delete(t.scan_jobs).where(t.scan_jobs.c.name == name)).rowcount)

    # -- leases -----------------------------------------------------------------------------------
    def claim(self, job: str, holder: str, until: datetime, slot: int | None) -> bool:
        now = utcnow()
        lease = t.scan_job_leases.c
        cond = [lease.job == job, or_(lease.until.is_(None), lease.until < now)]
        values: dict[str, Any] = {"holder": holder, "until": until}
        if slot is not None:
            cond.append(or_(lease.last_slot.is_(None), lease.last_slot < slot))
            values["last_slot"] = slot
        try:
            with self.store.write() as conn:
                if conn.execute(select(lease.job).where(lease.job == job)).first() is None:
                    conn.execute(insert(t.scan_job_leases).values(job=job))
                return bool(conn.execute(update(t.scan_job_leases).where(and_(*cond)).values(**values)).rowcount)
        except IntegrityError:  # another replica inserted the row at the same moment
            return False

    def renew(self, job: str, holder: str, until: datetime) -> bool:
        lease = t.scan_job_leases.c
        with self.store.write() as conn:
            return bool(
                conn.execute(
                    update(t.scan_job_leases).where(and_(lease.job == job, lease.holder == holder)).values(until=until)
                ).rowcount
            )

    def release(self, job: str, holder: str) -> None:
        lease = t.scan_job_leases.c
        with self.store.write() as conn:
            conn.execute(
                update(t.scan_job_leases).where(and_(lease.job == job, lease.holder == holder)).values(until=None)
            )

    def lease(self, job: str) -> ScanLease | None:
        with self.store.read() as conn:
            row = conn.execute(select(t.scan_job_leases).where(t.scan_job_leases.c.job == job)).first()
        if row is None:
            return None
        return ScanLease(job=row.job, holder=row.holder, until=aware_opt(row.until), last_slot=row.last_slot)

    # -- state ------------------------------------------------------------------------------------
    # -- the runner's port (scanners.jobs.ports.JobStore) ------------------------------------------
    def get_spec(self, name: str) -> ScanJobSpec | None:
        job = self.get_job(name)
        return None if job is None else job.spec

    def all_specs(self) -> Mapping[str, ScanJobSpec]:
        return {j.name: j.spec for j in self.list_jobs()}

    def commit_checkpoint(
        self, name: str, source_kind: str, state: Mapping[str, Any | None], raws: Sequence[RawFinding]
    ) -> list[Recorded]:
        with self.store.write() as conn:
            recorded = _record_findings(conn, name, source_kind, raws) if raws else []
            self.apply_state(conn, name, state)
        return recorded

    def load_state(self, job: str) -> dict[str, Any]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.scan_state.c.key, t.scan_state.c.value).where(t.scan_state.c.job == job))
            return {r.key: r.value for r in rows}

    @staticmethod
    def apply_state(conn: Connection, job: str, updates: Mapping[str, Any | None]) -> None:
        s = t.scan_state.c
        for key, value in updates.items():
            conn.execute(delete(t.scan_state).where(and_(s.job == job, s.key == key)))
            if value is not None:
                conn.execute(insert(t.scan_state).values(job=job, key=key, value=value))

    # -- runs -------------------------------------------------------------------------------------
    def start_run(self, job: str, holder: str, trigger: Trigger) -> tuple[str, datetime]:
        run_id, now = "run_" + uuid.uuid4().hex[:20], utcnow()
        with self.store.write() as conn:
            conn.execute(
                insert(t.scan_runs).values(
                    run_id=run_id,
                    job=job,
                    holder=holder,
                    trigger=trigger.value,
                    status=RunStatus.RUNNING.value,
                    started_at=now,
                    bytes=0,
                    findings=0,
                    new_findings=0,
                )
            )
        return run_id, now

    def finish_run(self, job: str, summary: RunSummary) -> None:
        with self.store.write() as conn:
            conn.execute(
                update(t.scan_runs)
                .where(t.scan_runs.c.run_id == summary.run_id)
                .values(
                    status=summary.status.value,
                    finished_at=utcnow(),
                    bytes=summary.bytes,
                    findings=summary.findings,
                    new_findings=summary.new_findings,
                    error=summary.error,
                )
            )
            conn.execute(update(t.scan_jobs).where(t.scan_jobs.c.name == job).values(last_run=summary.to_json()))

    def runs(self, job: str, limit: int = 50) -> list[ScanRun]:
        r = t.scan_runs.c
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.scan_runs).where(r.job == job).order_by(r.started_at.desc()).limit(limit)
            ).all()
        return [
            ScanRun(
                run_id=x.run_id,
                job=x.job,
                holder=x.holder,
                trigger=Trigger(x.trigger),
                status=RunStatus(x.status),
                started_at=aware_ts(x.started_at),
                finished_at=aware_opt(x.finished_at),
                bytes=x.bytes,
                findings=x.findings,
                new_findings=x.new_findings,
                error=x.error,
            )
            for x in rows
        ]

    def count_runs(self, job: str) -> int:
        with self.store.read() as conn:
            return int(
                conn.execute(select(func.count()).select_from(t.scan_runs).where(t.scan_runs.c.job == job)).scalar_one()
            )


def _record_findings(conn: Connection, job: str, kind: str, raws: Sequence[RawFinding]) -> list[Recorded]:
    out: list[Recorded] = []
    f = t.scan_findings.c
    now = utcnow()
    for raw in raws:
        key = dedup_key(raw.fingerprint, raw.location)
        row = conn.execute(select(f.finding_id, f.status, f.detail, f.occurrences).where(f.dedup_key == key)).first()
        if row is None:
            fid = "fnd_" + uuid.uuid4().hex[:20]
            conn.execute(
                insert(t.scan_findings).values(
                    finding_id=fid,
                    dedup_key=key,
                    job=job,
                    source_kind=kind,
                    location=raw.location,
                    line=raw.line,
                    rule=raw.rule,
                    severity=raw.severity,
                    fingerprint=raw.fingerprint,
                    excerpt=raw.excerpt[:500],
                    status=FindingStatus.OPEN.value,
                    detail=dict(raw.meta),
                    occurrences=1,
                    first_seen=now,
                    last_seen=now,
                )
            )
            out.append(Recorded(fid, raw, True, FindingStatus.OPEN.value))
        else:
            detail = {**(row.detail or {}), "last": dict(raw.meta)} if raw.meta else row.detail
            conn.execute(
                update(t.scan_findings)
                .where(f.finding_id == row.finding_id)
                .values(last_seen=now, occurrences=row.occurrences + 1, detail=detail)
            )
            out.append(Recorded(row.finding_id, raw, False, row.status))
    return out
