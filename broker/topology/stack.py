"""``nhi-broker up --ha``: the whole production-shaped topology, started in order, stopped in reverse.

1. PostgreSQL: the configured URL, or a private cluster under ``DATA_DIR/postgres``;
2. a 3-node OpenBao raft cluster under ``DATA_DIR/openbao`` (``topology.openbao_cluster``);
3. HAProxy: the broker URL (replicas, health-checked on ``/readyz``) and the OpenBao URL (active node);
4. ``bootstrap`` through the OpenBao URL with the admin token: mounts, policies, the broker's AppRole;
   then the demo seed of ``up`` (policies, KV data, demo-db on that PostgreSQL, agent, profile);
5. N replicas of ``nhi-broker serve``, logged in to OpenBao by AppRole, sharing the fingerprint key;
6. ``DATA_DIR/up.json`` (0600) once the load balancer answers ready.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from broker.errors import BrokerError, UpstreamUnavailable
from broker.logging import get_logger
from broker.secrets import Secret
from broker.topology import ports
from broker.topology.haproxy import HAProxy
from broker.topology.openbao_cluster import OpenBaoCluster
from broker.topology.postgres_local import LocalPostgres
from broker.topology.replicas import ServeReplica

log = get_logger("nhi-broker.up-ha")


def _key_file(path: Path, make: str) -> str:
    if not path.exists():
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(make)
    return path.read_text().strip()


@dataclass
class HAStack:
    data_dir: Path
    port: int
    replica_count: int
    database_url: str | None = None
    openbao: OpenBaoCluster | None = None
    postgres: LocalPostgres | None = None
    haproxy: HAProxy | None = None
    replicas: list[ServeReplica] = field(default_factory=list)
    pg_note: str | None = None  # why demo-db was not configured, if it was not
    _demo_pg: tuple[str, int] | None = None  # where demo-db's roles were created
    admin_token: Secret = field(default_factory=lambda: Secret(""), repr=False)
    _fingerprint_key: Secret = field(default_factory=lambda: Secret(""), repr=False)
    _audit_key: Secret = field(default_factory=lambda: Secret(""), repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openbao_addr(self) -> str:
        return f"http://127.0.0.1:{self.port + ports.OPENBAO_LB}"

    def start(self) -> None:
        if not 1 <= self.replica_count <= ports.MAX_REPLICAS:
            raise BrokerError(f"--replicas {self.replica_count}: must be between 1 and {ports.MAX_REPLICAS}")
        replica_ports = [self.port + ports.REPLICAS + i for i in range(self.replica_count)]
        node_ports = [self.port + ports.OPENBAO_NODES + 2 * i for i in range(3)]
        offsets = [
            0,
            ports.OPENBAO_LB,
            *(p - self.port for p in replica_ports),
            *(p - self.port + d for p in node_ports for d in (0, 1)),
        ]
        if self.database_url is None:
            offsets.append(ports.POSTGRES)
        ports.check_block(self.port, offsets)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o711)  # traverse-only for the postgres user; every secret file is 0600
        try:
            self._start(replica_ports, node_ports)
        except BaseException:
            self.stop()
            raise

    def _start(self, replica_ports: list[int], node_ports: list[int]) -> None:
        if self.database_url is None:
            self.postgres = LocalPostgres.create(self.data_dir / "postgres", self.port + ports.POSTGRES)
            self.postgres.start()
            self.database_url = self.postgres.url
        self.openbao = OpenBaoCluster.create(self.data_dir / "openbao", node_ports)
        self.openbao.start()
        self.haproxy = HAProxy.create(
            self.data_dir / "haproxy",
            port=self.port,
            replicas=replica_ports,
            openbao_port=self.port + ports.OPENBAO_LB,
            openbao_nodes=node_ports,
        )
        self.haproxy.start()
        self._wait_openbao_lb()
        self.admin_token = Secret(_key_file(self.data_dir / "admin.token", "nhi-admin-" + secrets.token_urlsafe(32)))
        self._fingerprint_key = Secret(_key_file(self.data_dir / "fingerprint.key", secrets.token_hex(32)))
        self._audit_key = Secret(_key_file(self.data_dir / "audit.key", secrets.token_hex(32)))
        role_id, secret_id = self._bootstrap_and_seed()
        settings = {
            "dev_mode": False,
            "database_url": self.database_url,
            "host": "127.0.0.1",
            "data_dir": str(self.data_dir.resolve()),
            "dev_issuer": True,
            "openbao": {
                "addr": self.openbao_addr,
                "public_addr": self.openbao_addr,
                "auth": "approle",
                "approle_role_id": role_id,
                "timeout_seconds": 5,
            },
            "log_format": "json",
            "log_level": "WARNING",
        }
        env = {
            "NHI_BROKER_ADMIN_TOKEN": self.admin_token.reveal(),
            "NHI_BROKER_FINGERPRINT_KEY": self._fingerprint_key.reveal(),
            "NHI_BROKER_AUDIT__KEY": self._audit_key.reveal(),
            "NHI_BROKER_OPENBAO__APPROLE_SECRET_ID": secret_id.reveal(),
        }
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.replicas = [
            ServeReplica.create(self.data_dir / "replicas", f"replica{i}", p, settings, env)
            for i, p in enumerate(replica_ports)
        ]
        for r in self.replicas:
            r.start()
        for r in self.replicas:
            r.wait_ready()
        self.wait_lb_ready()

    def _wait_openbao_lb(self, timeout: float = 30.0) -> None:
        assert self.haproxy is not None

        def active() -> bool:
            try:
                return httpx.get(f"{self.openbao_addr}/v1/sys/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        self.haproxy.child.wait_for(active, timeout, "forwarding to the OpenBao leader")

    def wait_lb_ready(self, timeout: float = 60.0) -> None:
        assert self.haproxy is not None
        last: dict[str, str] = {}

        def ready() -> bool:
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2.0)
                last["body"] = r.text[:600]
                return r.status_code == 200
            except httpx.HTTPError as exc:
                last["body"] = type(exc).__name__
                return False

        try:
            self.haproxy.child.wait_for(ready, timeout, "ready through the load balancer")
        except BrokerError as exc:
            raise UpstreamUnavailable(f"{exc.message}; last /readyz: {last.get('body')}") from exc

    def _bootstrap_and_seed(self) -> tuple[str, Secret]:
        # deferred: the service stack loads only when the HA stack seeds it, not with `up --ha`
        from broker.backends.openbao_http import OpenBaoHTTP
        from broker.bootstrap import bootstrap_openbao
        from broker.config import Settings
        from broker.container import Container
        from broker.demo import seed_kv, seed_openbao, seed_registry
        from broker.demo_postgres import seed_postgres
        from broker.identity import DevIssuer

        assert self.openbao is not None and self.database_url is not None
        http = OpenBaoHTTP(self.openbao_addr, self.openbao.root_token)
        # the leader-only frontend may drop a connection while HAProxy settles on the new leader:
        # bootstrap is idempotent, so it is retried (bounded) after waiting for the leader again
        deadline = time.monotonic() + 90
        while True:
            try:
                report = bootstrap_openbao(http, approle=True, approle_secret_id=True)
                break
            except UpstreamUnavailable:
                if time.monotonic() > deadline:
                    raise
                self._wait_openbao_lb()
        assert report.approle_role_id is not None and report.approle_secret_id is not None
        seed_openbao(http)
        seed_kv(http)
        parts = urlsplit(self.database_url.replace("+psycopg", ""))
        self._demo_pg = (parts.hostname or "127.0.0.1", parts.port or 5432)
        pg_skipped = seed_postgres(http, *self._demo_pg, data_dir=self.data_dir)
        DevIssuer.load_or_create(self.data_dir)  # before the replicas, which share it
        settings = Settings(
            dev_mode=False,
            data_dir=self.data_dir,
            database_url=self.database_url,
            admin_token=self.admin_token.reveal(),  # type: ignore[arg-type]
            fingerprint_key=self._fingerprint_key.reveal(),  # type: ignore[arg-type]
            audit={"key": self._audit_key.reveal()},  # type: ignore[arg-type]
            openbao={
                "addr": self.openbao_addr,  # type: ignore[arg-type]
                "token": self.openbao.root_token.reveal(),
            },
            policy_watch_seconds=0,
            log_format="json",
            dev_issuer=True,
        )
        container = Container.build(settings)
        try:
            seed_registry(container, with_postgres=pg_skipped is None)
        finally:
            container.close()
        self.pg_note = pg_skipped
        return report.approle_role_id, report.approle_secret_id

    def up_json(self) -> dict[str, Any]:
        assert self.openbao is not None
        return {
            "url": self.url,
            "admin_token": self.admin_token.reveal(),
            "openbao_addr": self.openbao_addr,
            "openbao_token": self.openbao.root_token.reveal(),
            "replicas": [r.url for r in self.replicas],
            "openbao_nodes": self.openbao.addresses,
            "database_url": self.database_url,
            "data_dir": str(self.data_dir.resolve()),
            "pid": os.getpid(),
            "ha": True,
        }

    def write_up_json(self) -> Path:
        path = self.data_dir / "up.json"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(self.up_json(), indent=2))
        return path

    def stop(self) -> None:
        (self.data_dir / "up.json").unlink(missing_ok=True)
        for r in self.replicas:
            r.stop()
        if self.haproxy is not None:
            self.haproxy.stop()
        if self._demo_pg is not None and self.postgres is None:  # a shared server: drop our demo roles
            # deferred: the service stack loads only when the HA stack seeds it, not with `up --ha`
            from broker.demo_postgres import drop_demo_roles

            try:
                drop_demo_roles(self.data_dir, *self._demo_pg)
            except Exception as exc:  # best effort on the way out; never block the shutdown
                log.warning("up_ha.demo_roles_not_dropped", error_type=type(exc).__name__)
        if self.openbao is not None:
            self.openbao.stop()
        if self.postgres is not None:
            self.postgres.stop()
