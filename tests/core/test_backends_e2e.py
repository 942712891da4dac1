"""Every backend through the broker's HTTP API: dynamic PostgreSQL logins and wrapped KV reads."""

from __future__ import annotations

import hvac
import psycopg
import pytest
from support.broker import start_broker

pytestmark = [pytest.mark.openbao]


@pytest.fixture(scope="module")
def pg_broker(openbao, private_pg, tmp_path_factory):
    """demo-db on this process's private cluster: the demo seed's ``nhi_openbao`` role there is
    ours alone (every ``nhi-broker up`` resets its password on the shared server)."""
    running = start_broker(tmp_path_factory.mktemp("pgbroker"), openbao, postgres=private_pg)
    yield running
    running.stop()


@pytest.mark.postgres
def test_postgres_credential_logs_in_and_dies_with_its_task(pg_broker, private_pg):
    pg_server = private_pg
    agent = pg_broker.agent()
    info = agent.open_task("demo", "query the demo db")
    cred = agent.request_credential(info["task_id"], "db.read", "demo-db")
    assert cred.fields["kind"] == "postgres" and cred.fields["lease_id"].startswith("database/creds/")
    assert "****" in cred.fields.get("dsn", "****") and cred.secret("password") not in str(cred.fields)
    conninfo = pg_server.conninfo(user=cred.fields["username"], password=cred.secret("password"))
    session = psycopg.connect(conninfo, autocommit=True)
    assert session.execute("SELECT 1").fetchone() == (1,)
    agent.end_task(info["task_id"])
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo)
    with pytest.raises(psycopg.Error):  # the open session was terminated too
        session.execute("SELECT 1")
    session.close()


def test_secret_read_on_kv_resource_returns_single_use_wrapping_token(broker):
    agent = broker.agent()
    with agent.task("demo", "fetch the api key") as task:
        cred = task.credential("secrets.read", "demo-kv")
        assert cred.decision["mode"] == "inline" and cred.fields["kind"] == "vault_kv"
        client = hvac.Client(url=broker.openbao.address, token=cred.secret("wrapping_token"))
        first = client.sys.unwrap()
        assert first["data"]["data"]["api_key"].startswith("demo_")
        with pytest.raises(hvac.exceptions.VaultError):
            client.sys.unwrap()
        # the unwrapped value itself is known to the scanner as broker-issued
        api_key = first["data"]["data"]["api_key"]
        found = broker.container.scanning.scanner.scan(f"leaked: {api_key}")
        assert any(f.grant is not None and f.grant.task_id == task.task_id for f in found)


def test_wrapped_secret_unwrapped_by_someone_else_is_tampering_and_escalates(broker):
    agent = broker.agent()
    info = agent.open_task("demo", "intercepted")
    cred = agent.request_credential(info["task_id"], "secrets.read", "demo-kv")
    other = agent.request_credential(info["task_id"], "db.read", "demo-data").secret("token")
    # not consumed yet: the agent's failure was something else
    r = agent.report_unwrap_failed(info["task_id"], cred.fields["grant_id"])
    assert r["verdict"] == "not_consumed" and r["escalation"] is None
    # an interceptor unwraps it first
    hvac.Client(url=broker.openbao.address, token=cred.secret("wrapping_token")).sys.unwrap()
    r = agent.report_unwrap_failed(info["task_id"], cred.fields["grant_id"])
    assert r["verdict"] == "tampered" and r["escalation"] is not None
    assert broker.admin().task(info["task_id"])["task"]["state"] == "quarantined"
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=broker.openbao.address, token=other).auth.token.lookup_self()
    kinds = [e["kind"] for e in broker.admin().audit(task_id=info["task_id"])]
    assert "credential.tampered" in kinds and "task.escalated" in kinds


def test_intercepted_wrapped_secret_that_the_broker_manages_is_rotated(broker):
    admin = broker.admin()
    path = "tamper-demo/api-key"
    admin.request(
        "PUT",
        "/v1/admin/managed-secrets/tamper-demo",
        {
            "kind": "kv_generated",
            "kv": {"mount": "secret", "path": path},
            "settings": {"generator": {"format": "hex", "length": 48}},
            "overlap_seconds": 600,
        },
    )
    admin.request("POST", "/v1/admin/managed-secrets/tamper-demo/rotate", {"reason": "initial"})
    admin.put(
        "resources",
        "tamper-kv",
        {
            "kind": "vault_kv",
            "sensitivity": "confidential",
            "environment": "dev",
            "vault": {"mount": "secret", "path": path},
        },
    )
    bao = hvac.Client(url=broker.openbao.address, token=broker.openbao.root_token.reveal())
    before = bao.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    agent = broker.agent()
    info = agent.open_task("demo", "intercepted managed secret")
    cred = agent.request_credential(info["task_id"], "secrets.read", "tamper-kv")
    hvac.Client(url=broker.openbao.address, token=cred.secret("wrapping_token")).sys.unwrap()  # the interceptor
    r = agent.report_unwrap_failed(info["task_id"], cred.fields["grant_id"])
    assert r["verdict"] == "tampered" and r["rotated"] == ["tamper-demo"]
    after = bao.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    assert after["data"]["metadata"]["version"] > before["data"]["metadata"]["version"]
    assert after["data"]["data"] != before["data"]["data"]
