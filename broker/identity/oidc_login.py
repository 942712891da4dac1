"""The OIDC authorization-code flow with PKCE, as the web console's relying party (docs/console.md).

:meth:`OidcCodeFlow.begin` makes a fresh ``state``, ``nonce`` and PKCE verifier (S256 challenge)
and the issuer's authorize URL; the caller keeps the :class:`LoginState` (the console seals it in
a short-lived cookie). :meth:`OidcCodeFlow.finish` exchanges the code at the token endpoint and
verifies the ID token with the same verifier as a person's bearer ID token (pinned algorithms,
issuer keys, ``iss``, ``aud`` among ``sign_in_audiences``, ``exp``, age), and then what only the
flow knows: the ``nonce``, that ``aud`` names this client and ``azp`` (when present) is it.

Every outbound URL (the discovery document, the token endpoint it names) passes the broker's
outbound policy (broker/netpolicy.py) when it is read and again, resolved, right before the
connection. No redirects are followed; answers are bounded in size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlencode

import httpx

from broker.errors import InvalidInput, Unauthenticated, UpstreamUnavailable
from broker.identity.verifier import VerifiedIdentity
from broker.netpolicy import OutboundPolicy
from broker.secrets import Secret, constant_time_equals

MAX_ANSWER_BYTES: Final = 256 * 1024
DISCOVERY_CACHE_SECONDS: Final = 300.0


class IdTokenVerifier(Protocol):
    def verify(self, token: str, *, spend_jti: bool = True) -> VerifiedIdentity: ...


@dataclass(frozen=True, slots=True)
class LoginState:
    """What the browser's login must come back with: kept by the caller, never shown to the issuer
    except as ``state``, ``nonce`` and the S256 challenge of ``verifier``."""

    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorization: str
    token: str


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcCodeFlow:
    """Thread-safe; the discovery document is cached for a few minutes."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: Secret,
        discovery_url: str,
        scopes: Sequence[str],
        verifier: IdTokenVerifier,
        policy: OutboundPolicy,
        timeout_seconds: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._secret = client_secret
        self._discovery_url = discovery_url or issuer.rstrip("/") + "/.well-known/openid-configuration"
        self._scopes = " ".join(scopes)
        self._verifier = verifier
        self._policy = policy
        self._timeout = timeout_seconds
        self._transport = transport
        self._lock = threading.Lock()
        self._cached: tuple[float, Endpoints] | None = None

    # -- discovery ------------------------------------------------------------------------------
    def endpoints(self) -> Endpoints:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < DISCOVERY_CACHE_SECONDS:
                return self._cached[1]
        doc = self._json("GET", self._discovery_url, field="console.discovery_url")
        if doc.get("issuer") != self.issuer:
            raise UpstreamUnavailable("the issuer's discovery document names another issuer")
        found: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint"):
            url = doc.get(name)
            if not isinstance(url, str):
                raise UpstreamUnavailable(f"the issuer's discovery document has no {name}")
            try:
                found[name] = self._policy.check_url(url, field=name, schemes=("https",))
            except InvalidInput as exc:
                raise UpstreamUnavailable(f"the issuer's {exc.message}") from None
        endpoints = Endpoints(found["authorization_endpoint"], found["token_endpoint"])
        with self._lock:
            self._cached = (time.monotonic(), endpoints)
        return endpoints

    # -- the flow -------------------------------------------------------------------------------
    def begin(self, redirect_uri: str) -> tuple[str, LoginState]:
        """The authorize URL to send the browser to, and the state to keep until the callback."""
        state = LoginState(
            state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32), verifier=secrets.token_urlsafe(48)
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self._scopes,
                "state": state.state,
                "nonce": state.nonce,
                "code_challenge": _challenge(state.verifier),
                "code_challenge_method": "S256",
            }
        )
        authorize = self.endpoints().authorization
        return f"{authorize}{'&' if '?' in authorize else '?'}{query}", state

    def finish(self, *, code: str, returned_state: str, redirect_uri: str, kept: LoginState) -> VerifiedIdentity:
        """Exchange the code and verify the ID token; 401 on any mismatch."""
        if not constant_time_equals(returned_state, kept.state):
            raise Unauthenticated("sign-in state does not match (start again from the sign-in page)")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": kept.verifier,
            "client_id": self.client_id,
        }
        auth = (self.client_id, self._secret.reveal()) if self._secret.reveal() else None
        answer = self._json("POST", self.endpoints().token, field="token_endpoint", form=form, auth=auth)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise Unauthenticated("the issuer's token answer has no id_token")
        return self.verify_id_token(id_token, nonce=kept.nonce)

    def verify_id_token(self, id_token: str, *, nonce: str) -> VerifiedIdentity:
        """The verifier's checks (keys, pinned algorithms, ``iss``, ``aud``, ``exp``, age), then
        the flow's: this sign-in's ``nonce``, ``aud`` naming this client, ``azp`` (when present)."""
        identity = self._verifier.verify(id_token, spend_jti=False)
        claims = identity.claims
        if identity.issuer != self.issuer:
            raise Unauthenticated("the ID token is from another issuer than the console's")
        found = claims.get("nonce")
        if not isinstance(found, str) or not constant_time_equals(found, nonce):
            raise Unauthenticated("the ID token's nonce does not match this sign-in")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
        if self.client_id not in audiences:
            raise Unauthenticated("the ID token is not for this console's client id")
        azp = claims.get("azp")
        if azp is not None and azp != self.client_id:
            raise Unauthenticated("the ID token was issued to another client (azp)")
        return identity

    # -- HTTP -----------------------------------------------------------------------------------
    def _json(
        self,
        method: str,
        url: str,
        *,
        field: str,
        form: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            self._policy.check_resolved(url, field=field, schemes=("https",))
        except InvalidInput as exc:
            raise UpstreamUnavailable(f"the console's sign-in cannot reach the issuer: {exc.message}") from None
        try:
            with (
                httpx.Client(timeout=self._timeout, follow_redirects=False, transport=self._transport) as client,
                client.stream(method, url, data=form, auth=auth, headers={"Accept": "application/json"}) as response,
            ):
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise UpstreamUnavailable(f"the issuer's answer ({field}) is too large")
                status = response.status_code
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"the issuer is unreachable ({field}): {type(exc).__name__}") from None
        if status != 200:
            if field == "token_endpoint" and status == 401:  # RFC 6749 5.2: invalid_client
                raise Unauthenticated(
                    "the issuer refused the console's client authentication (HTTP 401): check "
                    "console.client_id and console.client_secret (NHI_BROKER_CONSOLE__CLIENT_SECRET)"
                )
            if field == "token_endpoint" and 400 <= status < 500:
                raise Unauthenticated(f"the issuer refused the sign-in code (HTTP {status})")
            raise UpstreamUnavailable(f"the issuer answered HTTP {status} ({field})")
        try:
            doc = json.loads(bytes(body))
        except ValueError:
            raise UpstreamUnavailable(f"the issuer's answer ({field}) is not JSON") from None
        if not isinstance(doc, dict):
            raise UpstreamUnavailable(f"the issuer's answer ({field}) is not a JSON object")
        return doc
