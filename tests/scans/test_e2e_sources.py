"""End to end over HTTP: git (commit id), S3 on a real moto server, OpenBao KV sprawl, and a
managed static secret found in a log being rotated."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import hvac
import pytest
from support.moto import REGION, start_moto

from .test_source_git import commit, make_repo

pytestmark = pytest.mark.openbao


def aws_key() -> str:
    return "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def run(admin, name: str, body: dict) -> dict:
    admin.request("PUT", f"/v1/admin/scan-jobs/{name}", body)
    return dict(admin.request("POST", f"/v1/admin/scan-jobs/{name}/run"))


def findings(admin, **params) -> list[dict]:
    return list(admin.request("GET", "/v1/findings", params=params)["items"])


def test_aws_key_committed_to_a_git_repository_is_found_with_commit_path_and_line(scan_broker, tmp_path) -> None:
    admin = scan_broker.admin()
    repo = make_repo(tmp_path)
    commit(repo, "README.md", "# service\n")
    key = aws_key()
    sha = commit(repo, "deploy/config.env", f"REGION=eu-west-1\nAWS_ACCESS_KEY_ID={key}\n", "add config")
    result = run(admin, "repo-sweep", {"source": {"kind": "git", "repo": str(repo)}, "schedule": {"cron": "0 * * * *"}})
    assert result["status"] == "ok" and result["new_findings"] == 1
    [f] = findings(admin, job="repo-sweep")
    assert f["rule"] == "aws-access-key-id" and f["status"] == "open" and f["line"] == 2
    assert f["detail"]["commit"] == sha and f["detail"]["path"] == "deploy/config.env"
    assert key not in str(f) and key[-4:] in f["excerpt"]
    assert run(admin, "repo-sweep", {"schedule": {"cron": "0 * * * *"}})["bytes"] == 0  # nothing new
    sha2 = commit(repo, "other.env", f"KEY={aws_key()}\n")
    again = dict(admin.request("POST", "/v1/admin/scan-jobs/repo-sweep/run"))
    assert again["new_findings"] == 1 and findings(admin, job="repo-sweep")[0]["detail"]["commit"] == sha2


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    server.set_auth(False)  # this test is about reading objects, not IAM
    yield server.endpoint
    server.stop()


def test_object_with_a_secret_put_into_s3_is_found_and_unchanged_objects_are_not_reread(
    scan_broker, moto, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=moto,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="agent-artifacts")
    s3.put_object(Bucket="agent-artifacts", Key="runs/1/output.txt", Body=b"all good\n")
    key = aws_key()
    s3.put_object(Bucket="agent-artifacts", Key="runs/2/output.txt", Body=f"debug: key {key} used\n".encode())
    s3.put_object(Bucket="agent-artifacts", Key="other/x.txt", Body=f"{aws_key()}\n".encode())
    body = {
        "source": {"kind": "s3", "bucket": "agent-artifacts", "prefix": "runs/", "endpoint_url": moto},
        "schedule": {"every_seconds": 3600},
    }
    admin = scan_broker.admin()
    first = run(admin, "artifacts", body)
    assert first["status"] == "ok", first
    [f] = findings(admin, job="artifacts")
    assert f["location"] == "s3://agent-artifacts/runs/2/output.txt" and f["line"] == 1 and key not in str(f)
    assert run(admin, "artifacts", body)["bytes"] == 0  # same ETags: nothing re-read
    s3.put_object(Bucket="agent-artifacts", Key="runs/1/output.txt", Body=f"now {aws_key()}\n".encode())
    third = dict(admin.request("POST", "/v1/admin/scan-jobs/artifacts/run"))
    assert third["new_findings"] == 1 and third["bytes"] == len(b"now ") + 21


def test_same_secret_under_several_kv_paths_is_reported_as_sprawl(scan_broker) -> None:
    bao = hvac.Client(url=scan_broker.openbao.address, token=scan_broker.openbao.root_token.reveal())
    prefix = f"scan-{uuid.uuid4().hex[:6]}"
    value = secrets.token_urlsafe(24)
    bao.secrets.kv.v2.create_or_update_secret(
        path=f"{prefix}/team-a/db", secret={"password": value, "user": "app"}, mount_point="secret"
    )
    bao.secrets.kv.v2.create_or_update_secret(
        path=f"{prefix}/team-b/cfg", secret={"db_pass": value}, mount_point="secret"
    )
    bao.secrets.kv.v2.create_or_update_secret(
        path=f"{prefix}/team-c/own", secret={"token": secrets.token_hex(20)}, mount_point="secret"
    )
    admin = scan_broker.admin()
    result = run(
        admin,
        "kv-sprawl",
        {
            "source": {"kind": "openbao_kv", "mount": "secret", "path": prefix},
            "schedule": {"every_seconds": 3600},
        },
    )
    assert result["status"] == "ok" and result["new_findings"] == 2
    found = findings(admin, job="kv-sprawl")
    assert {f["location"] for f in found} == {
        f"secret/{prefix}/team-a/db#password",
        f"secret/{prefix}/team-b/cfg#db_pass",
    }
    assert all(f["rule"] == "kv-secret-sprawl" and value not in str(f) for f in found)
    again = run(
        admin,
        "kv-sprawl",
        {
            "source": {"kind": "openbao_kv", "mount": "secret", "path": prefix},
            "schedule": {"every_seconds": 3600},
        },
    )
    assert again["new_findings"] == 0 and len(findings(admin, job="kv-sprawl")) == 2


def test_managed_kv_secret_found_in_a_log_is_rotated_and_its_old_value_destroyed(scan_broker, tmp_path: Path) -> None:
    rotation = scan_broker.container.rotation
    if rotation is None:
        pytest.skip("the rotation service is not wired in this tree")
    name, path = f"billing-key-{uuid.uuid4().hex[:6]}", f"apps/{uuid.uuid4().hex[:6]}/billing"
    rotation.put(
        name,
        "kv_generated",
        {"generator": {"format": "api_key", "prefix": "sk_", "length": 40}},
        kv_mount="secret",
        kv_path=path,
        overlap_seconds=3600,
        actor="test",
    )
    first = rotation.rotate(name, reason="initial", actor="test")
    bao = hvac.Client(url=scan_broker.openbao.address, token=scan_broker.openbao.root_token.reveal())
    old = bao.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)["data"][
        "data"
    ]["value"]
    log = tmp_path / "billing.log"
    log.write_text(f"INFO charging customer with api key {old}, retry 0\n")
    admin = scan_broker.admin()
    result = run(
        admin,
        "billing-logs",
        {"source": {"kind": "files", "path": str(log)}, "schedule": {"every_seconds": 3600}},
    )
    assert result["status"] == "ok"
    [f] = findings(admin, job="billing-logs")
    assert f["rule"] == "managed-static-secret" and f["status"] == "rotated", f
    assert f["detail"]["action"]["managed"] == name and old not in str(f)
    now = bao.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)["data"]
    assert now["data"]["value"] != old and now["metadata"]["version"] > first.kv_version
    old_version = bao.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"]["versions"]
    assert old_version[str(first.kv_version)]["destroyed"] is True  # a leak skips the overlap window
    assert rotation.match_fingerprint(scan_broker.container.fingerprint(old)) is None
