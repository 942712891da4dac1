"""The broker's built-in dev issuer: an Ed25519 key in the data directory that mints agent tokens.

For ``nhi-broker up`` and ``nhi-broker agent token NAME``: it stands in for a Kubernetes, SPIFFE
or CI issuer on a laptop. The private key lives in ``<data_dir>/dev-issuer/private_key.pem``
(mode 0600, directory 0700), is created once, atomically, and is never printed or logged; a key
file that other users can read is refused. Tokens carry ``kid`` = the RFC 7638 thumbprint of the
public key, so a JWKS built from :meth:`DevIssuer.jwks` identifies the key the same way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.errors import BrokerError, InvalidInput, NotFound
from broker.identity.config import IssuerConfig

DEV_ISSUER: Final = "urn:nhi-broker:dev"
DEV_AUDIENCE: Final = "nhi-broker"
DEV_MAX_TTL_SECONDS: Final = 3600  # also the issuer's max token age: a longer token would stop working early
KEY_DIR: Final = "dev-issuer"
KEY_FILE: Final = "private_key.pem"
RESERVED_CLAIMS: Final = frozenset({"iss", "sub", "aud", "iat", "nbf", "exp", "jti"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DevIssuer:
    __slots__ = ("_kid", "_private_key", "_public_jwk", "_public_pem")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        public = private_key.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        # RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
        canonical = json.dumps(
            {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":"), sort_keys=True
        )
        self._kid = _b64url(hashlib.sha256(canonical.encode()).digest())
        self._public_jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(raw),
            "kid": self._kid,
            "alg": "EdDSA",
            "use": "sig",
        }
        self._public_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def __repr__(self) -> str:
        return f"DevIssuer(kid={self._kid!r})"

    @property
    def kid(self) -> str:
        return self._kid

    @classmethod
    def load(cls, data_dir: Path | str) -> DevIssuer:
        """The dev issuer of a running ``nhi-broker up --data-dir DATA_DIR``; never creates a key.

        A wrong directory fails here, naming the path, instead of minting with a fresh key that the
        broker then rejects as "signature is invalid"."""
        path = Path(data_dir) / KEY_DIR / KEY_FILE
        if not path.is_file():
            raise NotFound(
                f"no dev issuer key at {path}: is this the data directory of `nhi-broker up --data-dir {data_dir}`?"
            )
        return cls(_load_key_file(path))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> DevIssuer:
        """For the broker itself (``up``): creates the key on first start. Clients use :meth:`load`."""
        key_dir = Path(data_dir) / KEY_DIR
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = key_dir / KEY_FILE
        if not path.exists():
            _create_key_file(path)
        return cls(_load_key_file(path))

    def mint(
        self,
        subject: str,
        *,
        ttl_seconds: int = 300,
        audience: str = DEV_AUDIENCE,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        if not isinstance(subject, str) or not subject:
            raise InvalidInput("subject", "must be a non-empty string")
        if (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, int)
            or not 1 <= ttl_seconds <= DEV_MAX_TTL_SECONDS
        ):
            raise InvalidInput("ttl_seconds", f"{ttl_seconds!r} must be between 1 and {DEV_MAX_TTL_SECONDS}")
        if not isinstance(audience, str) or not audience:
            raise InvalidInput("audience", "must be a non-empty string")
        extra = dict(claims or {})
        clashing = sorted(RESERVED_CLAIMS & extra.keys())
        if clashing:
            raise InvalidInput("claims", f"may not set the reserved claims {', '.join(clashing)}")
        now = int(time.time())
        payload = {
            **extra,
            "iss": DEV_ISSUER,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        headers = {"kid": self._kid, "typ": "JWT"}
        return jwt.encode(payload, self._private_key, algorithm="EdDSA", headers=headers)

    def issuer_config(self) -> IssuerConfig:
        return IssuerConfig(
            issuer=DEV_ISSUER,
            audiences=(DEV_AUDIENCE,),
            public_key_pem=self._public_pem,
            algorithms=("EdDSA",),
            max_token_age_seconds=DEV_MAX_TTL_SECONDS,
        )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public_jwk)]}


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temp file, then link it into place: atomic, and never clobbers."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_key_file(path: Path) -> Ed25519PrivateKey:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise BrokerError(f"cannot open the dev issuer key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BrokerError(f"the dev issuer key {path} is open to other users; run: chmod 600 {path}")
        data = handle.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise BrokerError(f"the dev issuer key {path} is not a readable PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BrokerError(f"the dev issuer key {path} is not an Ed25519 key")
    return key
