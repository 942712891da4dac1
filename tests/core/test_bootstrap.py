"""`nhi-broker bootstrap` prepares a fresh (non-dev) OpenBao for `serve`, idempotently; `serve`
then runs on the AppRole it created (not a root token) and renews its own token."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import hvac
import pytest
from support.replicas import base_config, bootstrap, make_replica, replica_env

from broker.backends.openbao_auth import AppRoleLogin, TokenRenewer
from broker.backends.openbao_http import OpenBaoHTTP
from broker.identity import DevIssuer
from broker.openbao_server import OpenBaoServer, start_persistent_server
from broker.secrets import Secret

pytestmark = [pytest.mark.openbao, pytest.mark.slow]


@pytest.fixture()
def fresh_bao() -> Iterator[tuple[OpenBaoServer, Path]]:
    base = Path("/tmp") / f"nhi-bootstrap-{uuid.uuid4().hex[:8]}"
    server = start_persistent_server(base / "bao")
    yield server, base
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_bootstrap_prepares_a_fresh_openbao_and_serve_runs_on_its_approle(fresh_bao) -> None:
    server, base = fresh_bao
    issuer = DevIssuer.load_or_create(base / "issuer")
    config = base_config(
        base, database_url=f"sqlite:///{base / 'broker.db'}", openbao_addr=server.address, issuer=issuer
    )
    operator_env = replica_env(server.root_token.reveal())
    secret_file = base / "secret-id"
    first = json.loads(
        bootstrap(base, config, operator_env, "--demo", "--approle", "--secret-id-file", str(secret_file))
    )
    assert "mount secret/ (kv v2)" in first["created"] and "policy nhi-broker" in first["created"]
    assert secret_file.stat().st_mode & 0o777 == 0o600
    again = json.loads(bootstrap(base, config, operator_env, "--approle"))
    assert again["created"] == []  # idempotent: nothing new the second time
    assert again["approle_role_id"] == first["approle_role_id"]

    # serve authenticates with the AppRole: no operator token in its environment
    env = replica_env("", {"NHI_BROKER_OPENBAO__APPROLE_SECRET_ID": secret_file.read_text()})
    replica = make_replica(
        base,
        "r0",
        {**config, "openbao": {**config["openbao"], "auth": "approle", "approle_role_id": first["approle_role_id"]}},
        env,
    )
    replica.start()
    try:
        replica.wait_ready()
        with httpx.Client(base_url=replica.url, timeout=30) as c:

            def h() -> dict[str, str]:
                return {"Authorization": f"Bearer {issuer.mint('demo-agent')}"}

            task = c.post("/v1/tasks", headers=h(), json={"profile": "demo", "purpose": "approle"}).json()
            r = c.post(
                f"/v1/tasks/{task['task_id']}/credentials",
                headers=h(),
                json={"action": "db.read", "resource": "demo-data"},
            )
            assert r.status_code == 200, r.text
            token = r.json()["credential"]["token"]
            child = hvac.Client(url=server.address, token=token)
            assert child.secrets.kv.v2.read_secret_version(
                path="demo-data/example", mount_point="secret", raise_on_deleted_version=False
            )["data"]["data"]
            kv = c.post(
                f"/v1/tasks/{task['task_id']}/credentials",
                headers=h(),
                json={"action": "secrets.read", "resource": "demo-kv"},
            )
            assert kv.status_code in (200, 202), kv.text
            assert c.delete(f"/v1/tasks/{task['task_id']}", headers=h()).status_code == 200
        with pytest.raises(hvac.exceptions.Forbidden):
            child.auth.token.lookup_self()
        assert "Traceback" not in replica.tail(20000)
    finally:
        replica.stop()


def test_token_renewer_renews_and_logs_in_again_when_the_token_reaches_its_max_ttl(fresh_bao) -> None:
    server, _ = fresh_bao
    root = hvac.Client(url=server.address, token=server.root_token.reveal())
    root.sys.enable_auth_method("approle")
    root.sys.create_or_update_acl_policy(
        name="self", policy='path "auth/token/lookup-self" { capabilities = ["read"] }'
    )
    root.auth.approle.create_or_update_approle("short", token_policies=["self"], token_ttl="4s", token_max_ttl="9s")
    role_id = root.auth.approle.read_role_id("short")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("short")["data"]["secret_id"]
    http = OpenBaoHTTP(server.address, Secret(""))
    login = AppRoleLogin(http, mount="approle", role_id=role_id, secret_id=Secret(secret_id))
    renewer = TokenRenewer(http, login, ttl=login.login(), min_interval=0.2).start()
    try:
        first = http.token.reveal()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and renewer.logins == 0:
            time.sleep(0.1)
        assert renewer.renewals >= 1 and renewer.logins >= 1
        assert http.token.reveal() != first
        with http.client() as c:  # the swapped-in token works
            assert c.adapter.get("/v1/auth/token/lookup-self")["data"]["ttl"] > 0
    finally:
        renewer.stop()


def test_bootstrap_without_an_operator_token_fails_with_a_message(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dev_mode: false\nopenbao: {addr: 'http://127.0.0.1:9'}\n")
    env = replica_env("")
    out = subprocess.run(
        [sys.executable, "-m", "broker.cli", "bootstrap", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "openbao.token is missing or a placeholder" in out.stdout + out.stderr
