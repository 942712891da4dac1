"""The scan scheduler: APScheduler inside the broker, its job store in the broker's database.

Schedules survive restarts (``apscheduler_jobs``, written by APScheduler's SQLAlchemyJobStore on
the broker's own engine); the job definitions themselves are in ``scan_jobs`` and reconciled into
APScheduler at start. Every replica runs a scheduler over the same job store; each fire claims
the job's lease for its slot (:mod:`broker.store.scan_jobs`), so a scheduled run happens once.

- ``max_instances=1``: a run that overruns its interval is not started again in this process
  (and the lease keeps other replicas off it); ``coalesce=True``: missed fires become one run.
- Jobs are stored as a reference to the module-level :func:`run_scheduled` plus the job name:
  picklable, and resolved against the scheduler running in this process.
- A poll thread wakes the scheduler every ``poll_seconds`` so a job another replica added or
  changed is picked up.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from broker.logging import get_logger
from broker.store.repo import utcnow
from broker.workers import PeriodicWorker
from scanners.jobs.ports import JobStore, RunSummary, Trigger
from scanners.jobs.runner import ScanRunner, Skipped
from scanners.jobs.spec import ScanJobSpec

log = get_logger("nhi-broker.scheduler")
JOB_PREFIX = "scan:"
_current: ScanScheduler | None = None
_current_lock = threading.Lock()


def run_scheduled(name: str) -> None:
    """The function every stored APScheduler job refers to (by module path, so it pickles)."""
    scheduler = _current
    if scheduler is None:
        log.warning("scan.no_scheduler", job=name)
        return
    scheduler.fire(name)


class ScanScheduler:
    def __init__(
        self,
        runner: ScanRunner,
        scans: JobStore,
        engine: Engine,
        *,
        max_workers: int = 4,
        poll_seconds: float = 1.0,
    ) -> None:
        self.runner = runner
        self.scans = scans
        self.engine = engine
        self.max_workers = max_workers
        self.poll_seconds = poll_seconds
        self.fired = 0
        self._aps: BackgroundScheduler | None = None
        # APScheduler's own loop sleeps until its next known fire time; a job another replica
        # scheduled is found by waking it every ``poll_seconds``
        self._poller = PeriodicWorker("scan-scheduler-poll", poll_seconds, self._wake)

    def _build(self) -> BackgroundScheduler:
        return BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename="apscheduler_jobs")},
            executors={"default": ThreadPoolExecutor(self.max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        global _current
        with _current_lock:
            _current = self
        for attempt in range(3):  # two replicas creating apscheduler_jobs at once: one loses, retries
            try:
                self._aps = self._build()
                self._aps.start()
                break
            except Exception as exc:
                if attempt == 2:
                    raise
                log.warning("scheduler.start_retry", error_type=type(exc).__name__)
                time.sleep(0.2)
        self.reconcile()
        self._poller.start()
        log.info("scheduler.started", jobs=len(self.scans.all_specs()), holder=self.runner.holder)

    def stop(self) -> None:
        global _current
        self._poller.stop(timeout=5)
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=True)
        with _current_lock:
            if _current is self:
                _current = None

    @property
    def last_run(self) -> float | None:
        return self._poller.last_run

    def _wake(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.wakeup()

    # -- schedules ----------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Make APScheduler's jobs match ``scan_jobs`` (after a restart, or a crash between them)."""
        aps = self._require()
        wanted = {JOB_PREFIX + name: spec for name, spec in self.scans.all_specs().items()}
        existing = {job.id: job for job in aps.get_jobs()}
        for job_id, spec in wanted.items():
            job = existing.get(job_id)
            if job is None or str(job.trigger) != str(spec.schedule.trigger()):
                self.schedule(job_id[len(JOB_PREFIX) :], spec)
        for job_id in existing:
            if job_id.startswith(JOB_PREFIX) and job_id not in wanted:
                self.unschedule(job_id[len(JOB_PREFIX) :])

    def schedule(self, name: str, spec: ScanJobSpec) -> None:
        self._require().add_job(
            run_scheduled,
            trigger=spec.schedule.trigger(),
            args=[name],
            id=JOB_PREFIX + name,
            name=name,
            replace_existing=True,
        )

    def unschedule(self, name: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._require().remove_job(JOB_PREFIX + name)

    def next_run(self, name: str) -> str | None:
        if self._aps is None:
            return None
        job = self._aps.get_job(JOB_PREFIX + name)
        return job.next_run_time.isoformat() if job is not None and job.next_run_time else None

    def _require(self) -> BackgroundScheduler:
        if self._aps is None:
            raise RuntimeError("the scan scheduler is not started")
        return self._aps

    # -- a fire -------------------------------------------------------------------------------------
    def fire(self, name: str) -> RunSummary | Skipped | None:
        spec = self.scans.get_spec(name)
        if spec is None:
            self.unschedule(name)
            return None
        self.fired += 1
        try:
            return self.runner.run(name, trigger=Trigger.SCHEDULE, slot=spec.schedule.slot(utcnow()))
        except Exception as exc:  # never let a job's failure reach APScheduler's thread
            log.error("scan.fire_failed", job=name, error_type=type(exc).__name__)
            return None
