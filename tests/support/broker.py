"""Run a real broker (container + uvicorn on a loopback port) inside the test process."""

from __future__ import annotations

import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from broker.api.app import create_app
from broker.backends.openbao_http import OpenBaoHTTP
from broker.client import AdminClient, BrokerClient
from broker.config import Settings
from broker.container import Container
from broker.demo import seed_kv, seed_openbao, seed_registry
from broker.demo_postgres import drop_demo_roles, seed_postgres
from broker.identity import DevIssuer
from broker.openbao_server import OpenBaoServer
from broker.runtime import Workers, revocation_worker
from rotation.revocation_worker import RevocationWorker

from .ports import free_port
from .wait import HTTP_TIMEOUT, wait_until

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
OPENBAO_TIMEOUT = 30.0  # the test broker's calls to OpenBao: only a hang reaches it on a busy machine
FINGERPRINT_KEY = "5e" * 32
AUDIT_KEY = "a0" * 32

__all__ = ["ADMIN_TOKEN", "RunningBroker", "free_port", "start_broker"]


@dataclass
class RunningBroker:
    container: Container
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    data_dir: Path
    openbao: OpenBaoServer
    dev_issuer: DevIssuer
    clients: list[Any] = field(default_factory=list)
    workers: Workers = field(default_factory=Workers)
    postgres: Any = None  # the server `demo-db` was configured against (its roles are dropped on stop)

    @property
    def revocation_worker(self) -> RevocationWorker:
        if self.workers.revocation is None:
            raise RuntimeError("this test broker runs no revocation worker")
        return self.workers.revocation

    def token(self, subject: str = "demo-agent", **kw: Any) -> str:
        return self.dev_issuer.mint(subject, **kw)

    def agent(self, subject: str = "demo-agent") -> BrokerClient:
        client = BrokerClient(self.url, lambda: self.token(subject), timeout=HTTP_TIMEOUT)
        self.clients.append(client)
        return client

    def admin(self) -> AdminClient:
        client = AdminClient(self.url, ADMIN_TOKEN, timeout=HTTP_TIMEOUT)
        self.clients.append(client)
        return client

    def bao(self) -> OpenBaoHTTP:
        return OpenBaoHTTP(self.openbao.address, self.openbao.root_token)

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.workers.stop()
        self.container.close()
        if self.postgres is not None:
            drop_demo_roles(self.data_dir, self.postgres.host, self.postgres.port)


def start_broker(
    data_dir: Path,
    openbao: OpenBaoServer,
    *,
    database_url: str = "",
    workers: bool = True,
    postgres: Any = None,
    **overrides: Any,
) -> RunningBroker:
    """``postgres``: a tests.support.postgres.PostgresServer to configure `demo-db` against."""
    if database_url.startswith("postgresql"):  # a shared store needs a configured, shared key
        overrides.setdefault("fingerprint_key", FINGERPRINT_KEY)
        overrides.setdefault("audit", {"key": AUDIT_KEY})
    overrides.setdefault("scan_roots", [tempfile.gettempdir()])  # like `up`: tests plant files in tmp
    # every test shares 127.0.0.1 and many provoke failed logins on purpose: the per-address budget
    # is the limiter tests' to set (tests/security/test_limits.py passes its own limits)
    overrides.setdefault("limits", {"auth_failures_per_minute": 100_000})
    settings = Settings(
        dev_mode=True,
        data_dir=data_dir,
        database_url=database_url,
        dev_issuer=True,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        openbao={
            "addr": openbao.address,
            "token": openbao.root_token.reveal(),  # type: ignore[arg-type]
            "timeout_seconds": OPENBAO_TIMEOUT,
        },
        **overrides,
    )
    container = Container.build(settings)
    http = OpenBaoHTTP(openbao.address, openbao.root_token)
    seed_openbao(http)
    seed_kv(http)
    pg_skipped = (
        seed_postgres(http, postgres.host, postgres.port, data_dir=data_dir)
        if postgres is not None
        else "not requested"
    )
    if postgres is not None and pg_skipped:
        raise RuntimeError(f"demo-db could not be configured: {pg_skipped}")
    seed_registry(container, with_postgres=pg_skipped is None)
    running_workers = Workers()
    if workers:
        running_workers.revocation = revocation_worker(container, interval=0.2).start()
    # bound here, handed to uvicorn: no other process can take the port in between
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(container), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), what="the test broker to start")
    if not server.started:
        raise RuntimeError("test broker did not start")
    return RunningBroker(
        container=container,
        server=server,
        thread=thread,
        url=f"http://127.0.0.1:{port}",
        data_dir=data_dir,
        openbao=openbao,
        dev_issuer=DevIssuer.load_or_create(data_dir),
        workers=running_workers,
        postgres=postgres,
    )
