"""End to end over HTTP: a 2-second job watching a log directory, real OpenBao tokens."""

from __future__ import annotations

from pathlib import Path

import hvac
import pytest

from .conftest import wait_for

pytestmark = pytest.mark.openbao


def token_is_dead(address: str, token: str) -> bool:
    try:
        hvac.Client(url=address, token=token).auth.token.lookup_self()
    except hvac.exceptions.Forbidden:
        return True
    return False


def test_broker_issued_token_planted_in_a_watched_log_is_found_and_revoked(scan_broker, tmp_path: Path) -> None:
    admin = scan_broker.admin()
    logs = tmp_path / "agents"
    logs.mkdir()
    (logs / "agent.log").write_text("startup ok\n")
    job = admin.request(
        "PUT",
        "/v1/admin/scan-jobs/agent-logs",
        {"source": {"kind": "files", "path": str(logs)}, "schedule": {"every_seconds": 2}},
    )
    assert job["source"]["kind"] == "files" and job["schedule"] == {"every_seconds": 2}
    wait_for(lambda: admin.request("GET", "/v1/admin/scan-jobs/agent-logs")["last_run"])

    with scan_broker.agent().task("demo", purpose="leaks its token") as task:
        token = task.credential("db.read", "demo-data").secret("token")
        assert not token_is_dead(scan_broker.openbao.address, token)
        with (logs / "agent.log").open("a") as fh:
            fh.write(f"2026-11-24T12:00:00Z DEBUG calling vault with token={token} ok\n")
        # the finding is committed first, then acted on: wait until the action is recorded
        found = wait_for(
            lambda: [
                f
                for f in admin.request("GET", "/v1/findings", params={"job": "agent-logs"})["items"]
                if f["status"] != "open"
            ],
        )
        assert len(found) == 1
        f = found[0]
        assert f["location"] == str(logs / "agent.log") and f["line"] == 2
        assert f["status"] == "revoked" and f["detail"]["action"]["task_id"] == task.task_id
        assert token not in str(found)
        wait_for(lambda: token_is_dead(scan_broker.openbao.address, token))
        assert admin.task(task.task_id)["task"]["state"] == "quarantined"

    listed = admin.request("GET", "/v1/admin/scan-jobs")["items"]
    mine = next(j for j in listed if j["name"] == "agent-logs")
    assert mine["last_run"]["status"] == "ok" and mine["last_run"]["bytes"] >= 0
    assert {"duration_ms", "bytes", "findings", "started_at"} <= set(mine["last_run"])
    audit = admin.audit(kind="finding.opened")
    assert any(e["data"]["finding_id"] == f["finding_id"] for e in audit)
    assert token not in str(admin.audit())
