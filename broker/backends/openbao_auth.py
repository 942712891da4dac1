"""How the broker itself authenticates to OpenBao/Vault: a token, or AppRole with renewal.

``openbao.auth: token`` (default): ``openbao.token`` is used as is (an operator-issued periodic
token; renew it with ``renew: true`` or outside the broker).

``openbao.auth: approle``: the broker logs in at ``auth/{approle_mount}/login`` with
``approle_role_id`` and ``approle_secret_id`` (secret; from the environment
``NHI_BROKER_OPENBAO__APPROLE_SECRET_ID``) and gets a service token. :class:`TokenRenewer` renews it
at two thirds of its TTL and logs in again when renewal is refused or the token nears its
maximum TTL, swapping the token of the shared client in place.
"""

from __future__ import annotations

import threading
from typing import Any

from broker.backends.openbao_http import OpenBaoHTTP
from broker.errors import BrokerError, UpstreamUnavailable
from broker.logging import get_logger
from broker.secrets import Secret

log = get_logger("nhi-broker.openbao-auth")


class AppRoleLogin:
    def __init__(self, http: OpenBaoHTTP, *, mount: str, role_id: str, secret_id: Secret) -> None:
        self.http = http
        self.mount = mount
        self.role_id = role_id
        self.secret_id = secret_id

    def __repr__(self) -> str:
        return f"AppRoleLogin(mount={self.mount!r}, role_id=**********)"

    def login(self) -> int:
        """Log in, install the token on the shared client; returns its TTL in seconds."""
        anonymous = self.http.make_client(Secret(""))
        with self.http.client(bound=anonymous) as c:
            resp = c.adapter.post(
                f"/v1/auth/{self.mount}/login", json={"role_id": self.role_id, "secret_id": self.secret_id.reveal()}
            )
        auth = (resp or {}).get("auth") or {}
        token = auth.get("client_token")
        if not token:
            raise BrokerError("OpenBao AppRole login returned no token")
        self.http.set_token(Secret(str(token)))
        log.info("openbao.login", method="approle", ttl=auth.get("lease_duration"))
        return int(auth.get("lease_duration") or 0)


class TokenRenewer:
    """Keeps the broker's own OpenBao token alive (renew-self; re-login on refusal)."""

    def __init__(
        self, http: OpenBaoHTTP, login: AppRoleLogin | None, *, ttl: int | None = None, min_interval: float = 5.0
    ) -> None:
        self.http = http
        self.login = login
        self.min_interval = min_interval
        self._ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0
        self.logins = 0

    def start(self) -> TokenRenewer:
        self._thread = threading.Thread(target=self._loop, name="nhi-openbao-token", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _lookup_ttl(self) -> int:
        with self.http.client() as c:
            data: dict[str, Any] = c.adapter.get("/v1/auth/token/lookup-self")["data"]
        return int(data.get("ttl") or 0)

    def renew_once(self) -> int:
        """Renew (or log in again); returns the token's TTL in seconds (0: does not expire)."""
        try:
            with self.http.client() as c:
                resp = c.adapter.post("/v1/auth/token/renew-self", json={})
            ttl = int(((resp or {}).get("auth") or {}).get("lease_duration") or 0)
            self.renewals += 1
            if self.login is not None and self._ttl and ttl < self._ttl / 3:
                raise BrokerError("token near its maximum TTL")  # renewal no longer buys time
            self._ttl = self._ttl or ttl
            return ttl
        except UpstreamUnavailable:
            raise
        except BrokerError:
            if self.login is None:
                raise
            ttl = self.login.login()
            self._ttl = ttl
            self.logins += 1
            return ttl

    def _loop(self) -> None:
        wait = self.min_interval
        try:
            ttl = self._ttl or self._lookup_ttl()
            wait = max(self.min_interval, ttl * 2 / 3) if ttl else 3600.0
        except BrokerError as exc:
            log.warning("openbao.token_lookup_failed", error=exc.message)
        while not self._stop.wait(wait):
            try:
                ttl = self.renew_once()
                wait = max(self.min_interval, ttl * 2 / 3) if ttl else 3600.0
            except BrokerError as exc:  # OpenBao down: try again soon; requests answer 503 meanwhile
                log.warning("openbao.token_renewal_failed", error=exc.message)
                wait = self.min_interval
            except Exception as exc:  # never die: the broker would lose OpenBao silently
                log.error("openbao.token_renewer_failed", error_type=type(exc).__name__)
                wait = self.min_interval


def connect(
    addr: str,
    *,
    timeout: float,
    auth: str,
    token: Secret,
    renew_token: bool = False,
    approle_mount: str = "approle",
    approle_role_id: str = "",
    approle_secret_id: Secret | None = None,
) -> tuple[OpenBaoHTTP, TokenRenewer | None]:
    """The shared client, logged in; and the (not yet started) renewer when one is needed."""
    if auth == "approle":
        http = OpenBaoHTTP(addr, Secret(""), timeout=timeout)
        login = AppRoleLogin(
            http, mount=approle_mount, role_id=approle_role_id, secret_id=approle_secret_id or Secret("")
        )
        ttl = login.login()
        return http, TokenRenewer(http, login, ttl=ttl)
    http = OpenBaoHTTP(addr, token, timeout=timeout)
    return http, (TokenRenewer(http, None) if renew_token else None)
