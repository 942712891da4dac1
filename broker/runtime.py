"""The runner's side of the composition root: start the background workers, stop them again.

Building the container starts nothing; ``nhi-broker up``/``serve`` (and the test harness) call
:func:`start_workers` once the container is built and :meth:`Workers.stop` before
:meth:`~broker.container.Container.close`.

| worker | lives in | what it does |
| --- | --- | --- |
| revocation worker | ``rotation/revocation_worker.py`` | retries queued revocations, expires tasks and grants |
| rotation worker | ``rotation/worker.py`` | rotates managed static secrets on schedule, retires old values |
| scan scheduler | ``rotation/scheduler.py`` | runs scheduled leak scans (APScheduler, job store in the DB) |
| policy watcher | ``broker/policy/holder.py`` | reloads the policy bundle when its files change |
| audit guard | ``broker/audit/guard.py`` | verifies the audit chain (start-up, schedule), exports signed checkpoints |
| OpenBao token renewer | ``broker/backends/openbao_auth.py`` | renews the broker's own token (AppRole: logs in again) |
| grant feed | ``broker/services/grant_feed.py`` | PostgreSQL: the leak index learns other replicas' grants |
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.audit.guard import AuditGuard
from broker.container import Container
from broker.services.grant_feed import GrantFeed
from broker.workers import Worker
from rotation.revocation_worker import RevocationWorker
from rotation.scheduler import ScanScheduler
from rotation.worker import RotationWorker


@dataclass
class Workers:
    revocation: RevocationWorker | None = None
    scans: ScanScheduler | None = None
    audit: AuditGuard | None = None
    others: list[Worker] = field(default_factory=list)

    def add(self, worker: Worker) -> None:
        self.others.append(worker)

    def stop(self) -> None:
        """Stop in reverse order of start; the revocation worker last (it may still drain), then the
        audit guard, whose last checkpoint covers everything written before the stop."""
        for worker in reversed(self.others):
            worker.stop()
        self.others.clear()
        if self.scans is not None:
            self.scans.stop()
            self.scans = None
        if self.revocation is not None:
            self.revocation.stop()
            self.revocation = None
        if self.audit is not None:
            self.audit.stop()
            self.audit = None


def revocation_worker(container: Container, interval: float | None = None) -> RevocationWorker:
    s = container.settings
    return RevocationWorker(
        container.store,
        container.revocations,
        container.backends,
        interval=interval or s.revocation_worker_interval_seconds,
        heartbeat=container.revocation_heartbeat,
    )


def start_scan_scheduler(container: Container, *, poll_seconds: float = 1.0) -> ScanScheduler:
    """Start the scan scheduler (APScheduler, job store in the broker's database) and attach it to
    the scan-job service, so a PUT schedules at once on this replica."""
    service = container.scan_jobs
    scheduler = ScanScheduler(
        service.runner,
        service.scans,
        container.store.engine,
        max_workers=container.settings.scan_max_workers,
        poll_seconds=poll_seconds,
    )
    scheduler.start()
    service.slot.scheduler = scheduler
    return scheduler


def start_workers(
    container: Container,
    *,
    revocation_interval: float | None = None,
    rotation: bool = True,
    scans: bool = True,
    scan_poll_seconds: float = 1.0,
    policy_watch: bool = True,
    audit: bool = True,
) -> Workers:
    workers = Workers()
    engine = container.scanning.scanner.engine
    if engine is not None:  # compile the scan engine's rules now, in the background (docs/scanning.md);
        engine.start()  # scans before it is ready run the broker's full own rule set
    try:
        if audit:  # keys an unkeyed chain, verifies it now and on a schedule, exports checkpoints
            workers.audit = container.audit_guard.start()
        workers.revocation = revocation_worker(container, revocation_interval).start()
        if container.openbao_renewer is not None:
            workers.add(container.openbao_renewer.start())
        if container.store.dialect == "postgresql":  # replicas: learn the grants the others issue
            workers.add(
                GrantFeed(
                    container.store,
                    container.scanning.known,
                    resync_seconds=container.settings.grant_feed_resync_seconds,
                ).start()
            )
        if rotation:
            workers.add(RotationWorker(container.rotation, container.settings.rotation_worker_interval_seconds).start())
        if scans:
            workers.scans = start_scan_scheduler(container, poll_seconds=scan_poll_seconds)
        interval = container.settings.policy_watch_seconds
        if policy_watch and interval > 0:
            workers.add(container.policies.watch(interval, lambda r: container.policy_admin.apply(r, "policy-watcher")))
    except BaseException:
        workers.stop()
        raise
    return workers
