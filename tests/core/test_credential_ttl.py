"""The credential's real lifetime is the decision's TTL, for every backend (issue 12, section 4):
each test compares the decision's ``ttl_seconds`` with what the backend itself says — the token,
wrapping token or lease TTL at OpenBao, the session's expiration at STS (moto). Where a backend
cannot match it (STS's 900 s minimum), the credential records what was granted and the broker
revokes it when its own expiry passes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import hvac
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import update
from support.aws_broker import aws_broker as support_aws_broker
from support.broker import RunningBroker, start_broker
from support.moto import REGION

from broker.store import tables as t
from policies import DEFAULT_BUNDLE

pytestmark = pytest.mark.openbao
SLACK = 10  # seconds between the decision and the look at the backend, on a loaded machine


def _root(broker: RunningBroker) -> hvac.Client:
    return hvac.Client(url=broker.openbao.address, token=broker.openbao.root_token.reveal())


def _close(actual: float, decided: int) -> bool:
    return decided - SLACK <= actual <= decided


def test_vault_token_ttl_at_openbao_is_the_decisions(broker):
    agent = broker.agent()
    with agent.task("demo", "token ttl") as task:
        for action, resource in (("db.read", "demo-data"), ("secrets.read", "demo-secrets")):  # low, high
            cred = task.credential(action, resource)
            ttl = cred.decision["ttl_seconds"]
            looked = _root(broker).auth.token.lookup_accessor(cred.fields["accessor"])["data"]
            assert _close(looked["ttl"], ttl), (looked["ttl"], ttl)
            assert int(looked["explicit_max_ttl"]) <= ttl
            assert _close(cred.fields["granted_ttl_seconds"], ttl) and cred.fields["ttl_seconds"] == ttl


def test_vault_kv_wrapping_ttl_at_openbao_is_the_decisions(broker):
    agent = broker.agent()
    with agent.task("demo", "wrap ttl") as task:
        cred = task.credential("secrets.read", "demo-kv")
        ttl = cred.decision["ttl_seconds"]
        looked = _root(broker).auth.token.lookup_accessor(cred.fields["wrapping_accessor"])["data"]
        assert int(looked["creation_ttl"]) == ttl and _close(looked["ttl"], ttl)
        assert cred.fields["granted_ttl_seconds"] == cred.fields["wrap_ttl"] == ttl


@pytest.fixture(scope="module")
def pg_broker(openbao, pg_server, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(tmp_path_factory.mktemp("ttl-pg"), openbao, postgres=pg_server)
    yield running
    running.stop()


@pytest.mark.postgres
def test_postgres_lease_ttl_at_openbao_is_the_decisions_not_the_roles_default(pg_broker):
    """The demo role's default_ttl is 300 s; a low-tier read is decided for up to an hour."""
    agent = pg_broker.agent()
    with agent.task("demo", "lease ttl") as task:
        cred = task.credential("db.read", "demo-db")
        ttl = cred.decision["ttl_seconds"]
        assert ttl > 300  # longer than the role's default: the lease must be extended to it
        lease = _root(pg_broker).sys.read_lease(cred.fields["lease_id"])["data"]
        assert _close(lease["ttl"], ttl), (lease["ttl"], ttl)
        expires = datetime.fromisoformat(cred.fields["expires_at"])
        assert _close((expires - datetime.now(UTC)).total_seconds(), ttl)
        assert _close(cred.fields["granted_ttl_seconds"], ttl)


SHORT_WRITES = """
@id("short-storage-writes")
@max_ttl("300")
permit (principal, action == Action::"storage.write", resource);
"""


@pytest.fixture(scope="module")
def aws_broker(openbao, moto_server, tmp_path_factory) -> Iterator[RunningBroker]:
    bundle = tmp_path_factory.mktemp("ttl-bundle") / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle, ignore=shutil.ignore_patterns("__pycache__"))
    (bundle / "policies" / "60-short-writes.cedar").write_text(SHORT_WRITES)
    with support_aws_broker(
        tmp_path_factory.mktemp("ttl-aws"),
        openbao,
        moto_server,
        role="ttl-role",
        bucket="ttl-bucket",
        resource="ttl-s3",
        profile="cloud-ttl",
        actions=["storage.read", "storage.write"],
        policy_dir=Path(bundle),
    ) as running:
        yield running


@pytest.mark.aws
def test_sts_expiration_is_the_decisions_ttl(aws_broker):
    agent = aws_broker.agent()
    with agent.task("cloud-ttl", "sts ttl") as task:
        cred = task.credential("storage.read", "ttl-s3")
        ttl = cred.decision["ttl_seconds"]
        assert ttl >= 900  # at or above STS's minimum: the session lasts exactly the decision's TTL
        sts_expiry = datetime.fromisoformat(cred.fields["aws_expires_at"])  # STS's own Expiration
        assert _close((sts_expiry - datetime.now(UTC)).total_seconds(), ttl)
        assert _close(cred.fields["backend_ttl_seconds"], ttl) and _close(cred.fields["granted_ttl_seconds"], ttl)


@pytest.mark.aws
def test_sts_session_longer_than_the_decision_is_recorded_and_revoked_at_expiry(aws_broker, moto_server):
    agent = aws_broker.agent()
    with agent.task("cloud-ttl", "short write") as task:
        cred = task.credential("storage.write", "ttl-s3")
        ttl = cred.decision["ttl_seconds"]
        assert ttl == 300  # the candidate @max_ttl; STS cannot issue less than 900 s
        sts_expiry = datetime.fromisoformat(cred.fields["aws_expires_at"])
        assert _close((sts_expiry - datetime.now(UTC)).total_seconds(), 900)
        assert _close(cred.fields["granted_ttl_seconds"], ttl) and _close(cred.fields["backend_ttl_seconds"], 900)
        issued = aws_broker.admin().audit(task_id=task.task_id, kind="credential.issued")[-1]["data"]
        assert issued["ttl_seconds"] == ttl and issued["revoke_at_expiry"] is True
        session = boto3.Session(
            aws_access_key_id=cred.fields["access_key_id"],
            aws_secret_access_key=cred.secret("secret_access_key"),
            aws_session_token=cred.secret("session_token"),
            region_name=REGION,
        )
        s3 = session.client("s3", endpoint_url=moto_server.endpoint)
        s3.list_objects_v2(Bucket="ttl-bucket")  # works while the grant lives
        # the broker's expiry passes (moved, not waited for): the sweeper revokes at the backend
        c = aws_broker.container
        with c.store.write() as conn:
            conn.execute(
                update(t.grants)
                .where(t.grants.c.grant_id == cred.fields["grant_id"])
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        deadline = time.monotonic() + 60
        while cred.fields["grant_id"] not in [
            e["data"]["grant_id"] for e in aws_broker.admin().audit(task_id=task.task_id, kind="credential.revoked")
        ]:
            assert time.monotonic() < deadline, "the expired grant was not revoked at the backend"
            time.sleep(0.2)
        with pytest.raises(ClientError):  # the session STS would still honour is denied
            s3.list_objects_v2(Bucket="ttl-bucket")
