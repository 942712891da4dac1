"""Two broker processes on one PostgreSQL store: every scheduled run happens once."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from support.wait import DEADLINE, wait_until

from broker.config import Settings
from broker.container import Container
from broker.store import tables as t
from scanners.jobs.spec import ScanJobIn

from .test_e2e_sources import aws_key

pytestmark = [pytest.mark.openbao, pytest.mark.postgres, pytest.mark.slow]
REPLICA = Path(__file__).with_name("replica.py")
ADMIN = "replica-admin-token-0123456789"


def test_two_replicas_on_one_postgres_run_each_scheduled_slot_once(openbao, pg_database, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NHI_BROKER_DATABASE_URL": pg_database,
        "NHI_BROKER_ADMIN_TOKEN": ADMIN,
        "NHI_BROKER_FINGERPRINT_KEY": "ab" * 32,
        "NHI_BROKER_OPENBAO__ADDR": openbao.address,
        "NHI_BROKER_OPENBAO__TOKEN": openbao.root_token.reveal(),
        "NHI_BROKER_DEV_MODE": "true",
        "NHI_BROKER_SCAN_ROOTS": f'["{tmp_path}"]',  # the shared log below
        # replicas of one store share the fingerprint and audit keys (docs/deploy.md)
        "NHI_BROKER_AUDIT__KEY": AUDIT_KEY,
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    log = tmp_path / "shared.log"
    log.write_text(f"leaked {aws_key()}\n")
    settings = Settings(
        data_dir=tmp_path / "admin",
        database_url=pg_database,
        admin_token=ADMIN,  # type: ignore[arg-type]
        fingerprint_key="ab" * 32,
        audit={"key": AUDIT_KEY},  # type: ignore[arg-type]
        dev_mode=True,  # type: ignore[arg-type]
        scan_roots=[tmp_path],
        openbao={"addr": openbao.address, "token": openbao.root_token.reveal()},
    )  # type: ignore[arg-type]
    admin = Container.build(settings)
    try:
        admin.scan_jobs.put_job(
            "shared",
            ScanJobIn.model_validate({"source": {"kind": "files", "path": str(log)}, "schedule": {"every_seconds": 1}}),
            "test",
        )
        dirs = [tmp_path / f"r{i}" for i in range(2)]
        procs = [
            subprocess.Popen(
                [sys.executable, str(REPLICA), str(d)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for d in dirs
        ]
        try:

            def enough() -> bool:
                for p in procs:
                    assert p.poll() is None, f"a replica exited early: {p.communicate()[1][-2000:]}"
                with admin.store.read() as conn:
                    runs = conn.execute(select(t.scan_runs).where(t.scan_runs.c.job == "shared")).all()
                return len(runs) >= 3 and all(_fired(d) >= 3 for d in dirs)

            wait_until(enough, timeout=120, what="three scheduled runs with both replicas firing")
        finally:
            for d in dirs:
                (d / "stop").touch()
        outs = [p.communicate(timeout=DEADLINE) for p in procs]
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0 and "ready" in out, err[-2000:]
        fired = [int(out.strip().rsplit("fired=", 1)[1]) for out, _ in outs]
        with admin.store.read() as conn:
            runs = conn.execute(select(t.scan_runs).where(t.scan_runs.c.job == "shared")).all()
            findings = conn.execute(select(t.scan_findings).where(t.scan_findings.c.job == "shared")).all()
        starts = sorted(_epoch(r.started_at) for r in runs)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(runs) >= 3 and all(r.status == "ok" for r in runs)
        assert min(gaps) > 0.5, f"two runs in one 1-second slot: {gaps}"  # a double run is ms apart
        assert min(fired) >= 3 and sum(fired) > len(runs)  # both replicas fired; the lease let one run
        assert len(findings) == 1 and findings[0].occurrences == 1  # the line was read once in all
        assert sum(r.bytes for r in runs) == log.stat().st_size
    finally:
        admin.close()


AUDIT_KEY = "cd" * 32


def _fired(data_dir: Path) -> int:
    try:
        return int((data_dir / "fired").read_text() or 0)
    except FileNotFoundError:
        return 0


def _epoch(value: datetime) -> float:
    return value.timestamp()
