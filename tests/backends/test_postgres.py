"""PostgreSQL credentials through OpenBao's database engine, against real OpenBao and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import psycopg
import pytest
from support.backend_requests import make_request, make_resource
from support.postgres import PostgresServer

from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.postgres import PostgresBackend, configure_openbao_role, ensure_group_role
from broker.errors import InvalidInput, UpstreamUnavailable
from broker.secrets import Secret

pytestmark = [pytest.mark.openbao, pytest.mark.postgres]


@dataclass
class PgEnv:
    server: PostgresServer
    dbname: str
    group: str
    role: str
    mount: str = "database"


@pytest.fixture(scope="module")
def pg_env(postgres_server: PostgresServer, openbao_http: OpenBaoHTTP) -> Iterator[PgEnv]:
    suffix = uuid.uuid4().hex[:10]
    env = PgEnv(server=postgres_server, dbname=f"nhi_be_{suffix}", group=f"nhi_be_read_{suffix}", role="readonly")
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{env.dbname}"')
    with psycopg.connect(postgres_server.conninfo(env.dbname), autocommit=True) as conn:
        conn.execute("CREATE TABLE widgets (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO widgets VALUES (1, 'sprocket'), (2, 'gear')")
    ensure_group_role(postgres_server.conninfo(env.dbname), env.group, dbname=env.dbname)
    configure_openbao_role(
        openbao_http,
        role=env.role,
        group_role=env.group,
        connection_url=postgres_server.connection_url(env.dbname),
        username="postgres",
        password=Secret("unused-with-trust-auth"),
        connection_name=f"pg-{suffix}",
        default_ttl=600,
        max_ttl=3600,
    )
    try:
        yield env
    finally:
        with openbao_http.client() as c:
            c.adapter.put(f"/v1/sys/leases/revoke-prefix/{env.mount}/creds/{env.role}", json={"sync": True})
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{env.dbname}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{env.group}"')


@pytest.fixture
def backend(openbao_http: OpenBaoHTTP) -> PostgresBackend:
    return PostgresBackend(openbao_http)


def _resource(backend: PostgresBackend, env: PgEnv) -> Any:
    settings = backend.validate_settings({"vault": {"mount": env.mount, "role": env.role}})
    return make_resource("postgres", settings, name="demo-db")


def _login(env: PgEnv, public: dict[str, Any], password: Secret) -> psycopg.Connection[Any]:
    return psycopg.connect(
        env.server.conninfo(public["dbname"], user=public["username"], password=password.reveal()),
        autocommit=True,
    )


# -- settings ---------------------------------------------------------------------------------------
def test_postgres_settings_are_accepted_and_connection_derived_when_role_exists(
    backend: PostgresBackend, pg_env: PgEnv
) -> None:
    settings = backend.validate_settings({"vault": {"mount": "database", "role": pg_env.role}})
    assert settings["vault"] == {"mount": "database", "role": pg_env.role}
    assert settings["connection"] == {
        "host": pg_env.server.host,
        "port": pg_env.server.port,
        "dbname": pg_env.dbname,
        "sslmode": "disable",
    }


def test_postgres_settings_are_refused_when_role_does_not_exist(backend: PostgresBackend, pg_env: PgEnv) -> None:
    with pytest.raises(InvalidInput, match=r'^vault\.role: role "nope" does not exist at mount "database"$'):
        backend.validate_settings({"vault": {"mount": "database", "role": "nope"}})


def test_postgres_settings_are_refused_when_mount_does_not_exist(backend: PostgresBackend, pg_env: PgEnv) -> None:
    with pytest.raises(InvalidInput, match=r'^vault\.mount: no secrets engine is mounted at "nodb"$'):
        backend.validate_settings({"vault": {"mount": "nodb", "role": pg_env.role}})


def test_postgres_settings_are_refused_when_mount_is_not_a_database_engine(backend: PostgresBackend) -> None:
    with pytest.raises(InvalidInput, match=r'^vault\.mount: "secret" is a kv engine'):
        backend.validate_settings({"vault": {"mount": "secret", "role": "x"}})


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({}, "vault"),
        ({"vault": {"mount": "database"}}, "vault.role"),
        ({"vault": {"mount": "database", "role": "../../sys/raw"}}, "vault.role"),
        ({"vault": {"mount": "/database", "role": "r"}}, "vault.mount"),
        ({"vault": {"mount": "database", "role": "r", "ttl": 5}}, "vault.ttl"),
        ({"vault": {"mount": "database", "role": "r"}, "connection": {"host": "a@b"}}, "connection.host"),
    ],
)
def test_postgres_settings_name_the_bad_field(backend: PostgresBackend, settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        backend.validate_settings(settings)
    assert info.value.field == field


# -- issue and revoke -------------------------------------------------------------------------------
def test_postgres_credential_logs_in_and_revocation_kills_login_and_open_session(
    backend: PostgresBackend, pg_env: PgEnv
) -> None:
    cred = backend.issue(make_request(_resource(backend, pg_env), "db.read", ttl=300))
    password = cred.secrets["password"]
    with _login(pg_env, cred.public, password) as first:
        assert first.execute("SELECT name FROM widgets ORDER BY id").fetchall() == [("sprocket",), ("gear",)]
        with _login(pg_env, cred.public, password) as open_session:
            assert open_session.execute("SELECT count(*) FROM widgets").fetchone() == (2,)

            backend.revoke(cred.revocation)  # task end

            with pytest.raises(psycopg.OperationalError):
                open_session.execute("SELECT count(*) FROM widgets")
        with pytest.raises(psycopg.OperationalError):
            first.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        _login(pg_env, cred.public, password)
    with psycopg.connect(pg_env.server.conninfo()) as admin:
        row = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (cred.public["username"],)).fetchone()
    assert row is None


def test_postgres_credential_cannot_write_through_a_read_role(backend: PostgresBackend, pg_env: PgEnv) -> None:
    cred = backend.issue(make_request(_resource(backend, pg_env), "db.read"))
    try:
        with (
            _login(pg_env, cred.public, cred.secrets["password"]) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("INSERT INTO widgets VALUES (3, 'bolt')")
    finally:
        backend.revoke(cred.revocation)


def test_postgres_lease_is_shortened_to_the_tier_ttl(
    backend: PostgresBackend, pg_env: PgEnv, openbao_http: OpenBaoHTTP
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    cred = backend.issue(make_request(_resource(backend, pg_env), "db.read", ttl=120))  # role default: 600 s
    after = datetime.now(UTC)
    with openbao_http.client() as c:
        lease = c.adapter.put("/v1/sys/leases/lookup", json={"lease_id": cred.lease_id})["data"]
    assert 0 < lease["ttl"] <= 120
    with psycopg.connect(pg_env.server.conninfo()) as admin:
        (valid_until,) = admin.execute(
            "SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (cred.public["username"],)
        ).fetchone()  # type: ignore[misc]
    # 120 s after a moment during issue (bounds, not a stopwatch: the machine may be busy);
    # OpenBao writes VALID UNTIL a few seconds past the lease
    assert before + timedelta(seconds=120) <= cred.expires_at <= after + timedelta(seconds=121)
    assert before + timedelta(seconds=120) <= valid_until <= after + timedelta(seconds=130)
    backend.revoke(cred.revocation)


def test_postgres_credential_has_the_documented_shape_and_hides_the_password(
    backend: PostgresBackend, pg_env: PgEnv
) -> None:
    cred = backend.issue(make_request(_resource(backend, pg_env), "db.read"))
    try:
        password = cred.secrets["password"].reveal()
        assert cred.kind == "postgres"
        assert {"username", "lease_id", "expires_at", "dsn", "dsn_template"} <= set(cred.public)
        assert cred.revocation == {"lease_id": cred.lease_id}
        assert password not in repr(cred) and password not in str(cred.public) and password not in str(cred.revocation)
        assert ":****@" in cred.public["dsn"]
        full = cred.public["dsn_template"].format(password=password)
        with psycopg.connect(full, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (cred.public["username"],)
    finally:
        backend.revoke(cred.revocation)


def test_postgres_revocation_is_idempotent(backend: PostgresBackend, pg_env: PgEnv, openbao_http: OpenBaoHTTP) -> None:
    resource = _resource(backend, pg_env)
    cred = backend.issue(make_request(resource, "db.read"))
    other = backend.issue(make_request(resource, "db.read"))
    try:
        assert _role_exists(pg_env, cred.public["username"])
        backend.revoke(cred.revocation)
        backend.revoke(cred.revocation)  # again: success, nothing left to do
        backend.revoke({"lease_id": f"database/creds/{pg_env.role}/never-issued"})  # never issued: success
        # the revoked login and its lease are gone...
        assert not _role_exists(pg_env, cred.public["username"])
        with pytest.raises(psycopg.OperationalError):
            _login(pg_env, cred.public, cred.secrets["password"])
        with openbao_http.client() as c, pytest.raises(hvac.exceptions.InvalidRequest):
            c.adapter.put("/v1/sys/leases/lookup", json={"lease_id": cred.lease_id})
        # ...and the repeated and unknown revocations touched nothing else
        with _login(pg_env, other.public, other.secrets["password"]) as conn:
            assert conn.execute("SELECT count(*) FROM widgets").fetchone() == (2,)
        with openbao_http.client() as c:
            assert c.adapter.put("/v1/sys/leases/lookup", json={"lease_id": other.lease_id})["data"]["ttl"] > 0
    finally:
        backend.revoke(other.revocation)


def _role_exists(env: PgEnv, username: str) -> bool:
    with psycopg.connect(env.server.conninfo()) as admin:
        return admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,)).fetchone() is not None


def test_postgres_backend_is_unavailable_when_openbao_is_unreachable() -> None:
    dead = PostgresBackend(OpenBaoHTTP("http://127.0.0.1:9", Secret("x"), timeout=0.5))
    with pytest.raises(UpstreamUnavailable):
        dead.check_alive()
    with pytest.raises(UpstreamUnavailable):
        dead.validate_settings({"vault": {"mount": "database", "role": "readonly"}})
