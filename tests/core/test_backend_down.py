"""Fail closed: when OpenBao cannot be reached, a credential request is a 503 and nothing else."""

from __future__ import annotations

import httpx
import pytest
from support.broker import start_broker
from support.wait import HTTP_TIMEOUT

from broker.client import BackendUnavailable
from broker.openbao_server import start_dev_server

pytestmark = pytest.mark.openbao


def test_credential_request_is_503_without_credential_when_openbao_is_down(tmp_path):
    bao = start_dev_server(log_path=tmp_path / "bao.log")
    running = start_broker(tmp_path / "data", bao)
    try:
        agent = running.agent()
        fresh = agent.open_task("demo", "first grant while OpenBao is down")
        warm = agent.open_task("demo", "parent token already exists")
        agent.request_credential(warm["task_id"], "db.read", "demo-data")
        bao.stop()
        for task in (fresh, warm):
            with pytest.raises(BackendUnavailable) as exc:
                agent.request_credential(task["task_id"], "db.read", "demo-data")
            assert exc.value.status == 503 and "credential" not in exc.value.body
            assert "unreachable" in exc.value.message
        failed = running.admin().audit(kind="credential.failed")
        assert {e["task_id"] for e in failed} == {fresh["task_id"], warm["task_id"]}
        # the decision that allowed it is on record; no grant was recorded for the failed requests
        grants = [g for s in running.admin().task(fresh["task_id"])["chain"]["steps"] for g in s.get("grants", [])]
        assert grants == []
        ready = httpx.get(f"{running.url}/readyz", timeout=HTTP_TIMEOUT)
        assert ready.status_code == 503 and "unavailable" in ready.json()["checks"]["backend.vault_token"]
    finally:
        running.stop()
        bao.stop()
