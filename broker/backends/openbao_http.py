"""Shared OpenBao client plumbing: pooled keep-alive connections, exception translation.

``with http.client(token) as c:`` yields an ``hvac.Client`` bound to the shared session; any
hvac/requests exception raised inside is translated at this boundary into the broker's error
tree, so nothing above the adapters sees a library exception.

``http.call(method, path, token=..., body=...)`` is the request path's client (issuance): one
call on a keep-alive connection of the calling thread (``http.client``), JSON in and out, errors
translated the same way. It skips the per-call work of hvac and requests (URL joining, cookie
jars, settings merging: a quarter of the broker's CPU per credential) and of urllib3's pool
manager (URL parsing, pool lookup, checkout: another 125 µs of CPU per call, measured in
docs/benchmarks.md, issue 14).
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import certifi
import hvac
import requests
from requests.adapters import HTTPAdapter

from broker.errors import BrokerError, NotFound, UpstreamError, UpstreamUnavailable
from broker.secrets import Secret


class PermissionDenied(UpstreamError):
    """OpenBao answered 403 (for :meth:`OpenBaoHTTP.call`; an adapter may react, e.g. forget a
    revoked parent token). Still an upstream error (502) to everyone above the adapters."""


class OpenBaoHTTP:
    def __init__(self, addr: str, token: Secret, *, timeout: float = 5.0, pool_size: int = 32) -> None:
        self.addr = addr.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy/netrc lookups per request: OpenBao is addressed directly
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # the request path's connections (see call): one keep-alive connection per calling thread,
        # verified against the same CA bundle as the requests session
        url = urlsplit(self.addr)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise BrokerError(f"OpenBao address must be an http(s) URL, not {addr!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._tls = ssl.create_default_context(cafile=certifi.where()) if self._https else None
        self._local = threading.local()
        self._root = self.make_client()

    def __repr__(self) -> str:
        return f"OpenBaoHTTP(addr={self.addr!r})"

    def set_token(self, token: Secret) -> None:
        """Swap the broker's own token (AppRole login, renewal): later calls use the new one."""
        self.token = token
        self._root = self.make_client()

    def make_client(self, token: Secret | None = None) -> hvac.Client:
        return hvac.Client(
            url=self.addr, token=(token or self.token).reveal(), timeout=self.timeout, session=self.session
        )

    @contextmanager
    def client(self, token: Secret | None = None, *, bound: hvac.Client | None = None) -> Iterator[hvac.Client]:
        """Yield a client (``bound`` to reuse one already made for ``token``) and translate errors."""
        c = bound if bound is not None else (self._root if token is None else self.make_client(token))
        try:
            yield c
        except BrokerError:
            raise
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise UpstreamUnavailable(f"OpenBao at {self.addr} is unreachable") from exc
        except hvac.exceptions.VaultDown as exc:
            raise UpstreamUnavailable("OpenBao is sealed or down") from exc
        except hvac.exceptions.BadGateway as exc:  # a proxy in front of OpenBao lost its node
            raise UpstreamUnavailable("OpenBao is unreachable (bad gateway)") from exc
        except hvac.exceptions.InternalServerError as exc:
            if _no_active_node(exc):  # a standby during an election: retry once a leader is elected
                raise UpstreamUnavailable("OpenBao has no active node (leader election)") from exc
            raise UpstreamError(f"OpenBao error: {_first_error(exc)}") from exc
        except hvac.exceptions.InvalidPath as exc:
            raise NotFound(f"OpenBao path not found: {_first_error(exc)}") from exc
        except hvac.exceptions.Forbidden as exc:
            raise UpstreamError(f"OpenBao refused the request (permission denied): {_first_error(exc)}") from exc
        except hvac.exceptions.VaultError as exc:
            raise UpstreamError(f"OpenBao error: {_first_error(exc)}") from exc
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"OpenBao request failed ({type(exc).__name__})") from exc

    def call(
        self,
        method: str,
        path: str,
        *,
        token: Secret | None = None,
        body: Mapping[str, Any] | None = None,
        wrap_ttl: str | None = None,
    ) -> dict[str, Any]:
        """One API call (``path`` starts with ``/v1/``) with ``token`` (default: the broker's);
        the JSON answer, ``{}`` for an empty one; errors translated into the broker's tree."""
        headers = {"X-Vault-Token": (token or self.token).reveal(), "X-Vault-Request": "true"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if wrap_ttl is not None:
            headers["X-Vault-Wrap-TTL"] = wrap_ttl
        try:
            status, raw = self._send(method, self._prefix + path, data, headers)
        except (OSError, http.client.HTTPException) as exc:  # connect, read, protocol and timeout errors
            raise UpstreamUnavailable(f"OpenBao at {self.addr} is unreachable") from exc
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if status < 400:
            return payload
        raise _status_error(status, payload.get("errors"))

    def _send(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request on this thread's keep-alive connection: (status, body). A connection the
        server closed while idle is replaced before use; one that fails mid-request is dropped and
        the error raised (never retried: a token create is not idempotent)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and _closed_by_peer(conn):
            conn.close()
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            self._local.conn = None
            raise
        if resp.will_close:
            conn.close()
            self._local.conn = None
        return resp.status, data

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def health(self) -> None:
        try:
            r = self.session.get(f"{self.addr}/v1/sys/health", timeout=self.timeout)
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"OpenBao at {self.addr} is unreachable") from exc
        if r.status_code not in (200, 429, 472, 473):
            raise UpstreamUnavailable(f"OpenBao health check answered {r.status_code}")


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection is readable only when the server closed it (or broke the
    protocol): either way it must not carry the next request."""
    sock = conn.sock
    if sock is None:
        return True
    try:  # poll, not select: select fails on descriptors above FD_SETSIZE (1024)
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _status_error(status: int, errors: Any) -> BrokerError:
    """The broker's error for an OpenBao error status (as :meth:`OpenBaoHTTP.client` maps hvac's)."""
    first = str(errors[0])[:200] if isinstance(errors, list) and errors else f"status {status}"
    if status == 503:
        return UpstreamUnavailable("OpenBao is sealed or down")
    if status == 502:
        return UpstreamUnavailable("OpenBao is unreachable (bad gateway)")
    if status == 500 and _no_active_node(Exception(first)):
        return UpstreamUnavailable("OpenBao has no active node (leader election)")
    if status == 404:
        return NotFound(f"OpenBao path not found: {first}")
    if status == 403:
        return PermissionDenied(f"OpenBao refused the request (permission denied): {first}")
    return UpstreamError(f"OpenBao error: {first}")


_NO_LEADER = ("not active", "no active", "active cluster node not found", "leader", "standby", "sealed")


def _no_active_node(exc: Exception) -> bool:
    text = " ".join(str(e) for e in (getattr(exc, "errors", None) or [str(exc)])).lower()
    return any(marker in text for marker in _NO_LEADER)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return str(errors[0])[:200]
    return type(exc).__name__
