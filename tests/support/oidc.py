"""A real OpenID Connect provider on loopback (``oidc-provider-mock``: authlib's authorization
server in Flask), and signing in to the broker's console through it.

The provider signs ID tokens with RS256, serves discovery at
``/.well-known/openid-configuration`` and its keys at ``/jwks``, and lets anyone "log in" as any
subject by posting ``sub`` to its authorize page: the tests choose who signs in, the broker sees a
genuine authorization-code flow (state, nonce, code exchange with client authentication, signed ID
token). The package (0.3.4, the latest) accepts but does not check PKCE's ``code_challenge`` (its
stored authorization code has no field for it); the broker sends the S256 challenge and the
verifier regardless, which the sign-in helper asserts on the authorize URL.

- :class:`PkceEnforcer` — RFC 7636 enforced in front of that provider (``OidcProvider(enforce_pkce=True)``):
  the ``code_challenge`` (S256 only) of each authorize request is kept with the code it produced,
  and the token endpoint refuses (``400 invalid_grant``) a code without a challenge, a request
  without ``code_verifier``, or a verifier whose S256 is not the challenge — what a provider that
  implements PKCE does, so the broker's verifier is checked by the other side.
- :class:`OidcProvider` — start/stop; ``issuer`` is ``http://127.0.0.1:PORT``;
  :meth:`OidcProvider.human_issuer` the broker's ``human_issuers`` entry for it.
- :func:`console_sign_in` — sign in over HTTP (httpx, redirects followed by hand so each hop is
  checked) and return a client holding the session cookie, plus the CSRF token of the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import oidc_provider_mock
import werkzeug.serving

CONSOLE_CLIENT_ID = "nhi-console"
ACTOR_CLIENT_ID = "nhi-agents-act-for"  # the client whose ID tokens agents present as actor tokens
CONSOLE_CLIENT_SECRET = "console-client-secret-for-tests"  # the provider accepts any; the broker sends it
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


class PkceEnforcer:
    """WSGI layer: the provider refuses to redeem a code without the right PKCE verifier."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.challenges: dict[str, str | None] = {}
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/oauth2/authorize" and method == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            s256 = query.get("code_challenge_method", [""])[0] == "S256"
            challenge = query.get("code_challenge", [None])[0] if s256 else None

            def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                location = dict(headers).get("Location", "")
                for code in parse_qs(urlsplit(location).query).get("code", []):
                    with self._lock:
                        self.challenges[code] = challenge
                return start_response(status, headers, exc_info)

            return self.app(environ, keep)
        if path == "/oauth2/token" and method == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode("ascii", "replace"))
            if form.get("grant_type", [""])[0] == "authorization_code":
                with self._lock:
                    challenge = self.challenges.pop(form.get("code", [""])[0], None)
                verifier = form.get("code_verifier", [""])[0]
                if challenge is None or not verifier or not hmac.compare_digest(_s256(verifier), challenge):
                    self.refused += 1
                    answer = json.dumps({"error": "invalid_grant", "error_description": "PKCE verification failed"})
                    start_response("400 Bad Request", [("Content-Type", "application/json")])
                    return [answer.encode()]
        return self.app(environ, start_response)


class OidcProvider:
    def __init__(self, *, enforce_pkce: bool = False) -> None:
        app: Any = oidc_provider_mock.app(require_nonce=True)
        self.pkce: PkceEnforcer | None = PkceEnforcer(app) if enforce_pkce else None
        self._server = werkzeug.serving.make_server("127.0.0.1", 0, self.pkce or app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def human_issuer(self, *, client_id: str = CONSOLE_CLIENT_ID, **extra: Any) -> dict[str, Any]:
        """The broker's ``human_issuers`` entry: its keys from the provider's JWKS URL, sign-in
        for the console's client id only."""
        return {
            "issuer": self.issuer,
            "audiences": [ACTOR_CLIENT_ID],
            "sign_in_audiences": [client_id],
            "jwks_url": f"{self.issuer}/jwks",
            "algorithms": ["RS256"],
            **extra,
        }

    def id_token(self, subject: str, client_id: str, *, nonce: str = "n-0") -> str:
        """An ID token for ``subject`` issued to ``client_id``, through the provider's own code flow
        (e.g. the actor token a person hands an agent that acts for them)."""
        redirect = "http://127.0.0.1:9/cb"  # never followed: the code is read from the redirect
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect}
        query.update({"scope": "openid email", "state": "s", "nonce": nonce})
        granted = httpx.post(f"{self.issuer}/oauth2/authorize", params=query, data={"sub": subject}, timeout=60)
        assert granted.status_code == 302, granted.text
        code = httpx.URL(granted.headers["location"]).params["code"]
        answer = httpx.post(
            f"{self.issuer}/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
            auth=(client_id, CONSOLE_CLIENT_SECRET),
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id_token"])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)


@dataclass
class ConsoleClient:
    """An httpx client signed in to the console (the session cookie is in its jar)."""

    http: httpx.Client
    csrf_token: str
    landing: httpx.Response

    def post_form(self, path: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
        body = {**data, "csrf_token": self.csrf_token} if csrf else dict(data)
        return self.http.post(path, data=body)

    def close(self) -> None:
        self.http.close()


def sign_in_steps(http: httpx.Client, subject: str, *, next_path: str = "/console/approvals") -> httpx.Response:
    """Drive the code flow: broker → provider's authorize page → (post the subject) → broker's
    callback → the console page. Returns the last answer (the page, or the refusal page)."""
    start = http.get("/console/login", params={"next": next_path})
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    assert authorize.startswith("http://127.0.0.1:"), authorize
    assert "code_challenge_method=S256" in authorize and "nonce=" in authorize and "state=" in authorize
    # the provider's login form posts back to the same URL (with the query) the subject chosen
    granted = http.post(authorize, data={"sub": subject})
    assert granted.status_code == 302, granted.text
    back = granted.headers["location"]
    landed = http.get(back)
    while landed.status_code in (302, 303) and landed.headers["location"].startswith("/console"):
        landed = http.get(landed.headers["location"])
    return landed


def console_sign_in(broker_url: str, subject: str, *, next_path: str = "/console/approvals") -> ConsoleClient:
    """Sign in as ``subject`` (a registered person's OIDC subject); asserts it worked."""
    http = httpx.Client(base_url=broker_url, timeout=60, follow_redirects=False)
    landed = sign_in_steps(http, subject, next_path=next_path)
    assert landed.status_code == 200, landed.text
    found = _CSRF.search(landed.text)
    assert found is not None, "the signed-in page carries the session's CSRF token"
    return ConsoleClient(http=http, csrf_token=found.group(1), landing=landed)
