"""Where an issuer's verification keys come from: a PEM, a JWKS file, or a JWKS URL.

Every source answers one question, :meth:`KeySource.key_for` (``kid`` -> public key), and holds
only public asymmetric keys: a JWK with private members (``d``), a symmetric (``oct``) key or
an RSA key under 2048 bits is refused (file, PEM) or skipped (URL).

The URL source caches the key set for ``jwks_cache_seconds`` and fetches it again, at most once
per cool-down, when a token names a ``kid`` it does not know (key rotation). The cool-down
counts from the last such forced fetch only, so a rotation right after start-up is picked up at
once, while tokens with random ``kid`` values cannot make the broker hammer the issuer. When a
scheduled refresh fails the last good key set stays in use for a bounded time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

from broker.errors import InvalidInput, UpstreamUnavailable
from broker.identity.config import IssuerConfig
from broker.netpolicy import OutboundPolicy

log = structlog.get_logger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

MIN_RSA_BITS: Final = 2048
JWKS_MAX_BYTES: Final = 512 * 1024
JWKS_FETCH_TIMEOUT_SECONDS: Final = 5.0
JWKS_REFRESH_COOLDOWN_SECONDS: Final = 30.0  # between fetches forced by an unknown kid
JWKS_RETRY_AFTER_FAILURE_SECONDS: Final = 30.0
JWKS_MAX_STALE_SECONDS: Final = 3600.0  # how long past expiry a cached set may serve during an outage

_EC_CURVES: Final = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1", "ES256K": "secp256k1"}


class UnknownKeyId(Exception):
    """No key of the issuer matches the token's ``kid`` (or the token needs one and has none)."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key: PublicKey
    kid: str | None = None
    alg: str | None = None  # the JWK's declared ``alg``, if any; a token must then use exactly it


class KeySource(Protocol):
    def key_for(self, kid: str | None) -> VerificationKey: ...


def key_fits_algorithm(key: PublicKey, alg: str) -> bool:
    """Whether ``alg`` is a signature algorithm for this type (and curve) of key."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _EC_CURVES[alg]
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def _check_public_key(key: object) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key
    raise ValueError(f"unsupported key type {type(key).__name__}; expected a public RSA, EC or EdDSA key")


def parse_jwk(jwk: Mapping[str, Any]) -> VerificationKey | None:
    """One public signing key from a JWK; ``None`` for keys meant for encryption.

    Raises ``ValueError`` for a key that must not be trusted (private, symmetric, weak, broken).
    """
    if jwk.get("use") not in (None, "sig"):
        return None
    kty = jwk.get("kty")
    if kty == "oct":
        raise ValueError("symmetric (oct) keys are not accepted")
    if "d" in jwk:
        raise ValueError("the JWK contains private key material")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid must be a string")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg must be a string")
    loaders: dict[str, Callable[[Any], Any]] = {
        "RSA": RSAAlgorithm.from_jwk,
        "EC": ECAlgorithm.from_jwk,
        "OKP": OKPAlgorithm.from_jwk,
    }
    if kty not in loaders:
        raise ValueError(f"unsupported kty {kty!r}")
    try:
        key = loaders[str(kty)](dict(jwk))
    except (PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"unreadable {kty} key: {exc}") from None
    return VerificationKey(key=_check_public_key(key), kid=kid, alg=alg)


def parse_jwks(data: object, *, strict: bool) -> tuple[VerificationKey, ...]:
    """The signing keys of a JWKS document. ``strict`` refuses any bad key instead of skipping it."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('a JWKS must be a JSON object with a "keys" list')
    keys: list[VerificationKey] = []
    for index, jwk in enumerate(data["keys"]):
        try:
            if not isinstance(jwk, dict):
                raise ValueError("not a JSON object")
            parsed = parse_jwk(jwk)
        except ValueError as exc:
            if strict:
                raise ValueError(f"key {index}: {exc}") from None
            reason = str(exc)
        else:
            if parsed is not None:
                keys.append(parsed)
            continue
        log.warning("identity.jwks.key_skipped", index=index, reason=reason)
    if not keys:
        raise ValueError("the JWKS has no usable signing keys")
    return tuple(keys)


