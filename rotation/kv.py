"""OpenBao KV v2 as the :class:`rotation.playbooks.base.ValueStore`: the only place values live.

Consumers read ``{mount}/data/{path}`` (latest version). A rotation first writes the new value to
a staging entry ``{mount}/data/nhi-broker/rotation-staging/{name}`` (durable before anything
depends on it), then switches with a check-and-set write on the consumers' entry, then deletes the
staging entry with all its versions. Retirement destroys old versions of the consumers' entry
(``destroy`` wipes the data; the version numbers stay in the metadata).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.backends.openbao_http import OpenBaoHTTP
from broker.errors import InvalidInput, NotFound, UpstreamError
from broker.secrets import Secret
from rotation.playbooks.base import CurrentValue

STAGING_PREFIX = "nhi-broker/rotation-staging"


class OpenBaoKV:
    def __init__(self, http: OpenBaoHTTP) -> None:
        self.http = http

    def __repr__(self) -> str:
        return f"OpenBaoKV(addr={self.http.addr!r})"

    def check_mount(self, mount: str) -> None:
        try:
            with self.http.client() as c:
                info: Any = c.adapter.get(f"/v1/sys/mounts/{mount}")
        except (NotFound, UpstreamError) as exc:
            raise InvalidInput("kv.mount", f'no secrets engine is mounted at "{mount}"') from exc
        data = info.get("data", info) if isinstance(info, dict) else {}
        if data.get("type") not in ("kv", "generic") or str((data.get("options") or {}).get("version")) != "2":
            raise InvalidInput("kv.mount", f'"{mount}" is not a KV version 2 engine')

    def read(self, mount: str, path: str) -> CurrentValue | None:
        try:
            with self.http.client() as c:
                resp: Any = c.adapter.get(f"/v1/{mount}/data/{path}")
        except NotFound:
            return None
        data = (resp or {}).get("data") or {}
        values = data.get("data")
        version = int((data.get("metadata") or {}).get("version") or 0)
        if not isinstance(values, dict):  # latest version deleted or destroyed
            return CurrentValue(version=version, fields={})
        return CurrentValue(version=version, fields={k: Secret(str(v)) for k, v in values.items()})

    def stage(self, mount: str, name: str, fields: Mapping[str, Secret]) -> str:
        path = f"{STAGING_PREFIX}/{name}"
        with self.http.client() as c:
            c.adapter.post(f"/v1/{mount}/data/{path}", json={"data": _reveal(fields)})
        return f"{mount}/{path}"

    def unstage(self, mount: str, name: str) -> None:
        with self.http.client() as c:
            c.adapter.delete(f"/v1/{mount}/metadata/{STAGING_PREFIX}/{name}")

    def switch(self, mount: str, path: str, fields: Mapping[str, Secret], *, cas: int) -> int:
        with self.http.client() as c:
            resp: Any = c.adapter.post(
                f"/v1/{mount}/data/{path}", json={"options": {"cas": cas}, "data": _reveal(fields)}
            )
        version = int(((resp or {}).get("data") or {}).get("version") or 0)
        if version <= cas:
            raise UpstreamError(f"OpenBao did not report a new version of {mount}/{path}")
        return version

    def destroy_older(self, mount: str, path: str, keep_version: int) -> list[int]:
        """Destroy every version older than ``keep_version`` that still holds data."""
        try:
            with self.http.client() as c:
                meta: Any = c.adapter.get(f"/v1/{mount}/metadata/{path}")
        except NotFound:
            return []
        versions = ((meta or {}).get("data") or {}).get("versions") or {}
        doomed = sorted(
            int(v) for v, info in versions.items() if int(v) < keep_version and not (info or {}).get("destroyed")
        )
        if doomed:
            with self.http.client() as c:
                c.adapter.post(f"/v1/{mount}/destroy/{path}", json={"versions": doomed})
        return doomed


def _reveal(fields: Mapping[str, Secret]) -> dict[str, str]:
    return {k: v.reveal() for k, v in fields.items()}
