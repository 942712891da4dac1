"""``database_root``: the credential OpenBao's database engine uses to manage a connection.

Settings: ``{"mount"?: "database", "db_name": "<OpenBao database connection>"}``.

create = ``{mount}/rotate-root/{db_name}``: OpenBao sets a new password for the connection's user
and keeps it; nobody (not the broker either) can read it, so there is nothing to store in KV and
no fingerprint (a leak of the *old* value is handled by rotating by name). verify =
``{mount}/reset/{db_name}``, which re-opens the connection with the stored credential and fails if
PostgreSQL refuses it. Use a dedicated role for the connection, never the superuser's password.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.backends.names import vault_name, vault_path
from broker.backends.openbao_http import OpenBaoHTTP
from broker.errors import BrokerError, InvalidInput, NotFound
from rotation.playbooks.base import CurrentValue, Kind, ManagedSecret, NewValue, VerifyFailed


class DatabaseRootPlaybook:
    kind = Kind.DATABASE_ROOT
    stores_in_kv = False
    old_dies_at_create = True
    public_fields: frozenset[str] = frozenset()

    def __init__(self, http: OpenBaoHTTP) -> None:
        self.http = http

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(settings) - {"mount", "db_name"}
        if unknown:
            raise InvalidInput(f"settings.{sorted(unknown)[0]}", "unknown key; allowed: db_name, mount")
        mount = vault_path("settings.mount", settings.get("mount", "database"), what="database mount")
        db_name = vault_name("settings.db_name", settings.get("db_name"), what="database connection")
        try:
            with self.http.client() as c:
                config: Any = c.adapter.get(f"/v1/{mount}/config/{db_name}")
        except NotFound as exc:
            raise InvalidInput("settings.db_name", f'no database connection "{db_name}" at "{mount}"') from exc
        user = (((config or {}).get("data") or {}).get("connection_details") or {}).get("username")
        if user in (None, "", "postgres"):
            raise InvalidInput(
                "settings.db_name",
                "the connection must log in as a dedicated role (not the postgres superuser) with a username set",
            )
        return {"mount": mount, "db_name": db_name}

    def create(self, secret: ManagedSecret) -> NewValue:
        s = secret.settings
        with self.http.client() as c:
            c.adapter.post(f"/v1/{s['mount']}/rotate-root/{s['db_name']}")
        return NewValue(fields={}, ref={"db_name": s["db_name"]})

    def verify(self, secret: ManagedSecret, new: NewValue, old: CurrentValue | None) -> dict[str, Any]:
        s = secret.settings
        try:
            with self.http.client() as c:
                c.adapter.post(f"/v1/{s['mount']}/reset/{s['db_name']}")
        except BrokerError as exc:
            raise VerifyFailed(
                f'OpenBao could not reconnect "{s["db_name"]}" with its new root credential: {exc.message}'
            ) from exc
        return {"openbao_reconnected": True}

    def undo(self, secret: ManagedSecret, new: NewValue) -> dict[str, Any]:
        return {"note": "the old root credential stopped working at create; only OpenBao knows the new one"}

    def adopt_ref(self, old: CurrentValue) -> dict[str, Any]:
        return {}

    def retire(self, secret: ManagedSecret, previous_ref: Mapping[str, Any]) -> dict[str, Any]:
        return {"note": "the old root credential stopped working at create"}
