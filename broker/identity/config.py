"""How one trusted issuer is configured: ``iss``, accepted audiences, one key source, algorithms.

A configuration that could not verify anything safely is refused at construction with a
``ValueError`` naming the field, so a bad issuer fails start-up instead of the first request.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

# Asymmetric signature algorithms PyJWT (with cryptography) implements. Symmetric (HS*) and "none"
# are never accepted: a verifier that holds only public keys must not accept a MAC, or anyone who
# reads the public key can forge a token with it (the classic RS256 -> HS256 confusion).
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "ES256K",
        "EdDSA",
    }
)
DEFAULT_ALGORITHMS: Final = ("RS256", "ES256", "EdDSA")

_LOOPBACK_NAMES: Final = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    issuer: str
    audiences: tuple[str, ...]
    jwks_file: Path | None = None
    jwks_url: str | None = None
    public_key_pem: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    max_token_age_seconds: int = 3600
    leeway_seconds: int = 30
    require_jti: bool = True
    jwks_cache_seconds: int = 300

    def __post_init__(self) -> None:
        # Settings hand over lists; keep the dataclass hashable and immutable.
        object.__setattr__(self, "audiences", tuple(self.audiences))
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        if self.jwks_file is not None and not isinstance(self.jwks_file, Path):
            object.__setattr__(self, "jwks_file", Path(self.jwks_file))

        if not isinstance(self.issuer, str) or not self.issuer.strip():
            raise ValueError("issuer: must be a non-empty string")
        if not self.audiences or not all(isinstance(a, str) and a for a in self.audiences):
            raise ValueError(f"audiences of issuer {self.issuer!r}: at least one non-empty audience is required")
        self._check_key_source()
        self._check_algorithms()
        _check_positive(self.issuer, "max_token_age_seconds", self.max_token_age_seconds)
        _check_positive(self.issuer, "jwks_cache_seconds", self.jwks_cache_seconds)
        if (
            isinstance(self.leeway_seconds, bool)
            or not isinstance(self.leeway_seconds, int)
            or not 0 <= self.leeway_seconds <= 300
        ):
            raise ValueError(f"leeway_seconds of issuer {self.issuer!r}: must be an integer from 0 to 300")

    def _check_key_source(self) -> None:
        sources = [s for s in (self.jwks_file, self.jwks_url, self.public_key_pem) if s]
        if len(sources) != 1:
            raise ValueError(f"issuer {self.issuer!r}: exactly one of jwks_file, jwks_url, public_key_pem must be set")
        if self.jwks_url is not None:
            _check_jwks_url(self.issuer, self.jwks_url)

    def _check_algorithms(self) -> None:
        if not self.algorithms:
            raise ValueError(f"algorithms of issuer {self.issuer!r}: at least one algorithm is required")
        for alg in self.algorithms:
            if alg not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"algorithms of issuer {self.issuer!r}: {alg!r} is not allowed; "
                    f"allowed: {', '.join(sorted(ASYMMETRIC_ALGORITHMS))} (never 'none' or HS*)"
                )


def _check_positive(issuer: str, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field} of issuer {issuer!r}: must be a positive integer")


def _check_jwks_url(issuer: str, url: str) -> None:
    """JWKS over plain HTTP lets anyone on the path hand us signing keys: https only, except loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and _is_loopback(host):
        return
    raise ValueError(f"jwks_url of issuer {issuer!r}: must be an https:// URL (http:// only for a loopback host)")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
