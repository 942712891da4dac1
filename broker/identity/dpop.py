"""DPoP proofs (RFC 9449): a token bound to a key is useless without that key.

A proof is a JWT the client signs for one HTTP request: header ``typ: dpop+jwt``, ``alg`` (pinned
to asymmetric algorithms), ``jwk`` (the public key, never a private one); claims ``jti`` (used
once, across replicas), ``htm`` (the method), ``htu`` (the URL without query and fragment),
``iat`` (within a small window) and, with an access token, ``ath`` (its SHA-256, base64url).
The key's RFC 7638 thumbprint is what an access token's ``cnf.jkt`` names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit, urlunsplit

import jwt

from broker.errors import Unauthenticated
from broker.identity.replay import ReplayGuard

ALGORITHMS: Final = ("ES256", "EdDSA")
MAX_PROOF_BYTES: Final = 4096
_THUMBPRINT_MEMBERS: Final = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})


def _fail(message: str) -> NoReturn:
    raise Unauthenticated(message) from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, base64url."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ValueError("unsupported or incomplete JWK")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def normalise_htu(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, no query or fragment (RFC 9449 §4.3)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


@dataclass(frozen=True, slots=True)
class DPoPSettings:
    iat_window_seconds: int = 60  # a proof is accepted this long after (and before) its iat


class DPoPVerifier:
    def __init__(self, replay: ReplayGuard, settings: DPoPSettings = DPoPSettings()) -> None:
        self.replay = replay
        self.settings = settings

    def verify(self, proof: str | None, *, method: str, url: str, access_token: str | None = None) -> str:
        """Check ``proof`` for this request; return the thumbprint of the key that signed it."""
        if not proof:
            _fail("DPoP proof is missing: send a DPoP header signed by the token's key")
        if len(proof) > MAX_PROOF_BYTES or not proof.isascii() or proof.count(".") != 2:
            _fail("DPoP proof is malformed")
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            _fail("DPoP proof is malformed")
        if header.get("typ") != "dpop+jwt":
            _fail("DPoP proof must have typ dpop+jwt")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            _fail(f"DPoP proof algorithm must be one of {', '.join(ALGORITHMS)}")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & set(jwk):
            _fail("DPoP proof must carry the public key (jwk) and no private key material")
        try:
            thumbprint = jwk_thumbprint(jwk)
            key = jwt.PyJWK(jwk, algorithm=alg)
            claims: dict[str, Any] = jwt.decode(
                proof,
                key=key.key,
                algorithms=[alg],
                options={"require": ["jti", "htm", "htu", "iat"], "verify_aud": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            _fail("DPoP proof signature is invalid")
        except (jwt.PyJWTError, ValueError, TypeError):
            _fail("DPoP proof is invalid")
        if claims.get("htm") != method.upper():
            _fail("DPoP proof htm does not match the request method")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalise_htu(htu) != normalise_htu(url):
            _fail("DPoP proof htu does not match the request URL")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            _fail("DPoP proof iat must be a number")
        now = time.time()
        window = self.settings.iat_window_seconds
        if abs(now - float(iat)) > window:
            _fail("DPoP proof is stale or from the future (iat outside the accepted window)")
        if access_token is not None and claims.get("ath") != access_token_hash(access_token):
            _fail("DPoP proof ath does not match the access token")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            _fail("DPoP proof jti must be a non-empty string of at most 256 chars")
        expires = datetime.fromtimestamp(float(iat) + window + 1, tz=UTC)
        if not self.replay.check_and_record(f"dpop:{thumbprint}", jti, expires):
            _fail("DPoP proof was already used (replayed jti)")
        return thumbprint


def make_proof(
    private_key: Any,
    public_jwk: dict[str, Any],
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    alg: str = "ES256",
    jti: str | None = None,
    iat: float | None = None,
) -> str:
    """A DPoP proof for one request (the Python client and the tests use this)."""
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": method.upper(),
        "htu": normalise_htu(url),
        "iat": int(iat if iat is not None else time.time()),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    return jwt.encode(claims, private_key, algorithm=alg, headers={"typ": "dpop+jwt", "jwk": public_jwk})
