"""Workload identity: verify agents' JWTs against trusted issuers; the built-in dev issuer.

    verifier = IdentityVerifier([IssuerConfig(...), DevIssuer.load_or_create(data_dir).issuer_config()],
                                InMemoryReplayGuard())
    identity = verifier.verify(token)   # VerifiedIdentity, or raises Unauthenticated (401)

See ``docs/identity.md`` for configuring issuers and the replay rule.
"""

from broker.identity.config import IssuerConfig
from broker.identity.dev_issuer import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from broker.identity.replay import InMemoryReplayGuard, ReplayCacheFull, ReplayGuard
from broker.identity.verifier import MAX_TOKEN_BYTES, IdentityVerifier, VerifiedIdentity

__all__ = [
    "DEV_AUDIENCE",
    "DEV_ISSUER",
    "MAX_TOKEN_BYTES",
    "DevIssuer",
    "IdentityVerifier",
    "InMemoryReplayGuard",
    "IssuerConfig",
    "ReplayCacheFull",
    "ReplayGuard",
    "VerifiedIdentity",
]
