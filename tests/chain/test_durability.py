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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select, update
from support.broker import RunningBroker, start_broker
from support.ports import free_port
from support.wait import DEADLINE, HTTP_TIMEOUT, wait_until
from tcp_proxy import BlackholeProxy

from broker.backends.openbao_http import OpenBaoHTTP
from broker.client import AdminClient, BrokerClient, CredentialDenied
from broker.demo import DEMO_ACTIONS, DEMO_RESOURCES, policy_name, seed_openbao
from broker.identity import DEV_ISSUER, DevIssuer
from broker.openbao_server import start_persistent_server
from broker.store import tables as t
from broker.store.repo import utcnow
from tests.chain.conftest import accessor_is_dead, token_is_dead

pytestmark = [pytest.mark.openbao, pytest.mark.slow]
ADMIN = "crash-test-admin-token-0123456789"
NHI_BROKER = str(Path(sys.executable).parent / "nhi-broker")


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [NHI_BROKER, "serve", "--config", str(config)],
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited {proc.returncode}: {log.read_text()[-2000:]}")
        return httpx.get(f"{url}/healthz", timeout=HTTP_TIMEOUT).status_code == 200

    try:
        wait_until(up, what=f"the broker at {url} to answer /healthz")
    except AssertionError:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited {proc.returncode}: {log.read_text()[-2000:]}") from None
        raise


def _config(path: Path, data_dir: Path, port: int, bao_addr: str, bao_token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(data_dir),
                "port": port,
                "admin_token": ADMIN,
                "dev_issuer": True,
                "openbao": {"addr": bao_addr, "token": bao_token, "timeout_seconds": 30},
                "revocation_worker_interval_seconds": 0.2,
                "log_format": "json",
            }
        )
    )
    return path


def _seed_registry(admin: AdminClient) -> None:
    admin.put("profiles", "demo", {"allowed_actions": list(DEMO_ACTIONS), "ceiling": "critical"})
    for name, (sensitivity, environment, _) in DEMO_RESOURCES.items():
        admin.put(
            "resources",
            name,
            {
                "kind": "vault_token",
                "sensitivity": sensitivity.value,
                "environment": environment.value,
                "vault": {"policies": [policy_name(name)]},
            },
        )
    admin.put(
        "agents",
        "demo-agent",
        {"owner": "demo-owner", "profiles": ["demo"], "identities": [{"issuer": DEV_ISSUER, "subject": "demo-agent"}]},
    )


def _outbox(db: Path, task_id: str) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=DEADLINE) as conn:
        return list(conn.execute("SELECT state, attempts FROM revocations WHERE task_id = ?", (task_id,)))


def _revocations(running: RunningBroker, task_id: str) -> list[dict[str, Any]]:
    """The task's outbox rows; times as aware UTC datetimes (SQLite hands them back naive)."""
    with running.container.store.read() as conn:
        rows = conn.execute(select(t.revocations).where(t.revocations.c.task_id == task_id))
        return [
            {k: v.replace(tzinfo=v.tzinfo or UTC) if isinstance(v, datetime) else v for k, v in r._mapping.items()}
            for r in rows
        ]


def test_revocation_written_before_a_broker_crash_completes_after_restart(openbao, tmp_path):
    root = openbao.root_token.reveal()
    seed_openbao(OpenBaoHTTP(openbao.address, openbao.root_token))
    proxy = BlackholeProxy("127.0.0.1", int(openbao.address.rsplit(":", 1)[1]))
    data_dir, port = tmp_path / "broker", free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "broker.log"
    # what the test waits for is the broker's state, never time: see tests/support/wait.py
    through_proxy = _config(tmp_path / "proxy.yaml", data_dir, port, proxy.address, root)
    proc = _serve(through_proxy, log)
    try:
        _wait_http(url, proc, log)
        admin = AdminClient(url, ADMIN, timeout=HTTP_TIMEOUT)
        _seed_registry(admin)
        issuer = DevIssuer.load_or_create(data_dir)
        agent = BrokerClient(url, lambda: issuer.mint("demo-agent"), timeout=HTTP_TIMEOUT)
        task_id = agent.open_task("demo", "crash me")["task_id"]
        read = agent.request_credential(task_id, "db.read", "demo-data")
        secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")

        proxy.hold.set()  # from now on the broker's calls to OpenBao hang
        outcome: list[object] = []
        trigger = threading.Thread(
            target=lambda: outcome.append(_try(lambda: agent.request_credential(task_id, "data.export", "demo-data"))),
            daemon=True,
        )
        trigger.start()
        wait_until(
            lambda: _outbox(data_dir / "broker.db", task_id) == [("pending", 0)],
            what="the revocation row written to the outbox",
        )
        wait_until(lambda: proxy.swallowed > 0, what="the revocation call in flight")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        trigger.join(timeout=DEADLINE)
        assert not trigger.is_alive()
        # killed between writing the revocation and completing it: the tokens are still alive
        assert not token_is_dead(openbao.address, read.secret("token"))
        assert not accessor_is_dead(openbao.address, root, secret.fields["accessor"])
        assert _outbox(data_dir / "broker.db", task_id) == [("pending", 0)]
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()

    port = free_port()  # the same data dir; a port nothing else can have taken meanwhile
    url = f"http://127.0.0.1:{port}"
    direct = _config(tmp_path / "direct.yaml", data_dir, port, openbao.address, root)
    proc = _serve(direct, log)
    try:
        _wait_http(url, proc, log)
        wait_until(lambda: token_is_dead(openbao.address, read.secret("token")), what="token revoked after restart")
        assert accessor_is_dead(openbao.address, root, secret.fields["accessor"])
        wait_until(
            lambda: _outbox(data_dir / "broker.db", task_id) == [("done", 1)], what="the outbox row confirmed done"
        )
        admin = AdminClient(url, ADMIN, timeout=HTTP_TIMEOUT)
        assert admin.task(task_id)["task"]["state"] == "quarantined"
        revoked = admin.audit(task_id=task_id, kind="credential.revoked")
        assert len(revoked) == 1 and revoked[0]["data"]["reason"].startswith("dangerous_sequence")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()


