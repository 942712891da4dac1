"""The KV reader the scheduled OpenBao KV scans use (:class:`scanners.sources.base.KvReader`).

Reads with the broker's own OpenBao token through the shared client; the broker's error tree is
translated into the scanner's ``SourceError`` here, so ``scanners`` knows nothing of the broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import hvac

from broker.backends.openbao_http import OpenBaoHTTP
from broker.errors import BrokerError
from scanners.sources.base import KvReader, SourceError


class OpenBaoKvReader:
    def __init__(self, client: hvac.Client, http: OpenBaoHTTP) -> None:
        self._client = client
        self._http = http

    def list(self, mount: str, path: str, version: int) -> list[str]:
        try:
            with self._http.client(bound=self._client) as c:
                if version == 2:
                    resp = c.secrets.kv.v2.list_secrets(path=path, mount_point=mount)
                else:
                    resp = c.secrets.kv.v1.list_secrets(path=path, mount_point=mount)
        except BrokerError as exc:
            if exc.status_code == 404:
                return []
            raise SourceError(f"OpenBao KV mount {mount}: {exc.message}") from exc
        return list((resp or {}).get("data", {}).get("keys", []))

    def read(self, mount: str, path: str, version: int) -> dict[str, Any]:
        try:
            with self._http.client(bound=self._client) as c:
                if version == 2:
                    resp = c.secrets.kv.v2.read_secret_version(
                        path=path, mount_point=mount, raise_on_deleted_version=False
                    )
                    return dict(((resp or {}).get("data") or {}).get("data") or {})
                resp = c.secrets.kv.v1.read_secret(path=path, mount_point=mount)
                return dict((resp or {}).get("data") or {})
        except BrokerError as exc:
            raise SourceError(f"OpenBao KV mount {mount}: {exc.message}") from exc


def kv_reader_factory(http: OpenBaoHTTP) -> Callable[[], AbstractContextManager[KvReader]]:
    """``SourceContext.kv``: a context manager yielding a reader on one client for a whole sweep."""

    @contextmanager
    def open_reader() -> Iterator[KvReader]:
        yield OpenBaoKvReader(http.make_client(), http)

    return open_reader
