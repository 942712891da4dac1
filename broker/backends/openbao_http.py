"""Shared OpenBao client plumbing: one pooled HTTP session, exception translation.

``with http.client(token) as c:`` yields an ``hvac.Client`` bound to the shared session; any
hvac/requests exception raised inside is translated at this boundary into the broker's error
tree, so nothing above the adapters sees a library exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import hvac
import requests
from requests.adapters import HTTPAdapter

from broker.errors import BrokerError, NotFound, UpstreamError, UpstreamUnavailable
from broker.secrets import Secret


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

    def health(self) -> None:
        try:
            r = self.session.get(f"{self.addr}/v1/sys/health", timeout=self.timeout)
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"OpenBao at {self.addr} is unreachable") from exc
        if r.status_code not in (200, 429, 472, 473):
            raise UpstreamUnavailable(f"OpenBao health check answered {r.status_code}")


_NO_LEADER = ("not active", "no active", "active cluster node not found", "leader", "standby", "sealed")


def _no_active_node(exc: Exception) -> bool:
    text = " ".join(str(e) for e in (getattr(exc, "errors", None) or [str(exc)])).lower()
    return any(marker in text for marker in _NO_LEADER)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return str(errors[0])[:200]
    return type(exc).__name__
