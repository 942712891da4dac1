"""The broker's own access tokens (issued by ``POST /v1/token``, RFC 8693) and its signing key.

An access token is a JWT signed with the broker's ES256 key (``alg`` pinned on both sides; the
public key is published at ``/.well-known/jwks.json``). Claims:

- ``iss`` = ``aud`` = the broker's issuer URL (or ``aud`` = a registered MCP server's resource
  URL, RFC 8707: such a token is refused by the broker's own API and only accepted by that MCP
  server); ``exp`` no later than the subject token's and ``max_ttl_seconds`` after issue; ``jti``;
- ``sub`` = ``agent:<name>``, or, when the agent acts for a verified person, that person's
  subject with the agent as the RFC 8693 ``act`` actor;
- ``agent`` (the registered agent), ``wid`` (the workload identity it was exchanged from),
  ``human`` (issuer, subject and the configured claims of the verified person, when present);
- ``cnf.jkt`` when the exchange carried a DPoP proof: the token then only works with a fresh proof
  signed by that key (RFC 9449).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import Unauthenticated
from broker.identity.dpop import jwk_thumbprint
from broker.models import VerifiedHuman

ALGORITHM: Final = "ES256"
TOKEN_TYPE: Final = "at+jwt"  # RFC 9068 header typ of JWT access tokens


def _fail(message: str) -> NoReturn:
    raise Unauthenticated(message) from None


class BrokerSigningKey:
    """The broker's ES256 key. A PEM file (0600) in the data dir by default, created on first use;
    replicas must share it (configure ``token_signing_key_file``)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        public = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        self.kid = jwk_thumbprint(public)
        self.public_jwk: dict[str, Any] = {**public, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def __repr__(self) -> str:
        return f"BrokerSigningKey(kid={self.kid!r})"

    @classmethod
    def load_or_create(cls, path: Path) -> BrokerSigningKey:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            try:
                os.link(tmp, path)  # the first of two processes creating it wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{path}: the token signing key must be an EC P-256 private key")
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": TOKEN_TYPE})

    def verify(self, token: str, *, issuer: str, audience: str | None = None) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            _fail("access token is malformed")
        if header.get("alg") != ALGORITHM or header.get("kid") != self.kid or header.get("typ") != TOKEN_TYPE:
            _fail("access token was not issued by this broker (alg, kid or typ)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._key.public_key(),
                algorithms=[ALGORITHM],
                audience=audience or issuer,
                issuer=issuer,
                options={"require": ["iss", "aud", "sub", "exp", "iat", "jti", "agent"]},
            )
        except jwt.ExpiredSignatureError:
            _fail("access token is expired: exchange the workload identity again")
        except jwt.PyJWTError:
            _fail("access token is invalid")
        return claims


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int
    bound: bool


@dataclass(frozen=True, slots=True)
class AccessClaims:
    agent: str
    jti: str
    jkt: str | None
    human: VerifiedHuman | None
    expires_at: datetime
    workload: dict[str, str]
    scope: tuple[str, ...] | None = None  # task profiles this token may open tasks under (None: all the agent's)
    task_id: str | None = None  # a token for one delegated sub-task
    subject: str = ""  # the principal on whose behalf (``sub``)


class AccessTokens:
    def __init__(self, key: BrokerSigningKey, *, issuer: str, max_ttl_seconds: int) -> None:
        self.key = key
        self.issuer = issuer
        self.max_ttl_seconds = max_ttl_seconds

    def mint(
        self,
        *,
        agent: str,
        workload_issuer: str,
        workload_subject: str,
        subject_expires_at: datetime,
        human: VerifiedHuman | None,
        jkt: str | None,
        scope: tuple[str, ...] | None = None,
        delegated_by: tuple[str, ...] = (),
        task_id: str | None = None,
        audience: str | None = None,
    ) -> AccessToken:
        """``delegated_by``: the agents of the parent tasks, nearest first (the RFC 8693 ``act``
        chain nests: this agent, acting for its parent's agent, ..., acting for the person);
        ``task_id``: a token for one delegated sub-task, dead once that task stops; ``audience``: a
        registered MCP server's resource URL instead of the broker (RFC 8707)."""
        now = int(time.time())
        exp = min(int(subject_expires_at.timestamp()), now + self.max_ttl_seconds)
        if exp <= now:
            _fail("subject token expires too soon to be exchanged")
        chain = [f"agent:{a}" for a in (agent, *delegated_by)]
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience or self.issuer,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": "at_" + secrets.token_hex(16),
            "agent": agent,
            "wid": {"iss": workload_issuer, "sub": workload_subject},
            # the principal on whose behalf: the person, else the outermost agent of the chain
            "sub": human.subject if human is not None else chain[-1],
        }
        actors = chain if human is not None else chain[:-1]
        act: dict[str, Any] | None = None
        for actor in reversed(actors):  # innermost (the calling agent) ends up outermost in the claim
            act = {"sub": actor, **({"act": act} if act else {})}
        if act is not None:
            claims["act"] = act
        if human is not None:
            claims["human"] = human.to_dict()
        if task_id is not None:
            claims["task"] = task_id
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        if scope is not None:
            claims["scope"] = " ".join(scope)
        return AccessToken(self.key.sign(claims), exp - now, jkt is not None)

    def is_ours(self, token: str) -> bool:
        """Cheap routing: does this bearer token claim to be one of ours (verified afterwards)?"""
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == self.issuer
        except (jwt.PyJWTError, ValueError, json.JSONDecodeError):
            return False

    def claimed_audience(self, token: str) -> str | None:
        """The ``aud`` a token of ours claims (unverified: routing only, verified afterwards)."""
        if not self.is_ours(token):
            return None
        aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
        return aud if isinstance(aud, str) else None

    def verify(self, token: str, *, audience: str | None = None) -> AccessClaims:
        """A token for the broker (``aud`` = its issuer), or with ``audience`` for that resource."""
        claims = self.key.verify(token, issuer=self.issuer, audience=audience)
        agent = claims.get("agent")
        if not isinstance(agent, str) or not agent:
            _fail("access token names no agent")
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if cnf is not None and not isinstance(jkt, str):
            _fail("access token confirmation (cnf) is malformed")
        raw_human = claims.get("human")
        human = None
        if isinstance(raw_human, dict) and {"iss", "sub"} <= set(raw_human):
            human = VerifiedHuman.from_dict(raw_human)
        wid = claims.get("wid") if isinstance(claims.get("wid"), dict) else {}
        scope = claims.get("scope")
        return AccessClaims(
            agent=agent,
            jti=str(claims["jti"]),
            jkt=jkt,
            human=human,
            expires_at=datetime.fromtimestamp(float(claims["exp"]), tz=UTC),
            workload={k: str(v) for k, v in dict(wid or {}).items()},
            scope=tuple(scope.split()) if isinstance(scope, str) else None,
            task_id=str(claims["task"]) if isinstance(claims.get("task"), str) else None,
            subject=str(claims["sub"]),
        )
