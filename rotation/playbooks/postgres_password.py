"""``postgres_password``: a PostgreSQL role's password, through an OpenBao database static role.

Settings: ``{"mount"?: "database", "db_name": "<OpenBao database connection>", "username": "<role>",
"static_role"?: "<name>" (default: the managed secret's name), "connection"?: {"host", "port",
"dbname", "sslmode"} (what consumers dial; default: from the OpenBao connection's URL),
"field"?: "password"}``. The KV entry consumers read holds ``username`` and ``field``.

create = ``{mount}/rotate-role/{static_role}`` (the first rotation creates the static role, which
makes OpenBao set a new password at once — OpenBao 2.7 ignores ``skip_import_rotation``), then
read ``{mount}/static-creds/{static_role}``. OpenBao holds the database engine's copy; the broker
copies it to KV for consumers. verify = log in as the role with the new password, and prove the
old password (the consumers' current KV value) is refused. A role has one password, so the old
one dies at create: there is no overlap, and a failed verify leaves the new value staged.
The static role's own ``rotation_period`` is ten years: the broker's schedule drives rotation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from broker.backends.names import vault_name, vault_path
from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.postgres import connection_from_url, validate_connection
from broker.errors import InvalidInput, NotFound, UpstreamError
from broker.secrets import Secret
from rotation.playbooks.base import CurrentValue, Kind, ManagedSecret, NewValue, VerifyFailed

TEN_YEARS = 315_360_000


class PostgresPasswordPlaybook:
    kind = Kind.POSTGRES_PASSWORD
    stores_in_kv = True
    old_dies_at_create = True
    public_fields: frozenset[str] = frozenset({"username"})

    def __init__(self, http: OpenBaoHTTP, *, login_timeout: int = 5) -> None:
        self.http = http
        self.login_timeout = login_timeout

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        allowed = {"mount", "db_name", "username", "static_role", "connection", "field"}
        unknown = set(settings) - allowed
        if unknown:
            raise InvalidInput(f"settings.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
        mount = vault_path("settings.mount", settings.get("mount", "database"), what="database mount")
        db_name = vault_name("settings.db_name", settings.get("db_name"), what="database connection")
        username = settings.get("username")
        if not isinstance(username, str) or not 0 < len(username) <= 63:
            raise InvalidInput("settings.username", "must be a PostgreSQL role name (1-63 characters)")
        out: dict[str, Any] = {
            "mount": mount,
            "db_name": db_name,
            "username": username,
            "field": str(settings.get("field", "password")),
        }
        if settings.get("static_role") is not None:
            out["static_role"] = vault_name("settings.static_role", settings["static_role"], what="static role")
        try:
            with self.http.client() as c:
                config: Any = c.adapter.get(f"/v1/{mount}/config/{db_name}")
        except NotFound as exc:
            raise InvalidInput("settings.db_name", f'no database connection "{db_name}" at "{mount}"') from exc
        connection = settings.get("connection")
        derived = connection_from_url(
            ((config or {}).get("data") or {}).get("connection_details", {}).get("connection_url")
        )
        out["connection"] = validate_connection(connection) if connection is not None else derived
        if out["connection"] is None:
            raise InvalidInput("settings.connection", "cannot be derived from the OpenBao connection; give it")
        return out

    def _role(self, secret: ManagedSecret) -> str:
        return str(secret.settings.get("static_role") or secret.name)

    def create(self, secret: ManagedSecret) -> NewValue:
        s, role = secret.settings, self._role(secret)
        existing: Any
        try:
            with self.http.client() as c:
                existing = c.adapter.get(f"/v1/{s['mount']}/static-roles/{role}")
        except NotFound:
            existing = None
        with self.http.client() as c:
            if existing is None:  # creating the static role sets a new password (OpenBao rotates on import)
                c.adapter.post(
                    f"/v1/{s['mount']}/static-roles/{role}",
                    json={"db_name": s["db_name"], "username": s["username"], "rotation_period": TEN_YEARS},
                )
            else:
                if (existing.get("data") or {}).get("username") != s["username"]:
                    raise UpstreamError(f'static role "{role}" manages another PostgreSQL role')
                c.adapter.post(f"/v1/{s['mount']}/rotate-role/{role}")
            creds: Any = c.adapter.get(f"/v1/{s['mount']}/static-creds/{role}")
        data = (creds or {}).get("data") or {}
        if not data.get("password"):
            raise UpstreamError(f'OpenBao returned no password for static role "{role}"')
        return NewValue(
            fields={"username": Secret(str(data["username"])), s["field"]: Secret(str(data["password"]))},
            ref={
                "static_role": role,
                "username": s["username"],
                "last_vault_rotation": data.get("last_vault_rotation"),
            },
        )

    def verify(self, secret: ManagedSecret, new: NewValue, old: CurrentValue | None) -> dict[str, Any]:
        field, username = str(secret.settings["field"]), str(secret.settings["username"])
        try:
            who = self._login(secret, username, new.fields[field])
        except psycopg.Error as exc:
            raise VerifyFailed(f'the new password of role "{username}" did not log in ({type(exc).__name__})') from exc
        if who != username:
            raise VerifyFailed(f'logging in with the new password gave role "{who}", not "{username}"')
        old_value = old.fields.get(field) if old else None
        old_refused: bool | None = None
        if old_value is not None:
            try:
                self._login(secret, username, old_value)
                old_refused = False
            except psycopg.OperationalError as exc:
                if "password authentication failed" not in str(exc):
                    raise VerifyFailed(
                        f"could not check that the old password is refused ({type(exc).__name__})"
                    ) from exc
                old_refused = True
            if not old_refused:
                raise VerifyFailed(
                    f'PostgreSQL still accepts the old password of role "{username}" '
                    "(is password authentication enforced for it?)"
                )
        return {"login": "ok", "role": username, "old_value_refused": old_refused}

    def _login(self, secret: ManagedSecret, username: str, password: Secret) -> str:
        conn = secret.settings["connection"]
        kwargs: dict[str, Any] = {
            "host": conn["host"],
            "port": conn["port"],
            "dbname": conn["dbname"],
            "user": username,
            "password": password.reveal(),
            "connect_timeout": self.login_timeout,
        }
        if conn.get("sslmode"):
            kwargs["sslmode"] = conn["sslmode"]
        with psycopg.connect(**kwargs) as c:
            row = c.execute("SELECT current_user").fetchone()
        return str(row[0]) if row else ""

    def undo(self, secret: ManagedSecret, new: NewValue) -> dict[str, Any]:
        return {"note": "a PostgreSQL role has one password: the old one stopped working at create"}

    def adopt_ref(self, old: CurrentValue) -> dict[str, Any]:
        return {}

    def retire(self, secret: ManagedSecret, previous_ref: Mapping[str, Any]) -> dict[str, Any]:
        return {"note": "the old password stopped working at create"}
