"""PostgreSQL credentials through OpenBao's database secrets engine (resource kind ``postgres``).

Resource settings: ``{"vault": {"mount": "database", "role": "demo-readonly"},
"connection"?: {"host", "port", "dbname", "sslmode"}}``. The role must exist at the mount; the
connection (what the agent dials) is read from the role's database connection in OpenBao unless
the resource gives one (when agents reach PostgreSQL by another address than OpenBao does).

The grant is the lease: ``GET {mount}/creds/{role}`` creates a PostgreSQL role, then the lease is
renewed with ``increment = decision TTL`` — which shortens or extends it to exactly that TTL
(OpenBao runs the renew statement, by default ``ALTER ROLE ... VALID UNTIL``), up to the role's
``max_ttl``; a lease capped shorter is reported as what was granted (``ttl_seconds``). If the TTL
cannot be applied the lease is revoked and the request fails: no credential outlives its tier. Revocation is
``sys/leases/revoke`` by lease id (synchronous; an unknown lease is success). The revocation
statements of the role decide what revocation does in PostgreSQL; use
:data:`REVOCATION_STATEMENTS` so open sessions are terminated too (see docs/backends.md).

OpenBao cannot limit a PostgreSQL login to one use: ``uses`` is not enforced by this backend.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import hvac
import psycopg
from psycopg import sql

from broker.backends.names import refuse_unknown, section, vault_name, vault_path
from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.port import IssuedCredential, IssueRequest
from broker.errors import BrokerError, InvalidInput, UpstreamError, UpstreamUnavailable
from broker.secrets import Secret

KIND = "postgres"


def creation_statements(group_role: str) -> list[str]:
    """Recommended creation statement: a login role that only inherits a NOLOGIN group role
    holding the privileges, so revocation is a plain DROP ROLE (the dynamic role owns nothing
    and is granted nothing directly)."""
    return [
        "CREATE ROLE \"{{name}}\" WITH LOGIN INHERIT PASSWORD '{{password}}' "
        "VALID UNTIL '{{expiration}}' IN ROLE " + _ident(group_role) + ";"
    ]


#: Recommended revocation statements: refuse new logins, terminate open sessions, drop the role.
#: Without ``pg_terminate_backend`` an open session keeps working after the lease is revoked.
REVOCATION_STATEMENTS: tuple[str, ...] = (
    'ALTER ROLE "{{name}}" NOLOGIN;',
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';",
    'DROP ROLE IF EXISTS "{{name}}";',
)


def writer_revocation_statements(group_role: str) -> list[str]:
    """For roles that may create objects: hand them to the group role before dropping."""
    return [
        REVOCATION_STATEMENTS[0],
        REVOCATION_STATEMENTS[1],
        'REASSIGN OWNED BY "{{name}}" TO ' + _ident(group_role) + ";",
        'DROP OWNED BY "{{name}}";',
        REVOCATION_STATEMENTS[2],
    ]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresBackend:
    kind = KIND
    self_expiring = True  # see CredentialBackend.self_expiring

    def __init__(self, http: OpenBaoHTTP) -> None:
        self.http = http

    def __repr__(self) -> str:
        return f"PostgresBackend(openbao={self.http.addr!r})"

    # -- settings ---------------------------------------------------------------------------
    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        vault = section(settings, "vault", KIND, '{"mount": "database", "role": "..."}')
        refuse_unknown("vault", vault, {"mount", "role"}, KIND)
        mount = vault_path("vault.mount", vault.get("mount", "database"), what="database mount")
        role = vault_name("vault.role", vault.get("role"), what="database role")
        connection = settings.get("connection")
        if connection is not None:
            connection = validate_connection(connection)
        with self.http.client() as c:
            try:
                role_data = c.adapter.get(f"/v1/{mount}/roles/{role}")["data"]
            except hvac.exceptions.InvalidPath:
                role_data = None
            if role_data is None:
                self._explain_missing_role(c, mount, role)
            db_name = str(role_data.get("db_name") or "")
            derived: dict[str, Any] | None = None
            if db_name:
                try:
                    config = c.adapter.get(f"/v1/{mount}/config/{db_name}")["data"]
                    derived = connection_from_url(config.get("connection_details", {}).get("connection_url"))
                except (hvac.exceptions.InvalidPath, hvac.exceptions.Forbidden):
                    derived = None
        if connection is None:
            connection = derived
        out: dict[str, Any] = {"vault": {"mount": mount, "role": role}}
        if connection is not None:
            out["connection"] = connection
        return out

    def _explain_missing_role(self, c: hvac.Client, mount: str, role: str) -> None:
        try:
            mount_info = c.adapter.get(f"/v1/sys/mounts/{mount}")["data"]
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath) as exc:
            raise InvalidInput("vault.mount", f'no secrets engine is mounted at "{mount}"') from exc
        if mount_info.get("type") != "database":
            raise InvalidInput("vault.mount", f'"{mount}" is a {mount_info.get("type")} engine, not a database engine')
        raise InvalidInput("vault.role", f'role "{role}" does not exist at mount "{mount}"')

    # -- port -------------------------------------------------------------------------------
    def issue(self, request: IssueRequest) -> IssuedCredential:
        settings = request.resource.settings
        mount, role = settings["vault"]["mount"], settings["vault"]["role"]
        with self.http.client() as c:
            resp = c.adapter.get(f"/v1/{mount}/creds/{role}")
        lease_id = str(resp.get("lease_id") or "")
        data = resp.get("data") or {}
        if not lease_id or "username" not in data or "password" not in data:
            if lease_id:
                self._revoke_lease(lease_id)
            raise UpstreamError(f'OpenBao returned no database credential for role "{role}"')
        username, password = str(data["username"]), Secret(str(data["password"]))
        try:
            duration = self._apply_ttl(
                lease_id,
                int(resp.get("lease_duration") or 0),
                request.ttl_seconds,
                bool(resp.get("renewable")),
            )
        except BrokerError:
            self._revoke_lease(lease_id)  # fail closed: never hand out a lease longer than the tier
            raise
        expires = datetime.now(UTC) + timedelta(seconds=duration)
        public: dict[str, Any] = {
            "username": username,
            "lease_id": lease_id,
            "expires_at": expires.isoformat(),
        }
        connection = settings.get("connection")
        if connection:
            public.update({k: v for k, v in connection.items() if k in ("host", "port", "dbname", "sslmode")})
            public["dsn"] = _dsn(connection, username, "****")
            public["dsn_template"] = _dsn(connection, username, "{password}")
        return IssuedCredential(
            kind=KIND,
            public=public,
            secrets={"password": password},
            expires_at=expires,
            revocation={"lease_id": lease_id},
            lease_id=lease_id,
        )

    def _apply_ttl(self, lease_id: str, duration: int, ttl: int, renewable: bool) -> int:
        """Make the lease last the decision's TTL: renewing with ``increment = ttl`` shortens a
        longer lease and extends a shorter one (the role's ``default_ttl``), up to the role's
        ``max_ttl``. A lease OpenBao caps below the TTL is kept and reported as granted."""
        if duration == ttl:
            return duration
        if not renewable:
            if 0 < duration < ttl:
                return duration  # shorter than decided: recorded as what was granted
            raise UpstreamError(
                "the database lease is not renewable, so the tier's TTL cannot be applied; "
                "make the role's default_ttl at most the shortest tier TTL"
            )
        with self.http.client() as c:
            renewed = c.adapter.put("/v1/sys/leases/renew", json={"lease_id": lease_id, "increment": ttl})
        new = int((renewed or {}).get("lease_duration") or 0)
        if not 0 < new <= ttl:
            raise UpstreamError(f"OpenBao kept the database lease at {new}s after a renew to {ttl}s")
        return new

    def revoke(self, reference: Mapping[str, Any]) -> None:
        lease_id = reference.get("lease_id")
        if not isinstance(lease_id, str) or not lease_id:
            raise UpstreamError("revocation reference has no lease_id")
        self._revoke_lease(lease_id)

    def _revoke_lease(self, lease_id: str) -> None:
        # synchronous: returns after the revocation statements ran; an unknown lease is success
        with self.http.client() as c:
            c.adapter.put("/v1/sys/leases/revoke", json={"lease_id": lease_id, "sync": True})

    def check_alive(self) -> None:
        self.http.health()


# -- connection (what the agent dials) --------------------------------------------------------
def connection_from_url(url: Any) -> dict[str, Any] | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return None
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        return None
    dbname = parts.path.lstrip("/") or "postgres"
    conn: dict[str, Any] = {"host": parts.hostname, "port": port, "dbname": dbname}
    sslmode = parse_qs(parts.query).get("sslmode")
    if sslmode:
        conn["sslmode"] = sslmode[0]
    return conn


def validate_connection(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput("connection", 'must be an object: {"host", "port", "dbname", "sslmode"?}')
    refuse_unknown("connection", value, {"host", "port", "dbname", "sslmode"}, KIND)
    host, port, dbname = value.get("host"), value.get("port", 5432), value.get("dbname", "postgres")
    if not isinstance(host, str) or not host or any(ch in host for ch in "/@?# "):
        raise InvalidInput("connection.host", "must be a host name or IP address")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise InvalidInput("connection.port", "must be an integer between 1 and 65535")
    if not isinstance(dbname, str) or not dbname:
        raise InvalidInput("connection.dbname", "must be a non-empty string")
    conn: dict[str, Any] = {"host": host, "port": port, "dbname": dbname}
    sslmode = value.get("sslmode")
    if sslmode is not None:
        allowed = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
        if sslmode not in allowed:
            raise InvalidInput("connection.sslmode", f'"{sslmode}" is not one of {sorted(allowed)}')
        conn["sslmode"] = sslmode
    return conn


def _dsn(conn: Mapping[str, Any], username: str, password: str) -> str:
    host = conn["host"]
    if ":" in host:
        host = f"[{host}]"
    pw = password if password in ("****", "{password}") else quote(password, safe="")
    db = quote(conn["dbname"], safe="")
    dsn = f"postgresql://{quote(username, safe='')}:{pw}@{host}:{conn['port']}/{db}"
    if conn.get("sslmode"):
        dsn += f"?sslmode={conn['sslmode']}"
    return dsn


# -- setup (used by ``nhi-broker up`` and the tests) -------------------------------------------
def configure_openbao_role(
    http: OpenBaoHTTP,
    *,
    role: str,
    group_role: str,
    connection_url: str,
    username: str,
    password: Secret,
    mount: str = "database",
    connection_name: str = "nhi-postgres",
    default_ttl: int = 300,
    max_ttl: int = 3600,
) -> None:
    """Mount the database engine (if needed), point it at PostgreSQL and create ``role`` with the
    recommended statements. ``connection_url`` holds ``{{username}}``/``{{password}}`` templates,
    never the password itself. Idempotent."""
    with http.client() as c:
        mounts = c.sys.list_mounted_secrets_engines()
        mounts = mounts.get("data", mounts)
        if f"{mount}/" not in mounts:
            c.sys.enable_secrets_engine("database", path=mount)
        c.adapter.post(
            f"/v1/{mount}/config/{connection_name}",
            json={
                "plugin_name": "postgresql-database-plugin",
                "connection_url": connection_url,
                "username": username,
                "password": password.reveal(),
                "verify_connection": True,
                "allowed_roles": "*",
                "password_authentication": "scram-sha-256",
            },
        )
        c.adapter.post(
            f"/v1/{mount}/roles/{role}",
            json={
                "db_name": connection_name,
                "creation_statements": creation_statements(group_role),
                "revocation_statements": list(REVOCATION_STATEMENTS),
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
            },
        )


def ensure_group_role(conninfo: str, group_role: str, *, dbname: str, read_only: bool = True) -> None:
    """Create the NOLOGIN group role that holds the privileges dynamic roles inherit
    (``SELECT`` on ``public``; also ``INSERT/UPDATE/DELETE`` unless ``read_only``)."""
    privileges = "SELECT" if read_only else "SELECT, INSERT, UPDATE, DELETE"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group_role,)).fetchone()
            group = sql.Identifier(group_role)
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(group))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), group))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(group))
            conn.execute(sql.SQL("GRANT " + privileges + " ON ALL TABLES IN SCHEMA public TO {}").format(group))
            conn.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT " + privileges + " ON TABLES TO {}").format(
                    group
                )
            )
    except psycopg.OperationalError as exc:
        raise UpstreamUnavailable("PostgreSQL is unreachable for setup") from exc
    except psycopg.Error as exc:
        raise UpstreamError(f"PostgreSQL refused the setup ({type(exc).__name__})") from exc


def reachable(host: str = "127.0.0.1", port: int = 5432, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port (for ``nhi-broker up``'s summary)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
