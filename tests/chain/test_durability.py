"""Durable revocation: a broker killed mid-revocation, and an OpenBao outage during escalation.

Both with real processes: the broker as ``nhi-broker serve --config`` killed with SIGKILL while
its revocation call hangs in a black-holed connection; OpenBao as a persistent raft server
stopped and started again with the same storage.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from support.broker import free_port, start_broker
from tcp_proxy import BlackholeProxy

from broker.backends.openbao_http import OpenBaoHTTP
from broker.client import AdminClient, BrokerClient, CredentialDenied
from broker.demo import DEMO_ACTIONS, DEMO_RESOURCES, policy_name, seed_openbao
from broker.identity import DEV_ISSUER, DevIssuer
from broker.openbao_server import start_persistent_server
from tests.chain.conftest import accessor_is_dead, token_is_dead

pytestmark = [pytest.mark.openbao, pytest.mark.slow]
ADMIN = "crash-test-admin-token-0123456789"
NHI_BROKER = str(Path(sys.executable).parent / "nhi-broker")


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([NHI_BROKER, "serve", "--config", str(config)], stdout=out, stderr=out,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("broker did not start")


def _config(path: Path, data_dir: Path, port: int, bao_addr: str, bao_token: str) -> Path:
    path.write_text(yaml.safe_dump({
        "data_dir": str(data_dir), "port": port, "admin_token": ADMIN, "dev_issuer": True,
        "openbao": {"addr": bao_addr, "token": bao_token, "timeout_seconds": 30},
        "revocation_worker_interval_seconds": 0.2, "log_format": "json"}))
    return path


def _seed_registry(admin: AdminClient) -> None:
    admin.put("profiles", "demo", {"allowed_actions": list(DEMO_ACTIONS), "ceiling": "critical"})
    for name, (sensitivity, environment, _) in DEMO_RESOURCES.items():
        admin.put("resources", name, {"kind": "vault_token", "sensitivity": sensitivity.value,
                                      "environment": environment.value,
                                      "vault": {"policies": [policy_name(name)]}})
    admin.put("agents", "demo-agent", {"owner": "demo-owner", "profiles": ["demo"],
                                       "identities": [{"issuer": DEV_ISSUER, "subject": "demo-agent"}]})


def _outbox(db: Path, task_id: str) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return list(conn.execute("SELECT state, attempts FROM revocations WHERE task_id = ?", (task_id,)))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def test_revocation_written_before_a_broker_crash_completes_after_restart(openbao, tmp_path):
    root = openbao.root_token.reveal()
    seed_openbao(OpenBaoHTTP(openbao.address, openbao.root_token))
    proxy = BlackholeProxy("127.0.0.1", int(openbao.address.rsplit(":", 1)[1]))
    data_dir, port = tmp_path / "broker", free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "broker.log"
    through_proxy = _config(tmp_path / "proxy.yaml", data_dir, port, proxy.address, root)
    proc = _serve(through_proxy, log)
    try:
        _wait_http(url, proc, log)
        admin = AdminClient(url, ADMIN)
        _seed_registry(admin)
        issuer = DevIssuer.load_or_create(data_dir)
        agent = BrokerClient(url, lambda: issuer.mint("demo-agent"))
        task_id = agent.open_task("demo", "crash me")["task_id"]
        read = agent.request_credential(task_id, "db.read", "demo-data")
        secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")

        proxy.hold.set()  # from now on the broker's calls to OpenBao hang
        outcome: list[object] = []
        trigger = threading.Thread(target=lambda: outcome.append(_try(
            lambda: agent.request_credential(task_id, "data.export", "demo-data"))), daemon=True)
        trigger.start()
        _wait(lambda: _outbox(data_dir / "broker.db", task_id) == [("pending", 0)], 10,
              "the revocation row written to the outbox")
        _wait(lambda: proxy.swallowed > 0, 10, "the revocation call in flight")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        trigger.join(timeout=10)
        # killed between writing the revocation and completing it: the tokens are still alive
        assert not token_is_dead(openbao.address, read.secret("token"))
        assert not accessor_is_dead(openbao.address, root, secret.fields["accessor"])
        assert _outbox(data_dir / "broker.db", task_id) == [("pending", 0)]
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()

    direct = _config(tmp_path / "direct.yaml", data_dir, port, openbao.address, root)
    proc = _serve(direct, log)
    try:
        _wait_http(url, proc, log)
        _wait(lambda: token_is_dead(openbao.address, read.secret("token")), 10, "token revoked after restart")
        assert accessor_is_dead(openbao.address, root, secret.fields["accessor"])
        assert _outbox(data_dir / "broker.db", task_id) == [("done", 1)]
        admin = AdminClient(url, ADMIN)
        assert admin.task(task_id)["task"]["state"] == "quarantined"
        revoked = admin.audit(task_id=task_id, kind="credential.revoked")
        assert len(revoked) == 1 and revoked[0]["data"]["reason"].startswith("dangerous_sequence")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _try(fn):
    try:
        return fn()
    except Exception as exc:
        return exc


def test_revocations_queued_during_an_openbao_outage_complete_when_it_returns(tmp_path):
    bao_dir = tmp_path / "bao"
    bao = start_persistent_server(bao_dir)
    port = int(bao.address.rsplit(":", 1)[1])
    token = bao.root_token
    running = None
    try:
        with OpenBaoHTTP(bao.address, token).client() as c:
            c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        running = start_broker(tmp_path / "broker", bao, revocation_stuck_seconds=1.0)
        agent = running.agent()
        task_id = agent.open_task("demo", "outage")["task_id"]
        read = agent.request_credential(task_id, "db.read", "demo-data")
        secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")
        assert not token_is_dead(bao.address, read.secret("token"))

        bao.stop()  # OpenBao is down
        started = time.monotonic()
        with pytest.raises(CredentialDenied) as exc:
            agent.request_credential(task_id, "data.export", "demo-data")
        assert exc.value.body["error"]["detector"] == "dangerous_sequence"
        assert time.monotonic() - started < 5  # escalation never waits for the backend
        http = httpx.Client(base_url=running.url)
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["revocations"]["pending"] == 1
        assert ready.json()["checks"]["backend.vault_token"].startswith("unavailable")
        _wait(lambda: http.get("/readyz").json()["checks"]["revocations"]["status"] == "stuck", 5,
              "the backlog reported stuck")
        assert "nhi_revocations_pending 1.0" in http.get("/metrics").text
        time.sleep(1.0)  # a few failed attempts with backoff while it is down
        with running.container.store.read() as conn:
            from broker.store import outbox
            assert outbox.pending_count(conn) == 1

        bao = start_persistent_server(bao_dir, port=port, root_token=token)  # same storage, same port
        back = time.monotonic()
        _wait(lambda: token_is_dead(bao.address, read.secret("token")), 10, "revocation after the outage")
        drained_in = time.monotonic() - back
        assert accessor_is_dead(bao.address, token.reveal(), secret.fields["accessor"])
        _wait(lambda: http.get("/readyz").status_code == 200, 5, "ready again")
        assert "nhi_revocations_pending 0.0" in http.get("/metrics").text
        revoked = running.admin().audit(task_id=task_id, kind="credential.revoked")
        assert len(revoked) == 1 and revoked[0]["data"]["attempts"] >= 2
        assert drained_in < 3, f"took {drained_in:.1f}s after OpenBao returned (backoff not short-circuited)"
        http.close()
    finally:
        if running is not None:
            running.stop()
        bao.stop()


