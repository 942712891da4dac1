"""The scan-job API (shapes, 422 by field, triage) and a broker restart: schedules and offsets kept."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from support.broker import start_broker

from broker.client import BrokerClientError as ClientError
from broker.runtime import start_scan_scheduler

from .conftest import wait_for
from .test_e2e_sources import aws_key

pytestmark = pytest.mark.openbao


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"source": {"kind": "files", "path": "relative/dir"}, "schedule": {"every_seconds": 5}},
            "source.files.path",
        ),
        ({"source": {"kind": "ftp", "path": "/x"}, "schedule": {"every_seconds": 5}}, "source"),
        (
            {"source": {"kind": "files", "path": "/x"}, "schedule": {"every_seconds": 0}},
            "schedule.every_seconds",
        ),
        ({"source": {"kind": "files", "path": "/x"}, "schedule": {"cron": "61 * * * *"}}, "schedule.cron"),
        ({"source": {"kind": "files", "path": "/x"}, "schedule": {}}, "schedule"),
        (
            {"source": {"kind": "s3", "bucket": "Bad_Bucket"}, "schedule": {"every_seconds": 5}},
            "source.s3.bucket",
        ),
        (
            {"source": {"kind": "git", "repo": "relative"}, "schedule": {"every_seconds": 5}},
            "source.git.repo",
        ),
        ({"source": {"kind": "files", "path": "/x"}, "schedule": {"every_seconds": 5}, "bogus": 1}, "bogus"),
        ({"schedule": {"every_seconds": 5}}, "source"),  # a new job needs a source
    ],
)
def test_scan_job_put_is_rejected_with_the_field_named(scan_broker, body, field) -> None:
    with pytest.raises(ClientError) as err:
        scan_broker.admin().request("PUT", f"/v1/admin/scan-jobs/bad-{secrets.token_hex(3)}", body)
    assert err.value.status == 422
    assert err.value.body["error"]["field"] == field, err.value.body


def test_scan_job_bodies_from_the_issue_are_accepted_as_written(scan_broker) -> None:
    admin = scan_broker.admin()
    created = admin._http.put(
        "/v1/admin/scan-jobs/var-log",
        json={"source": {"kind": "files", "path": "/var/log/agents"}, "schedule": {"every_seconds": 300}},
    )
    assert created.status_code == 201
    replaced = admin._http.put("/v1/admin/scan-jobs/var-log", json={"schedule": {"cron": "0 * * * *"}})
    assert replaced.status_code == 200
    job = replaced.json()
    assert job["source"] == {"kind": "files", "path": "/var/log/agents"} and job["schedule"] == {"cron": "0 * * * *"}
    assert job["on_finding"] == {"broker_issued": "revoke", "managed": "rotate", "alert": True}
    assert job["next_run"] is not None
    assert admin._http.delete("/v1/admin/scan-jobs/var-log").status_code == 204
    assert admin._http.get("/v1/admin/scan-jobs/var-log").status_code == 404
    assert admin._http.get("/v1/admin/scan-jobs", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(scan_broker, tmp_path: Path) -> None:
    admin = scan_broker.admin()
    ok_log = tmp_path / "ok.log"
    ok_log.write_text("fine\n")
    admin.request(
        "PUT",
        "/v1/admin/scan-jobs/broken-repo",
        {"source": {"kind": "git", "repo": str(tmp_path / "missing")}, "schedule": {"every_seconds": 1}},
    )
    admin.request(
        "PUT",
        "/v1/admin/scan-jobs/healthy",
        {"source": {"kind": "files", "path": str(ok_log)}, "schedule": {"every_seconds": 1}},
    )
    wait_for(
        lambda: (admin.request("GET", "/v1/admin/scan-jobs/broken-repo")["last_run"] or {}).get("status") == "failed",
    )
    with ok_log.open("a") as fh:
        fh.write(f"key={aws_key()}\n")
    wait_for(lambda: admin.request("GET", "/v1/findings", params={"job": "healthy"})["items"])
    broken = admin.request("GET", "/v1/admin/scan-jobs/broken-repo")["last_run"]
    assert "does not exist" in broken["error"]
    for name in ("broken-repo", "healthy"):
        admin.request("DELETE", f"/v1/admin/scan-jobs/{name}")


def test_findings_can_be_triaged_and_filtered(scan_broker, tmp_path: Path) -> None:
    admin = scan_broker.admin()
    log = tmp_path / "t.log"
    log.write_text(f"a {aws_key()}\nb {aws_key()}\n")
    admin.request(
        "PUT",
        "/v1/admin/scan-jobs/triage",
        {"source": {"kind": "files", "path": str(log)}, "schedule": {"every_seconds": 3600}},
    )
    admin.request("POST", "/v1/admin/scan-jobs/triage/run")
    first, second = admin.request("GET", "/v1/findings", params={"job": "triage"})["items"]
    done = admin.request(
        "PATCH", f"/v1/findings/{first['finding_id']}", {"status": "false_positive", "note": "test key"}
    )
    assert done["status"] == "false_positive"
    assert [
        f["finding_id"]
        for f in admin.request("GET", "/v1/findings", params={"job": "triage", "status": "open"})["items"]
    ] == [second["finding_id"]]
    with pytest.raises(ClientError) as err:
        admin.request("PATCH", f"/v1/findings/{first['finding_id']}", {"status": "revoked"})
    assert err.value.status == 422 and err.value.body["error"]["field"] == "status"
    with pytest.raises(ClientError) as err:
        admin.request("GET", "/v1/findings", params={"fingerprint": "zz"})
    assert err.value.status == 422 and err.value.body["error"]["field"] == "fingerprint"


def test_restart_keeps_schedules_and_offsets_nothing_scanned_twice_or_skipped(openbao, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "app.log"
    log.write_text(f"one {aws_key()}\n")
    first = start_broker(data, openbao)
    try:
        first.workers.scans = start_scan_scheduler(first.container, poll_seconds=0.2)
        admin = first.admin()
        admin.request(
            "PUT",
            "/v1/admin/scan-jobs/restart",
            {"source": {"kind": "files", "path": str(log)}, "schedule": {"every_seconds": 1}},
        )
        wait_for(lambda: admin.request("GET", "/v1/findings", params={"job": "restart"})["items"])
    finally:
        first.stop()
    with log.open("a") as fh:  # written while the broker is down
        fh.write(f"two {aws_key()}\n")
    second = start_broker(data, openbao)
    try:
        second.workers.scans = start_scan_scheduler(second.container, poll_seconds=0.2)  # no PUT: the stored schedule
        admin = second.admin()
        found = wait_for(
            lambda: (
                len(items := admin.request("GET", "/v1/findings", params={"job": "restart"})["items"]) == 2 and items
            ),
        )
        assert sorted(f["line"] for f in found) == [1, 2]
        assert all(f["occurrences"] == 1 for f in found)  # nothing scanned twice
        runs = admin.request("GET", "/v1/admin/scan-jobs/restart/runs")["items"]
        assert sum(r["bytes"] for r in runs) == log.stat().st_size  # nothing skipped, nothing re-read
        assert len({r["holder"] for r in runs}) == 2
    finally:
        second.stop()


def test_git_source_url_with_credentials_is_refused_so_no_secret_is_stored(broker):
    r = broker.admin()._http.put(
        "/v1/admin/scan-jobs/leaky-url",
        json={
            "source": {"kind": "git", "repo": "https://user:hunter2-token@example.com/org/repo.git"},
            "schedule": {"every_seconds": 300},
        },
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "source.git.repo"
    assert "hunter2-token" not in r.text
