"""Fixtures for rotation tests: real OpenBao (session dev server), a private PostgreSQL cluster
whose pg_hba asks non-superusers for SCRAM passwords (so "the old password no longer works" is a
real check), a moto server with IAM auth on, and a RotationService on a fresh SQLite store."""

from __future__ import annotations

import contextlib
import pathlib
import secrets
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.append(str(pathlib.Path(__file__).parents[1]))  # never ahead of the real packages

from support.moto import MotoServer, start_moto
from support.postgres import PostgresServer

from broker.api.presenters import audit_event_body
from broker.audit import AuditLog, LocalAuditKey
from broker.backends.openbao_http import OpenBaoHTTP
from broker.netpolicy import OutboundPolicy
from broker.openbao_server import OpenBaoServer
from broker.secrets import Fingerprinter, Secret
from broker.store.db import make_engine, migrate
from broker.store.repo import Store
from rotation.kv import OpenBaoKV
from rotation.playbooks.aws_iam_key import AwsCredentials, AwsIamKeyPlaybook
from rotation.playbooks.base import Kind
from rotation.playbooks.database_root import DatabaseRootPlaybook
from rotation.playbooks.kv_generated import KvGeneratedPlaybook
from rotation.playbooks.postgres_password import PostgresPasswordPlaybook
from rotation.service import RotationService


@pytest.fixture(scope="session")
def bao(openbao: OpenBaoServer) -> OpenBaoHTTP:
    return OpenBaoHTTP(openbao.address, openbao.root_token)


@pytest.fixture(scope="session")
def scram_pg(private_pg: PostgresServer) -> PostgresServer:
    """A private cluster where passwords are enforced for every role but ``postgres``."""
    return private_pg


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto(tmp_path_factory.mktemp("moto-rotation"))
    yield server
    server.stop()


@dataclass
class Rig:
    service: RotationService
    audit: AuditLog
    store: Store
    fingerprint: Fingerprinter
    kv: OpenBaoKV
    bao: OpenBaoHTTP

    def kv_read(self, path: str, version: int | None = None, mount: str = "secret") -> dict[str, Any] | None:
        """The raw KV entry (test-only: the test is the consumer)."""
        from broker.errors import NotFound

        q = f"?version={version}" if version else ""
        try:
            with self.bao.client() as c:
                resp: Any = c.adapter.get(f"/v1/{mount}/data/{path}{q}")
        except NotFound:
            return None
        return resp["data"]

    def destroyed(self, path: str, version: int, mount: str = "secret") -> bool:
        with self.bao.client() as c:
            meta: Any = c.adapter.get(f"/v1/{mount}/metadata/{path}")
        return bool(meta["data"]["versions"][str(version)]["destroyed"])

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            audit_event_body(e)
            for e in self.audit.events(limit=10000)
            if e.kind.startswith("rotation.") and e.data.get("name") == name
        ]


@pytest.fixture
def rig(bao: OpenBaoHTTP, tmp_path: Path, request: pytest.FixtureRequest) -> Rig:
    engine = make_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    migrate(engine)
    store = Store(engine)
    audit = AuditLog(store, LocalAuditKey(secrets.token_bytes(32)))
    fingerprint = Fingerprinter(secrets.token_bytes(32))
    kv = OpenBaoKV(bao)
    creds = None
    if "moto" in request.fixturenames:
        admin = request.getfixturevalue("moto").admin
        creds = AwsCredentials(admin.access_key_id, Secret(admin.secret_access_key))
    playbooks: dict[Kind, Any] = {
        Kind.KV_GENERATED: KvGeneratedPlaybook(kv, fingerprint),
        Kind.POSTGRES_PASSWORD: PostgresPasswordPlaybook(bao),
        Kind.DATABASE_ROOT: DatabaseRootPlaybook(bao),
        Kind.AWS_IAM_KEY: AwsIamKeyPlaybook(creds, verify_wait=2.0, outbound=OutboundPolicy(allow_loopback=True)),
    }
    return Rig(RotationService(store, audit, fingerprint, kv, playbooks), audit, store, fingerprint, kv, bao)


@dataclass
class PgSetup:
    server: PostgresServer
    db_name: str  # OpenBao database connection
    admin_role: str
    admin_password: str
    app_role: str
    app_password: str

    def login(self, user: str, password: str) -> bool:
        try:
            with psycopg.connect(self.server.conninfo(user=user, password=password)) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.OperationalError as exc:
            assert "password authentication failed" in str(exc), str(exc)
            return False


@pytest.fixture
def pg_setup(scram_pg: PostgresServer, bao: OpenBaoHTTP) -> Iterator[PgSetup]:
    """A dedicated OpenBao admin role (CREATEROLE, never the superuser) and an application role,
    both with passwords, and an OpenBao database connection logging in as the admin role."""
    sfx = uuid.uuid4().hex[:8]
    setup = PgSetup(
        scram_pg,
        f"pg-rot-{sfx}",
        f"nhi_rot_admin_{sfx}",
        "admin-" + secrets.token_hex(12),
        f"nhi_rot_app_{sfx}",
        "app-" + secrets.token_hex(12),
    )
    with psycopg.connect(scram_pg.conninfo(), autocommit=True) as c:
        c.execute(f"CREATE ROLE {setup.admin_role} LOGIN CREATEROLE PASSWORD '{setup.admin_password}'")
        c.execute(f"CREATE ROLE {setup.app_role} LOGIN PASSWORD '{setup.app_password}'")
    with bao.client() as c:
        mounts = c.sys.list_mounted_secrets_engines()
        if "database/" not in mounts.get("data", mounts):
            c.sys.enable_secrets_engine("database", path="database")
        c.adapter.post(
            f"/v1/database/config/{setup.db_name}",
            json={
                "plugin_name": "postgresql-database-plugin",
                "connection_url": scram_pg.connection_url("postgres"),
                "username": setup.admin_role,
                "password": setup.admin_password,
                "verify_connection": True,
                "allowed_roles": "*",
                "password_authentication": "scram-sha-256",
            },
        )
    yield setup
    with bao.client() as c:
        for path in (f"database/static-roles/{setup.app_role}", f"database/config/{setup.db_name}"):
            with contextlib.suppress(Exception):  # cleanup of a test fixture
                c.adapter.delete(f"/v1/{path}")
    with psycopg.connect(scram_pg.conninfo(), autocommit=True) as c:
        c.execute(f"DROP ROLE IF EXISTS {setup.app_role}")
        c.execute(f"DROP ROLE IF EXISTS {setup.admin_role}")