def _try(fn):
    try:
        return fn()
    except Exception as exc:
        return exc


def test_revocations_queued_during_an_openbao_outage_complete_when_it_returns(tmp_path):
    bao_dir = tmp_path / "bao"
    port = free_port(pair=True)  # restarted on the same port: outside the ephemeral range
    bao = start_persistent_server(bao_dir, port=port)
    token = bao.root_token
    running = None
    http = httpx.Client(timeout=HTTP_TIMEOUT)
    try:
        with OpenBaoHTTP(bao.address, token).client() as c:
            c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        running = start_broker(tmp_path / "broker", bao, revocation_stuck_seconds=1.0)
        http.base_url = httpx.URL(running.url)
        agent = running.agent()
        task_id = agent.open_task("demo", "outage")["task_id"]
        read = agent.request_credential(task_id, "db.read", "demo-data")
        secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")
        assert not token_is_dead(bao.address, read.secret("token"))

        bao.stop()  # OpenBao is down
        with pytest.raises(CredentialDenied) as exc:
            agent.request_credential(task_id, "data.export", "demo-data")
        assert exc.value.body["error"]["detector"] == "dangerous_sequence"
        # the escalation answered without the backend: its revocation waits in the outbox
        [row] = _revocations(running, task_id)
        assert row["state"] == "pending" and row["attempts"] >= 1 and row["last_error_kind"] == "unavailable"
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["revocations"]["pending"] == 1
        assert ready.json()["checks"]["backend.vault_token"].startswith("unavailable")
        wait_until(
            lambda: http.get("/readyz").json()["checks"]["revocations"]["status"] == "stuck",
            what="the backlog reported stuck",
        )
        assert "nhi_revocations_pending 1.0" in http.get("/metrics").text
        wait_until(
            lambda: _revocations(running, task_id)[0]["attempts"] >= 2, what="a retry that failed while OpenBao is down"
        )
        with running.container.store.read() as conn:
            from broker.store import outbox

            assert outbox.pending_count(conn) == 1

        # the row now backs off for an hour: only the worker noticing OpenBao is back can make
        # it due before the deadline below
        far = _back_off_for_an_hour(running, task_id)
        bao = start_persistent_server(bao_dir, port=port, root_token=token)  # same storage, same port
        wait_until(lambda: token_is_dead(bao.address, read.secret("token")), what="revocation after the outage")
        # OpenBao revokes a parent's children in the background: wait for the sibling too
        wait_until(
            lambda: accessor_is_dead(bao.address, token.reveal(), secret.fields["accessor"]),
            what="the sibling grant revoked with its parent",
        )
        [row] = wait_until(
            lambda: [r for r in _revocations(running, task_id) if r["state"] == "done"],
            what="the outbox row confirmed done",
        )
        assert row["completed_at"] < far
        wait_until(lambda: http.get("/readyz").status_code == 200, what="ready again")
        assert "nhi_revocations_pending 0.0" in http.get("/metrics").text
        revoked = running.admin().audit(task_id=task_id, kind="credential.revoked")
        assert len(revoked) == 1 and revoked[0]["data"]["attempts"] >= 3
    finally:
        http.close()
        if running is not None:
            running.stop()
        bao.stop()


def _back_off_for_an_hour(running: RunningBroker, task_id: str) -> datetime:
    """Push the task's pending revocation an hour out and return that time, once a full worker
    run has passed without undoing it (a retry in flight while we wrote would reschedule it)."""
    worker = running.revocation_worker

    def pushed() -> datetime | None:
        far = utcnow() + timedelta(hours=1)
        with running.container.store.write() as conn:
            conn.execute(
                update(t.revocations)
                .where(t.revocations.c.task_id == task_id, t.revocations.c.state == "pending")
                .values(next_attempt_at=far)
            )
        before = worker.last_run
        wait_until(lambda: worker.last_run != before, what="a worker run")
        before = worker.last_run
        wait_until(lambda: worker.last_run != before, what="a second worker run")
        [row] = _revocations(running, task_id)
        return far if row["next_attempt_at"] >= far - timedelta(seconds=1) else None

    return wait_until(pushed, what="the revocation backing off for an hour")
