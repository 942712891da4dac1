"""The job lease on a real SQLite store: a running job is not started again, a slot runs once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from broker.store.db import make_engine, migrate
from broker.store.repo import Store, utcnow
from broker.store.scan_jobs import ScanStore
from scanners.jobs.spec import ScanJobSpec


def _scans(tmp: Path) -> ScanStore:
    engine = make_engine(f"sqlite:///{tmp / 'lease.db'}")
    migrate(engine)
    scans = ScanStore(Store(engine))
    scans.put_job("j", ScanJobSpec.load({"source": {"kind": "files", "path": "/x"}, "schedule": {"every_seconds": 1}}))
    return scans


def test_a_run_that_overruns_its_interval_is_not_started_twice(tmp_path: Path) -> None:
    scans = _scans(tmp_path)
    until = utcnow() + timedelta(seconds=60)
    assert scans.claim("j", "replica-a", until, slot=100)
    assert not scans.claim("j", "replica-b", until, slot=101)  # next slot fires while slot 100 still runs
    assert not scans.claim("j", "replica-a", until, slot=None)  # nor a manual run
    scans.release("j", "replica-a")
    assert scans.claim("j", "replica-b", until, slot=101)


def test_a_slot_runs_once_and_a_dead_holders_lease_expires(tmp_path: Path) -> None:
    scans = _scans(tmp_path)
    assert scans.claim("j", "a", utcnow() + timedelta(seconds=60), slot=7)
    scans.release("j", "a")
    assert not scans.claim("j", "b", utcnow() + timedelta(seconds=60), slot=7)  # b fired late for slot 7
    assert scans.claim("j", "b", utcnow() - timedelta(seconds=1), slot=8)  # b dies holding an expired lease
    assert scans.claim("j", "c", utcnow() + timedelta(seconds=60), slot=9)
    lease = scans.lease("j")
    assert lease is not None and lease.holder == "c"
