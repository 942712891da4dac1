"""The `demo-db` resource of ``nhi-broker up``: per-instance PostgreSQL roles on a shared server.

Several brokers may run on one machine (several users, or one user with several data
directories) against the same PostgreSQL at 127.0.0.1:5432. Each instance therefore gets its own
roles, named from a hash of its data directory:

- ``nhi_openbao_<id>``: the login OpenBao's database engine connects as (``CREATEROLE``,
  ``pg_signal_backend`` so revocation can end the dynamic role's sessions);
- ``nhi_demo_readers_<id>``: the ``NOLOGIN`` group whose privileges the dynamic logins inherit.

A role records its owner in its comment (data directory and process id). A role another live
instance holds is never altered: `demo-db` is skipped with the reason instead. On stop, the
instance drops its roles and any dynamic login left in its group.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.backends.openbao_http import OpenBaoHTTP
from broker.errors import BrokerError
from broker.secrets import Secret

DEMO_DB_ROLE = "demo-readonly"  # the OpenBao database role (inside this instance's own OpenBao)
MARKER = "nhi-broker up"


def instance_id(data_dir: Path) -> str:
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class DemoRoles:
    connection: str
    readers: str
    data_dir: str

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> DemoRoles:
        iid = instance_id(data_dir)
        return cls(
            connection=f"nhi_openbao_{iid}", readers=f"nhi_demo_readers_{iid}", data_dir=str(Path(data_dir).resolve())
        )

    def comment(self, pid: int | None = None) -> str:
        return f"{MARKER}: data_dir={self.data_dir} pid={os.getpid() if pid is None else pid}"


class RoleInUse(BrokerError):
    """A demo role belongs to another running instance (or to someone else): left alone."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _holder(comment: str | None) -> int | None:
    """The pid recorded in a role's comment; None when it is not one of ours."""
    if not comment or not comment.startswith(MARKER + ":"):
        return None
    for part in comment.split():
        if part.startswith("pid="):
            with contextlib.suppress(ValueError):
                return int(part[4:])
    return None


def claim(conn: Any, roles: DemoRoles) -> None:
    """Make sure no other live instance holds ``roles``; raise :class:`RoleInUse` if one does."""
    for role in (roles.connection, roles.readers):
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        if row is None:
            continue
        pid = _holder(row[0])
        if pid is None:
            raise RoleInUse(f"PostgreSQL role {role} exists and was not created by nhi-broker up; left alone")
        if pid != os.getpid() and _pid_alive(pid):
            raise RoleInUse(
                f"PostgreSQL role {role} is held by a running nhi-broker up (pid {pid}) "
                f"with the same data directory; left alone"
            )


def seed_postgres(http: OpenBaoHTTP, host: str = "127.0.0.1", port: int = 5432, *, data_dir: Path) -> str | None:
    """Configure OpenBao's database engine against a local PostgreSQL for `demo-db`, with this
    instance's own roles. Returns None when done, else the reason it was skipped (for the summary)."""
    # deferred: psycopg and the backends load only when `up` seeds PostgreSQL
    import psycopg
    from psycopg import sql

    # deferred: psycopg and the backends load only when `up` seeds PostgreSQL
    from broker.backends.postgres import configure_openbao_role, ensure_group_role, reachable

    if not reachable(host, port):
        return f"no PostgreSQL at {host}:{port}"
    roles = DemoRoles.for_data_dir(data_dir)
    admin = f"host={host} port={port} dbname=postgres user=postgres connect_timeout=3"
    password = Secret(secrets.token_urlsafe(24))
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            claim(conn, roles)
            role = sql.Identifier(roles.connection)
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (roles.connection,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(role))
            conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(roles.comment())))
            # ours alone (claimed above): a fresh password for this instance's OpenBao
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN CREATEROLE PASSWORD {}").format(role, sql.Literal(password.reveal()))
            )
            conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(role))
        ensure_group_role(admin, roles.readers, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(roles.readers), sql.Literal(roles.comment()))
            )
            conn.execute(
                sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(
                    sql.Identifier(roles.readers), sql.Identifier(roles.connection)
                )
            )
        configure_openbao_role(
            http,
            role=DEMO_DB_ROLE,
            group_role=roles.readers,
            connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{host}:{port}/postgres?sslmode=disable",
            username=roles.connection,
            password=password,
        )
    except RoleInUse as exc:
        return exc.message
    except (psycopg.Error, BrokerError) as exc:
        return f"PostgreSQL at {host}:{port} could not be configured ({type(exc).__name__})"
    return None


def drop_demo_roles(data_dir: Path, host: str = "127.0.0.1", port: int = 5432) -> list[str]:
    """On stop: drop this instance's roles and any dynamic login left in its group. Roles another
    live instance holds are left alone. Returns the roles dropped."""
    # deferred: psycopg and the backends load only when `up` seeds PostgreSQL
    import psycopg
    from psycopg import sql

    # deferred: psycopg and the backends load only when `up` seeds PostgreSQL
    from broker.backends.postgres import reachable

    if not reachable(host, port):
        return []
    roles = DemoRoles.for_data_dir(data_dir)
    admin = f"host={host} port={port} dbname=postgres user=postgres connect_timeout=3"
    dropped: list[str] = []
    with psycopg.connect(admin, autocommit=True) as conn:
        try:
            claim(conn, roles)
        except RoleInUse:
            return []
        members = [
            r[0]
            for r in conn.execute(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
                "JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s AND m.rolcanlogin "
                "AND m.rolname <> %s",
                (roles.readers, roles.connection),
            )
        ]
        for name in [*members, roles.readers, roles.connection]:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                continue
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))
            dropped.append(name)
    return dropped
