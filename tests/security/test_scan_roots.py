"""`files` scan jobs read only under the scan roots (issue 12 §3): never /etc, /root, /proc, /sys,
a .ssh directory or the broker's own data directory, whatever the path's spelling."""

from __future__ import annotations

import dataclasses
import os
import secrets
import tempfile
from pathlib import Path

import httpx
import pytest
from support.broker import ADMIN_TOKEN

from broker.config import Settings
from broker.errors import InvalidInput
from broker.pathpolicy import ScanRoots
from broker.services.source_guard import SourceGuard

pytestmark = pytest.mark.openbao
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def aws_key() -> str:
    return "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def _put(broker, name: str, source: dict) -> httpx.Response:
    return httpx.put(
        f"{broker.url}/v1/admin/scan-jobs/{name}",
        headers=HEADERS,
        json={"source": source, "schedule": {"every_seconds": 3600}},
    )


def test_serve_has_no_scan_roots_until_configured(tmp_path: Path) -> None:
    settings = Settings(dev_mode=True, data_dir=tmp_path / "data")
    assert settings.scan_roots == []
    roots = ScanRoots.build(settings.scan_roots, data_dir=settings.data_dir)
    with pytest.raises(InvalidInput, match=r"source\.files\.path: no scan roots are configured"):
        roots.check(str(tmp_path), field="source.files.path")


@pytest.mark.parametrize(
    "path",
    [
        "/etc/shadow",
        "/etc",
        "/etc/*",
        "/root/.bash_history",
        "/proc/self/environ",
        "/sys/kernel",
        "/proc/1/root/etc/shadow",
        "TMP/../../etc/passwd",
        "TMP/x/../../../etc/shadow",
        "TMP/home/.ssh/id_ed25519",
        "TMP/home/.ssh",
        "DATA",
        "DATA/fingerprint.key",
        "DATA/*",
        "LINK_TO_ETC/shadow",
        "LINK_TO_DATA",
        "/var/lib",
        "/",
    ],
)
def test_files_job_outside_the_roots_or_on_secret_locations_is_422(broker, tmp_path: Path, path: str) -> None:
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "link-etc").symlink_to("/etc")
    (tmp_path / "link-data").symlink_to(broker.data_dir)
    spelled = (
        path.replace("TMP", str(tmp_path))
        .replace("DATA", str(broker.data_dir))
        .replace("LINK_TO_ETC", str(tmp_path / "link-etc"))
        .replace("LINK_TO_DATA", str(tmp_path / "link-data"))
    )
    r = _put(broker, "escape", {"kind": "files", "path": spelled})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "source.files.path"
    assert httpx.get(f"{broker.url}/v1/admin/scan-jobs/escape", headers=HEADERS).status_code == 404


def test_local_git_repository_outside_the_roots_is_422(broker) -> None:
    r = _put(broker, "git-escape", {"kind": "git", "repo": "/etc"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "source.git.repo"


def test_files_job_under_a_root_reads_its_files_but_not_a_symlink_planted_to_a_secret(broker, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    visible, hidden = aws_key(), aws_key()
    (watched / "agent.log").write_text(f"deploy used {visible}\n")
    secret_dir = tmp_path / ".ssh"
    secret_dir.mkdir()
    (secret_dir / "creds").write_text(f"aws {hidden}\n")
    (watched / "planted.log").symlink_to(secret_dir / "creds")
    (watched / "key.log").symlink_to(broker.data_dir / "fingerprint.key")
    assert str(watched).startswith(os.path.realpath(tempfile.gettempdir()))
    assert _put(broker, "watched", {"kind": "files", "path": str(watched)}).status_code == 201
    run = httpx.post(f"{broker.url}/v1/admin/scan-jobs/watched/run", headers=HEADERS, timeout=60).json()
    assert run["status"] == "ok", run
    found = httpx.get(f"{broker.url}/v1/findings", params={"job": "watched"}, headers=HEADERS).json()["items"]
    locations = {f["location"] for f in found}
    assert locations == {str(watched / "agent.log")}, locations
    assert run["bytes"] == (watched / "agent.log").stat().st_size


def test_a_job_stored_before_the_roots_changed_does_not_run(broker, tmp_path: Path) -> None:
    """The check runs again when the job runs: roots taken away (a restart with new settings)
    stop a stored job instead of letting it read on."""
    d = tmp_path / "later"
    d.mkdir()
    (d / "a.log").write_text(f"{aws_key()}\n")
    assert _put(broker, "later", {"kind": "files", "path": str(d)}).status_code == 201
    runner = broker.container.scan_jobs.runner
    saved = runner.env
    try:  # the broker restarted with no roots: the runner's policy is what the new settings give
        no_roots = SourceGuard(ScanRoots.build([], data_dir=broker.data_dir), saved.policy.outbound)
        runner.env = dataclasses.replace(saved, policy=no_roots)
        run = httpx.post(f"{broker.url}/v1/admin/scan-jobs/later/run", headers=HEADERS, timeout=60).json()
    finally:
        runner.env = saved
    assert run["status"] == "failed" and "scan roots" in str(run), run
    assert run["bytes"] == 0
