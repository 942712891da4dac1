"""Scheduled leak scans, wired: the service the admin API calls and how the container builds it.

``build_scans(container)`` picks the adapters (store, findings actions, managed-secret registry,
alert webhook); ``ScanService`` defines, lists, runs and deletes jobs; ``start_scheduler`` starts
the APScheduler worker (from ``nhi-broker up``/``serve``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from broker.errors import BrokerError, InvalidInput, NotFound
from broker.services.scanning import add_active_grants
from rotation.findings import FindingsService, ManagedRef, ManagedSecretMatcher, NoManagedSecrets
from rotation.scan_runner import ScanRunner, key_of
from rotation.scan_spec import ScanJobIn, ScanJobSpec
from rotation.scan_store import ScanStore
from rotation.scheduler import ScanScheduler
from rotation.source_guard import SourceGuard
from scanners.known import GrantMatch, KnownSecretIndex


class ScanService:
    def __init__(self, scans: ScanStore, runner: ScanRunner, findings: FindingsService, audit: Any,
                 guard: SourceGuard) -> None:
        self.guard = guard
        self.scans = scans
        self.runner = runner
        self.findings = findings
        self.audit = audit
        self.scheduler: ScanScheduler | None = None

    def put_job(self, name: str, body: ScanJobIn, actor: str) -> tuple[dict[str, Any], bool]:
        existing = self.scans.get_job(name)
        source = body.source
        if source is None:
            if existing is None:
                raise InvalidInput("source", "required when the job is created")
            source = ScanJobSpec.load(existing["spec"]).source
        self.guard.accept(source)  # scan roots and outbound policy: 422 naming the field
        spec = ScanJobSpec(
            source=source, schedule=body.schedule, on_finding=body.on_finding, enabled=body.enabled
        )
        created = self.scans.put_job(name, spec.dump())
        if self.scheduler is not None:
            self.scheduler.schedule(name, spec)
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

    def get_job(self, name: str) -> dict[str, Any]:
        row = self.scans.get_job(name)
        if row is None:
            raise NotFound(f'scan job "{name}" does not exist')
        return self._body(row)

    def list_jobs(self) -> list[dict[str, Any]]:
        return [self._body(r) for r in self.scans.list_jobs()]

    def delete_job(self, name: str, actor: str) -> None:
        if not self.scans.delete_job(name):
            raise NotFound(f'scan job "{name}" does not exist')
        if self.scheduler is not None:
            self.scheduler.unschedule(name)
        self.audit.record("scan_job.deleted", actor=actor, data={"job": name})

    def run_now(self, name: str) -> dict[str, Any]:
        return self.runner.run_now(name)

    def runs(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        self.get_job(name)
        return self.scans.runs(name, limit)

    def _body(self, row: Mapping[str, Any]) -> dict[str, Any]:
        spec = row["spec"]
        return {
            "name": row["name"],
            **spec,
            "last_run": row.get("last_run"),
            "next_run": self.scheduler.next_run(row["name"]) if self.scheduler is not None else None,
            "created_at": row["created_at"].isoformat() if row.get("created_at") else None,
            "updated_at": row["updated_at"].isoformat() if row.get("updated_at") else None,
        }


class RotationManagedSecrets:
    """The rotation side's registry (:class:`rotation.service.RotationService` on the container):
    fingerprints of current values (and of previous ones still inside an overlap window), and
    ``rotate(name, reason="leak")`` — a leak retires the old value at once, no overlap."""

    def __init__(self, container: Any) -> None:
        self.container = container

    def _service(self) -> Any:
        service = getattr(self.container, "rotation", None)
        if service is None:
            raise NotFound("no rotation service: managed secrets cannot be rotated by this broker")
        return service

    def fingerprints(self) -> Mapping[str, ManagedRef]:
        service = getattr(self.container, "rotation", None)
        if service is None:
            return {}
        out: dict[str, ManagedRef] = {}
        for s in service.all():
            home = f"{s.kv_mount}/{s.kv_path}" if s.kv_mount and s.kv_path else ""
            for fp in (*s.fingerprints_previous, *s.fingerprints_current):
                out[fp] = ManagedRef(s.name, home)
        return out

    def rotate(self, name: str, *, reason: str, actor: str) -> Mapping[str, Any]:
        from rotation.service import LEAK

        result = self._service().rotate(name, reason=LEAK, actor=actor)
        if not result.ok:
            raise BrokerError(f'rotation of "{name}" failed at {result.failed_step}: {result.error}')
        return {
            "rotation_id": result.rotation_id,
            "outcome": result.outcome,
            "retired": result.retired,
            "kv_version": result.kv_version,
            "why": reason[:200],
        }


def _leak_handler(container: Any) -> Any:
    handle = getattr(container, "handle_leak", None)
    if handle is not None:
        return handle

    def report(match: GrantMatch, fingerprint: str, source: str) -> Mapping[str, Any]:
        chain = container.chain_service()
        with chain.lock(match.task_id):
            report = chain.report_leak(
                match.task_id, match.grant_id, {"source": source, "fingerprint": fingerprint}
            )
        return {"action": "task_escalated", "task_state": report.get("task_state")}

    return report


def build_scans(container: Any, *, managed: ManagedSecretMatcher | None = None) -> ScanService:
    alerter = container.chain.alerter if container.chain is not None else None
    findings = FindingsService(
        container.store,
        container.audit,
        _leak_handler(container),
        managed or RotationManagedSecrets(container),
        alert=alerter.send if alerter is not None else None,
    )
    scans = ScanStore(container.store)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    settings = container.settings
    runner = ScanRunner(
        container.store,
        scans,
        findings,
        key_of(settings),
        settings,
        holder=holder,
        lease_seconds=float(getattr(settings, "scan_lease_seconds", 60.0)),
        grants_index=lambda: run_index(container, key_of(settings)),
    )
    return ScanService(scans, runner, findings, container.audit, runner.guard)


def run_index(container: Any, key: bytes) -> KnownSecretIndex:
    """This run's index of broker-issued secrets: the process's live index (it knows each secret's
    length, which narrows candidate extraction), plus any active grant in the store it lacks
    (issued by another replica or before a restart; matched without a length)."""
    index = KnownSecretIndex(key)
    live = getattr(getattr(container, "scanning", None), "known", None)
    known: set[str] = set()
    if live is not None:
        for fp, match, length in live.entries():
            index.add(fp, match, length=length)
            known.add(fp)
    add_active_grants(index, container.store, skip=frozenset(known))
    return index


def start_scheduler(container: Any, service: ScanService, *, poll_seconds: float = 1.0) -> ScanScheduler:
    scheduler = ScanScheduler(
        service.runner,
        service.scans,
        container.store.engine,
        max_workers=int(getattr(container.settings, "scan_max_workers", 4)),
        poll_seconds=poll_seconds,
    )
    scheduler.start()
    service.scheduler = scheduler
    container.workers.append(scheduler)
    return scheduler


__all__ = ["NoManagedSecrets", "ScanService", "build_scans", "start_scheduler"]
