"""A machine shared by several users and brokers: the dev OpenBao root token never on a command
line, its log private, and per-instance PostgreSQL roles that no other instance alters or drops."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from support.wait import HTTP_TIMEOUT

from broker.backends.openbao_http import OpenBaoHTTP
from broker.demo_postgres import DEMO_DB_ROLE, DemoRoles, drop_demo_roles, seed_postgres
from broker.openbao_server import start_dev_server


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.openbao
def test_dev_openbao_root_token_is_passed_in_the_environment_not_on_the_command_line(tmp_path):
    server = start_dev_server(log_path=tmp_path / "openbao.log")
    try:
        token = server.root_token.reveal()
        assert "server -dev" in _cmdline(server.process.pid)  # the server itself (the shim execs it)
        assert token not in _cmdline(server.process.pid)
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
        assert f"BAO_DEV_ROOT_TOKEN_ID={token}".encode() in environ
        assert stat.S_IMODE(os.stat(f"/proc/{server.process.pid}/environ").st_mode) & 0o044 == 0
        r = httpx.get(
            f"{server.address}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=HTTP_TIMEOUT
        )
        assert r.status_code == 200 and "root" in r.json()["data"]["policies"]
    finally:
        server.stop()


@pytest.mark.openbao
def test_openbao_log_is_private_even_when_it_existed_before(tmp_path):
    log = tmp_path / "openbao.log"
    log.write_text("an older run\n")
    log.chmod(0o644)
    server = start_dev_server(log_path=log)
    try:
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    finally:
        server.stop()
    assert server.root_token.reveal() in log.read_text()  # why it must be private: the banner prints it


def _role_exists(pg, name: str) -> bool:
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def _password_hash(pg, name: str) -> str | None:
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()
        return row[0] if row else None


def _dynamic_login(server) -> dict[str, str]:
    r = httpx.get(
        f"{server.address}/v1/database/creds/{DEMO_DB_ROLE}",
        headers={"X-Vault-Token": server.root_token.reveal()},
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def _can_log_in(pg, creds: dict[str, str]) -> bool:
    try:
        with psycopg.connect(pg.conninfo(user=creds["username"], password=creds["password"])) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


@pytest.mark.openbao
@pytest.mark.postgres
def test_two_instances_get_their_own_roles_and_neither_breaks_the_other(tmp_path, pg_server):
    bao_a = start_dev_server(log_path=tmp_path / "a.log")
    bao_b = start_dev_server(log_path=tmp_path / "b.log")
    dd_a, dd_b = tmp_path / "instance-a", tmp_path / "instance-b"
    roles_a, roles_b = DemoRoles.for_data_dir(dd_a), DemoRoles.for_data_dir(dd_b)
    try:
        assert roles_a.connection != roles_b.connection and roles_a.readers != roles_b.readers
        assert (
            seed_postgres(OpenBaoHTTP(bao_a.address, bao_a.root_token), pg_server.host, pg_server.port, data_dir=dd_a)
            is None
        )
        hash_a = _password_hash(pg_server, roles_a.connection)
        assert (
            seed_postgres(OpenBaoHTTP(bao_b.address, bao_b.root_token), pg_server.host, pg_server.port, data_dir=dd_b)
            is None
        )
        # b's start-up changed nothing of a's: same password, and a's OpenBao still issues working logins
        assert _password_hash(pg_server, roles_a.connection) == hash_a
        assert _can_log_in(pg_server, _dynamic_login(bao_a))
        assert _can_log_in(pg_server, _dynamic_login(bao_b))

        # stopping b drops b's roles (and its dynamic logins), and a keeps working
        login_b = _dynamic_login(bao_b)
        bao_b.stop()
        dropped = drop_demo_roles(dd_b, pg_server.host, pg_server.port)
        assert {roles_b.connection, roles_b.readers, login_b["username"]} <= set(dropped)
        assert not _role_exists(pg_server, roles_b.connection) and not _role_exists(pg_server, roles_b.readers)
        assert _role_exists(pg_server, roles_a.connection)
        assert _can_log_in(pg_server, _dynamic_login(bao_a))
    finally:
        bao_a.stop()
        bao_b.stop()
        drop_demo_roles(dd_a, pg_server.host, pg_server.port)
        drop_demo_roles(dd_b, pg_server.host, pg_server.port)
    assert not _role_exists(pg_server, roles_a.connection)


@pytest.mark.openbao
@pytest.mark.postgres
def test_a_role_held_by_another_live_instance_is_never_altered_or_dropped(tmp_path, pg_server):
    holder = subprocess.Popen(["sleep", "600"])  # stands for the other instance's process
    roles = DemoRoles.for_data_dir(tmp_path / "shared")
    try:
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            role = sql.Identifier(roles.connection)
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'theirs-0123456789'").format(role))
            conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(roles.comment(holder.pid))))
        before = _password_hash(pg_server, roles.connection)
        bao = start_dev_server(log_path=tmp_path / "bao.log")
        try:
            reason = seed_postgres(
                OpenBaoHTTP(bao.address, bao.root_token), pg_server.host, pg_server.port, data_dir=tmp_path / "shared"
            )
        finally:
            bao.stop()
        assert reason is not None and f"pid {holder.pid}" in reason and roles.connection in reason
        assert _password_hash(pg_server, roles.connection) == before
        assert drop_demo_roles(tmp_path / "shared", pg_server.host, pg_server.port) == []
        assert _role_exists(pg_server, roles.connection)

        # once that process is gone, the role is this data directory's again: reclaimed and dropped
        holder.kill()
        holder.wait()
        assert roles.connection in drop_demo_roles(tmp_path / "shared", pg_server.host, pg_server.port)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{roles.connection}"')


@pytest.mark.postgres
def test_a_role_of_the_same_name_not_made_by_nhi_broker_is_left_alone(tmp_path, pg_server):
    roles = DemoRoles.for_data_dir(tmp_path / "dd")
    try:
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{roles.readers}" NOLOGIN')
        assert drop_demo_roles(tmp_path / "dd", pg_server.host, pg_server.port) == []
        assert _role_exists(pg_server, roles.readers)
    finally:
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{roles.readers}"')