def select_key(keys: Sequence[VerificationKey], kid: str | None) -> VerificationKey | None:
    """The key named by ``kid``; a set of exactly one key without a ``kid`` also serves any token."""
    if kid is not None:
        for key in keys:
            if key.kid == kid:
                return key
    if len(keys) == 1 and (kid is None or keys[0].kid is None):
        return keys[0]
    return None


def _check_fits_some_algorithm(config: IssuerConfig, keys: Sequence[VerificationKey], field: str) -> None:
    for key in keys:
        if not any(key_fits_algorithm(key.key, alg) for alg in config.algorithms):
            raise ValueError(
                f"{field} of issuer {config.issuer!r}: a key (kid {key.kid!r}) fits none of the "
                f"allowed algorithms {', '.join(config.algorithms)}"
            )


class StaticKeys:
    """Keys fixed at start-up: a PEM public key or a JWKS file."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[VerificationKey]) -> None:
        self._keys = tuple(keys)

    @classmethod
    def from_pem(cls, config: IssuerConfig, pem: str) -> StaticKeys:
        try:
            key = _check_public_key(load_pem_public_key(pem.encode()))
        except ValueError as exc:
            raise ValueError(
                f"public_key_pem of issuer {config.issuer!r}: not a usable PEM public key ({exc})"
            ) from None
        keys = (VerificationKey(key=key),)
        _check_fits_some_algorithm(config, keys, "public_key_pem")
        return cls(keys)

    @classmethod
    def from_jwks_file(cls, config: IssuerConfig, path: Path) -> StaticKeys:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"jwks_file of issuer {config.issuer!r}: cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError:
            raise ValueError(f"jwks_file of issuer {config.issuer!r}: {path} is not valid JSON") from None
        try:
            keys = parse_jwks(data, strict=True)
        except ValueError as exc:
            raise ValueError(f"jwks_file of issuer {config.issuer!r}: {exc}") from None
        _check_fits_some_algorithm(config, keys, "jwks_file")
        return cls(keys)

    def key_for(self, kid: str | None) -> VerificationKey:
        if len(self._keys) == 1 and self._keys[0].kid is None:
            return self._keys[0]  # a PEM (or kid-less single JWK) serves whatever kid the token names
        key = select_key(self._keys, kid)
        if key is None:
            raise UnknownKeyId
        return key


class _FetchFailed(Exception):
    pass


class RemoteJwks:
    """A JWKS URL, cached, refreshed on expiry and (rate-limited) on an unknown ``kid``.

    Fetches run outside the lock, one at a time: while a scheduled refresh is in flight other
    verifications keep using the cached set, so a slow endpoint never stalls every request;
    only callers with nothing usable (cold cache, a new ``kid``) wait for the fetch.
    """

    def __init__(
        self,
        issuer: str,
        url: str,
        *,
        cache_seconds: float,
        refresh_cooldown_seconds: float = JWKS_REFRESH_COOLDOWN_SECONDS,
        timeout_seconds: float = JWKS_FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        policy: OutboundPolicy | None = None,
    ) -> None:
        self._issuer = issuer
        self._policy = policy
        self._url = url
        self._cache_seconds = cache_seconds
        self._cooldown = refresh_cooldown_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._transport = transport
        self._cond = threading.Condition()
        self._fetching = False
        self._keys: tuple[VerificationKey, ...] = ()
        self._fetched_at = -math.inf  # last successful fetch
        self._next_refresh_at = -math.inf
        self._last_forced_at = -math.inf

    def key_for(self, kid: str | None) -> VerificationKey:
        refreshed = False
        if self._clock() >= self._next_refresh_at:
            refreshed = self._refresh(trigger="expiry")
        key = select_key(self._keys, kid)
        if key is None and kid is not None and not refreshed and self._may_force_refresh():
            self._refresh(trigger="unknown_kid")
            key = select_key(self._keys, kid)
        if key is None:
            raise UnknownKeyId
        return key

    def _may_force_refresh(self) -> bool:
        with self._cond:
            now = self._clock()
            if now - self._last_forced_at < self._cooldown:
                return False
            self._last_forced_at = now
            return True

    def _refresh(self, *, trigger: str) -> bool:
        """Fetch the set (or wait for the fetch in flight). True if a fetch was attempted or awaited."""
        with self._cond:
            if self._fetching:
                if trigger == "expiry" and self._keys:
                    return False  # serve the cached set meanwhile
                while self._fetching:
                    self._cond.wait()
                self._raise_if_no_keys()
                return True
            if trigger == "expiry" and self._clock() < self._next_refresh_at:
                return True  # another thread refreshed while we queued for the lock
            self._fetching = True
        keys: tuple[VerificationKey, ...] | None = None
        try:
            keys = self._fetch()
        except _FetchFailed as exc:
            log.warning(
                "identity.jwks.refresh_failed", issuer=self._issuer, url=self._url, reason=str(exc), trigger=trigger
            )
        finally:
            with self._cond:
                now = self._clock()
                if keys is not None:
                    self._keys, self._fetched_at = keys, now
                    self._next_refresh_at = now + self._cache_seconds
                elif trigger == "expiry":
                    self._next_refresh_at = now + min(self._cache_seconds, JWKS_RETRY_AFTER_FAILURE_SECONDS)
                    if now - self._fetched_at > self._cache_seconds + JWKS_MAX_STALE_SECONDS:
                        self._keys = ()
                self._fetching = False
                self._cond.notify_all()
        with self._cond:
            self._raise_if_no_keys()
        return True

    def _raise_if_no_keys(self) -> None:
        if not self._keys:
            raise UpstreamUnavailable("the signing keys of the token's issuer could not be fetched; try again later")

    def _fetch(self) -> tuple[VerificationKey, ...]:
        body = self._get()
        try:
            keys = parse_jwks(json.loads(body), strict=False)
        except (ValueError, RecursionError) as exc:
            raise _FetchFailed(f"unusable JWKS: {exc}") from None
        log.info("identity.jwks.fetched", issuer=self._issuer, url=self._url, keys=len(keys))
        return keys

    def _get(self) -> bytes:
        if self._policy is not None:
            try:  # every address the name resolves to now, not only when it was configured
                self._policy.check_resolved(self._url, field="jwks_url")
            except InvalidInput as exc:
                raise _FetchFailed(exc.message) from None
        try:
            client = httpx.Client(timeout=self._timeout, follow_redirects=False, transport=self._transport)
            with client, client.stream("GET", self._url, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise _FetchFailed(f"HTTP {response.status_code}")
                body = bytearray()
                deadline = time.monotonic() + 2 * self._timeout  # a slow drip must not hold the fetch
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > JWKS_MAX_BYTES:
                        raise _FetchFailed(f"JWKS larger than {JWKS_MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise _FetchFailed("JWKS download took too long")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"{type(exc).__name__}: {exc}") from None


def key_source_for(
    config: IssuerConfig, *, clock: Callable[[], float] = time.monotonic, policy: OutboundPolicy | None = None
) -> KeySource:
    if config.public_key_pem:
        return StaticKeys.from_pem(config, config.public_key_pem)
    if config.jwks_file is not None:
        return StaticKeys.from_jwks_file(config, config.jwks_file)
    assert config.jwks_url is not None  # IssuerConfig guarantees exactly one source
    return RemoteJwks(
        config.issuer, config.jwks_url, cache_seconds=config.jwks_cache_seconds, clock=clock, policy=policy
    )
