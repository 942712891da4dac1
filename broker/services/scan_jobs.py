"""Scheduled leak scans: the service the admin API calls.

``ScanJobService`` defines, lists, runs and deletes jobs (the live scanner of ``/v1/scan`` is
:class:`broker.services.scanning.LiveScanner`); the composition root builds it with
:func:`build_scan_jobs`. The runner (``scanners/jobs/runner.py``) streams each job's source; the
scheduler (``rotation/scheduler.py``, a worker the runtime starts) attaches to the service's
:class:`ScheduleSlot`.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from broker.audit import AuditLog
from broker.config import Settings
from broker.errors import Conflict, InvalidInput, NotFound
from broker.services.findings import Alert, FindingsService, ManagedSecretMatcher
from broker.services.scanning import LeakHandler, add_active_grants
from broker.services.source_guard import SourceGuard
from broker.store.repo import Store
from broker.store.scan_jobs import ScanJob, ScanRun, ScanStore
from scanners.jobs.ports import JobBusy, JobNotFound, RunSummary
from scanners.jobs.runner import ScanRunner, SourceEnv
from scanners.jobs.spec import ScanJobIn, ScanJobSpec
from scanners.kingfisher import KingfisherEngine
from scanners.known import KnownSecretIndex
from scanners.sources.base import KvReader


class Scheduler(Protocol):
    def schedule(self, name: str, spec: ScanJobSpec) -> None: ...

    def unschedule(self, name: str) -> None: ...

    def next_run(self, name: str) -> str | None: ...


class ScheduleSlot:
    """Where the scan scheduler plugs in once the runtime has started it. Until then (or in a
    process that runs no scheduler, like a CLI), schedules are stored and picked up by whichever
    replica's scheduler reconciles next."""

    def __init__(self) -> None:
        self.scheduler: Scheduler | None = None

    def schedule(self, name: str, spec: ScanJobSpec) -> None:
        if self.scheduler is not None:
            self.scheduler.schedule(name, spec)

    def unschedule(self, name: str) -> None:
        if self.scheduler is not None:
            self.scheduler.unschedule(name)

    def next_run(self, name: str) -> str | None:
        return self.scheduler.next_run(name) if self.scheduler is not None else None


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A scan job and when this replica's scheduler runs it next (ISO 8601; None: not scheduled
    here, e.g. disabled or no scheduler in this process)."""

    job: ScanJob
    next_run: str | None


class ScanJobService:
    def __init__(
        self,
        scans: ScanStore,
        runner: ScanRunner,
        findings: FindingsService,
        audit: AuditLog,
        slot: ScheduleSlot,
        guard: SourceGuard,
    ) -> None:
        self.guard = guard
        self.scans = scans
        self.runner = runner
        self.findings = findings
        self.audit = audit
        self.slot = slot

    def put_job(self, name: str, body: ScanJobIn, actor: str) -> tuple[ScheduledJob, bool]:
        existing = self.scans.get_job(name)
        source = body.source
        if source is None:
            if existing is None:
                raise InvalidInput("source", "required when the job is created")
            source = existing.spec.source
        self.guard.accept(source)  # scan roots, outbound URL policy, characters: 422 naming the field
        spec = ScanJobSpec(source=source, schedule=body.schedule, on_finding=body.on_finding, enabled=body.enabled)
        created = self.scans.put_job(name, spec)
        self.slot.schedule(name, spec)
        self.audit.record(
            "scan_job.put",
            actor=actor,
            outcome="created" if created else "replaced",
            data={
                "job": name,
                "source_kind": spec.source.kind,
                "schedule": spec.schedule.model_dump(exclude_none=True),
            },
        )
        return self.get_job(name), created

    def get_job(self, name: str) -> ScheduledJob:
        job = self.scans.get_job(name)
        if job is None:
            raise NotFound(f'scan job "{name}" does not exist')
        return ScheduledJob(job, self.slot.next_run(name))

    def list_jobs(self) -> list[ScheduledJob]:
        return [ScheduledJob(j, self.slot.next_run(j.name)) for j in self.scans.list_jobs()]

    def delete_job(self, name: str, actor: str) -> None:
        if not self.scans.delete_job(name):
            raise NotFound(f'scan job "{name}" does not exist')
        self.slot.unschedule(name)
        self.audit.record("scan_job.deleted", actor=actor, data={"job": name})

    def run_now(self, name: str) -> RunSummary:
        try:
            return self.runner.run_now(name)
        except JobNotFound:
            raise NotFound(f'scan job "{name}" does not exist') from None
        except JobBusy:
            raise Conflict(f'scan job "{name}" is running now; try again when it has finished') from None

    def runs(self, name: str, limit: int = 50) -> list[ScanRun]:
        self.get_job(name)
        return self.scans.runs(name, limit)


def build_scan_jobs(
    store: Store,
    audit: AuditLog,
    settings: Settings,
    key: bytes,
    *,
    on_leak: LeakHandler,
    managed: ManagedSecretMatcher,
    live_index: KnownSecretIndex,
    alert: Alert | None,
    kv: Callable[[], AbstractContextManager[KvReader]] | None,
    engine: KingfisherEngine | None = None,
) -> ScanJobService:
    findings = FindingsService(store, audit, on_leak, managed, alert=alert)
    scans = ScanStore(store)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    guard = SourceGuard.from_settings(settings)
    env = SourceEnv(
        cache_dir=settings.data_dir / "scan-cache",
        policy=guard,
        aws_region=settings.aws.region,
        aws_endpoint_url=settings.aws.endpoint_url,
        kv=kv,
    )
    runner = ScanRunner(
        scans,
        findings,
        key,
        env,
        holder=holder,
        lease_seconds=settings.scan_lease_seconds,
        grants_index=lambda: run_index(live_index, store, key),
        engine=engine,
    )
    return ScanJobService(scans, runner, findings, audit, ScheduleSlot(), guard)


def run_index(live: KnownSecretIndex, store: Store, key: bytes) -> KnownSecretIndex:
    """This run's index of broker-issued secrets: the process's live index (it knows each secret's
    length, which narrows candidate extraction), plus any active grant in the store it lacks
    (issued by another replica or before a restart; matched without a length)."""
    index = KnownSecretIndex(key)
    known: set[str] = set()
    for fp, match, length in live.entries():
        index.add(fp, match, length=length)
        known.add(fp)
    add_active_grants(index, store, skip=frozenset(known))
    return index


__all__ = ["ScanJobService", "ScheduleSlot", "build_scan_jobs"]
