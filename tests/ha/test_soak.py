"""The chaos soak, bounded for CI (``NHI_HA_SOAK_SECONDS``, default 90): 8 agents through HAProxy
with a realistic mix while replicas are SIGKILLed and restarted and the OpenBao leader is stopped
and restarted. Longer runs: ``benchmarks/ha_soak.py --minutes 10``."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from support.soak import run_soak

from broker.topology.ports import free_block
from broker.topology.stack import HAStack

pytestmark = [pytest.mark.ha, pytest.mark.openbao, pytest.mark.postgres, pytest.mark.slow]


def test_chaos_soak_keeps_every_guarantee(pg_server) -> None:
    seconds = float(os.environ.get("NHI_HA_SOAK_SECONDS", "90"))
    name = "nhi_test_ha_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    data_dir = Path("/tmp") / f"nhi-ha-soak-{uuid.uuid4().hex[:8]}"
    stack = HAStack(
        data_dir=data_dir,
        port=free_block(),
        replica_count=3,
        database_url=f"postgresql+psycopg://{pg_server.superuser}@{pg_server.host}:{pg_server.port}/{name}",
    )
    try:
        stack.start()
        report = run_soak(stack, seconds, agents=8, chaos_period=max(10.0, seconds / 5))
        summary = report.summary()
        print("\n" + json.dumps(summary, indent=2, default=str))
        assert summary["violations"] == []
        assert report.failovers and any("OpenBao" in w for w, _, _ in report.failovers)
        assert any("replica" in w for w, _, _ in report.failovers)
        assert report.statuses[200] > 50 and report.escalation_to_dead
        assert set(s for s in report.statuses if s >= 500) <= {503}
        assert report.grants_checked > 0
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
