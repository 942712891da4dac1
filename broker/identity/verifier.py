"""Verify an agent's workload identity token (a JWT) against the configured trusted issuers.

Order of checks, each failure an :class:`~broker.errors.Unauthenticated` whose message names
what was wrong and never carries the token:

1. size (8 KiB) and shape; the unverified header and ``iss`` are read only to choose the issuer;
2. ``alg`` must be in that issuer's allow-list -- before any key is touched, so ``none`` and
   HS256-keyed-with-the-public-key never reach a verifier;
3. the key is chosen by ``kid`` (an unknown ``kid`` makes a JWKS URL source fetch again, once,
   rate-limited) and must fit ``alg``;
4. ``jwt.decode`` with the pinned algorithms, audiences, issuer, leeway and the required claims;
5. the token's age (``now - iat``) against ``max_token_age_seconds``;
6. the replay guard, last: only a token whose signature verified can spend its ``jti``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import jwt

from broker.errors import Unauthenticated
from broker.identity.config import IssuerConfig
from broker.identity.keys import KeySource, UnknownKeyId, key_fits_algorithm, key_source_for
from broker.identity.replay import ReplayGuard
from broker.netpolicy import OutboundPolicy

MAX_TOKEN_BYTES: Final = 8 * 1024
MAX_JTI_LENGTH: Final = 256
MAX_TIMESTAMP: Final = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime can hold
_PRINTABLE_ALG = re.compile(r"[A-Za-z0-9_-]{1,16}")


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    issuer: str
    subject: str
    claims: dict[str, Any]
    jti: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class _Issuer:
    config: IssuerConfig
    keys: KeySource


def _fail(message: str) -> NoReturn:
    # ``from None``: library exceptions may quote parts of the token; keep them out of tracebacks.
    raise Unauthenticated(message) from None


class IdentityVerifier:
    """Thread-safe: key sources lock themselves and the replay guard is atomic."""

    __slots__ = ("_issuers", "_replay_guard")

    def __init__(
        self, issuers: Sequence[IssuerConfig], replay_guard: ReplayGuard, *, outbound: OutboundPolicy | None = None
    ) -> None:
        """``outbound``: where a JWKS URL may point when it is fetched (broker/netpolicy.py)."""
        by_name: dict[str, _Issuer] = {}
        for config in issuers:
            if config.issuer in by_name:
                raise ValueError(f"issuer {config.issuer!r} is configured more than once")
            by_name[config.issuer] = _Issuer(config=config, keys=key_source_for(config, policy=outbound))
        self._issuers: Mapping[str, _Issuer] = by_name
        self._replay_guard = replay_guard

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._issuers)

    def verify(self, token: str, *, spend_jti: bool = True) -> VerifiedIdentity:
        """``spend_jti=False``: the token exchange, where a workload token is reusable within its
        lifetime (SPIRE, Kubernetes and CI issuers hand out the same token many times); the issued
        access token is then bound to a key by DPoP instead."""
        if not isinstance(token, str) or not token:
            _fail("identity token is missing")
        if len(token) > MAX_TOKEN_BYTES or len(token.encode("utf-8", "replace")) > MAX_TOKEN_BYTES:
            _fail("identity token is too large")
        if not token.isascii() or token.count(".") != 2:
            _fail("identity token is malformed")

        header, unverified_claims = self._read_unverified(token)
        issuer = self._issuers.get(str(unverified_claims["iss"]))
        if issuer is None:
            _fail("identity token issuer is not trusted")
        config = issuer.config

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in config.algorithms:
            shown = f" {alg!r}" if isinstance(alg, str) and _PRINTABLE_ALG.fullmatch(alg) else ""
            _fail(f"identity token algorithm{shown} is not allowed")
        if "crit" in header or "b64" in header:
            _fail("identity token uses unsupported critical header parameters")

        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            _fail("identity token is malformed")
        try:
            key = issuer.keys.key_for(kid)
        except UnknownKeyId:
            _fail(
                "identity token signing key id is not known"
                if kid is not None
                else "identity token has no key id (kid) and the issuer has several keys"
            )
        if (key.alg is not None and key.alg != alg) or not key_fits_algorithm(key.key, alg):
            _fail(f"identity token algorithm {alg!r} does not match the issuer's signing key")

        claims = self._decode(token, key.key, config)
        subject, jti, expires_at = self._check_claims(claims, config)

        if config.require_jti and spend_jti:
            assert jti is not None  # required by _decode
            # Remember the jti for as long as the token could still pass every check above.
            iat = float(claims["iat"])
            last_valid = min(expires_at.timestamp(), iat + config.max_token_age_seconds)
            window_end = last_valid + config.leeway_seconds
            if not self._replay_guard.check_and_record(config.issuer, jti, datetime.fromtimestamp(window_end, tz=UTC)):
                _fail("identity token was already used (replayed jti)")

        return VerifiedIdentity(issuer=config.issuer, subject=subject, claims=claims, jti=jti, expires_at=expires_at)

    @staticmethod
    def _read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            _fail("identity token is malformed")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            _fail("identity token is malformed")
        if not isinstance(claims.get("iss"), str):
            _fail("identity token has no issuer (iss)")
        return header, claims

    @staticmethod
    def _decode(token: str, key: Any, config: IssuerConfig) -> dict[str, Any]:
        required = ["iss", "sub", "aud", "exp", "iat"]
        if config.require_jti:
            required.append("jti")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(config.algorithms),
                audience=list(config.audiences),
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={
                    "require": required,
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "verify_sub": True,
                    "verify_jti": True,
                },
            )
        except jwt.ExpiredSignatureError:
            _fail("identity token is expired")
        except jwt.ImmatureSignatureError:
            _fail("identity token is not yet valid (nbf or iat is in the future)")
        except jwt.InvalidAudienceError:
            _fail("identity token audience is not accepted")
        except jwt.InvalidIssuerError:
            _fail("identity token issuer is not trusted")
        except jwt.MissingRequiredClaimError as exc:
            _fail(f"identity token is missing the required '{exc.claim}' claim")
        except jwt.InvalidSignatureError:
            _fail("identity token signature is invalid")
        except jwt.InvalidAlgorithmError:
            _fail("identity token algorithm is not allowed")
        except jwt.InvalidIssuedAtError:
            _fail("identity token iat claim is invalid")
        except jwt.DecodeError:
            _fail("identity token is malformed")
        except jwt.PyJWTError:
            _fail("identity token is invalid")
        return claims

    @staticmethod
    def _check_claims(claims: dict[str, Any], config: IssuerConfig) -> tuple[str, str | None, datetime]:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            _fail("identity token sub claim must be a non-empty string")
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH):
            _fail(f"identity token jti claim must be a non-empty string of at most {MAX_JTI_LENGTH} chars")
        exp, iat = claims["exp"], claims["iat"]
        # PyJWT has checked both are numbers (bool is an int in Python, so check again).
        if isinstance(exp, bool) or isinstance(iat, bool):
            _fail("identity token exp and iat claims must be numbers")
        # NaN passes every comparison PyJWT makes, and exp=1e20 is no date: both are a 401, never a 500
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and not (
                isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= MAX_TIMESTAMP
            ):
                _fail(f"identity token {name} claim is out of range")
        age = time.time() - float(iat)
        if age > config.max_token_age_seconds + config.leeway_seconds:
            _fail(f"identity token is too old (issued more than {config.max_token_age_seconds} seconds ago)")
        return subject, jti, datetime.fromtimestamp(float(exp), tz=UTC)
