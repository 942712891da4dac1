"""The registry of resource kinds: one entry per credential backend.

Each kind names its adapter factory, the settings block its resources carry and the Terraform
block that describes them. The composition root builds the backends from this table; the API
schema takes its ``kind`` values from :class:`ResourceKind`; a test checks the Terraform provider's
kind list and the Cedar schema's comment against it (``tests/core/test_architecture.py``).

Adding a kind: write the adapter (``broker/backends/<kind>.py``, implementing
:class:`broker.backends.port.CredentialBackend`), add it here, document it in
``docs/backends.md``, add its tests — the walkthrough in ``docs/architecture.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from broker.backends.aws_sts import AwsClientSettings, AwsRevocationMode, AwsStsBackend
from broker.backends.http_api import HttpApiBackend
from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.openbao_kv import OpenBaoKVBackend
from broker.backends.openbao_token import OpenBaoTokenBackend
from broker.backends.port import CredentialBackend
from broker.backends.postgres import PostgresBackend
from broker.config import Settings
from broker.models import Action
from broker.secrets import Fingerprinter


class ResourceKind(enum.StrEnum):
    VAULT_TOKEN = "vault_token"
    VAULT_KV = "vault_kv"
    POSTGRES = "postgres"
    AWS = "aws"
    HTTP_API = "http_api"


@dataclass(frozen=True, slots=True)
class BackendDeps:
    """What a backend factory may use."""

    settings: Settings
    openbao: OpenBaoHTTP
    fingerprint: Fingerprinter
    token_backend: OpenBaoTokenBackend  # shared: the parent-token-per-task lives in one place
    catalog: Callable[[], Mapping[str, Action]]  # the action catalog (request rules name actions)
    aws: AwsStsBackend | None = None  # shared by kind aws and http_api's aws_sts source (None: aws off)


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: ResourceKind
    summary: str
    settings_block: str  # the key of the resource's settings (``vault``, ``aws`` or ``http``)
    build: Callable[[BackendDeps], CredentialBackend]
    enabled: Callable[[Settings], bool] = lambda _s: True


def aws_backend(settings: Settings) -> AwsStsBackend:
    return AwsStsBackend(
        AwsClientSettings(region=settings.aws.region, endpoint_url=settings.aws.endpoint_url),
        mode=AwsRevocationMode(settings.aws.revocation_mode),
        outbound=settings.outbound_policy(),
    )


KINDS: Mapping[ResourceKind, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            ResourceKind.VAULT_TOKEN,
            "OpenBao/Vault child token under the task's parent token",
            "vault",
            lambda d: d.token_backend,
        ),
        KindSpec(
            ResourceKind.VAULT_KV,
            "OpenBao/Vault KV secret, response-wrapped",
            "vault",
            lambda d: OpenBaoKVBackend(
                d.openbao, fingerprinter=d.fingerprint, public_addr=d.settings.openbao.public_addr
            ),
        ),
        KindSpec(
            ResourceKind.POSTGRES,
            "dynamic PostgreSQL role through the OpenBao database engine",
            "vault",
            lambda d: PostgresBackend(d.openbao),
        ),
        KindSpec(
            ResourceKind.AWS,
            "AWS STS session narrowed by a session policy and tagged with the task",
            "aws",
            lambda d: d.aws or aws_backend(d.settings),
            enabled=lambda s: s.aws.enabled,
        ),
        KindSpec(
            ResourceKind.HTTP_API,
            "an upstream HTTP API the gateway calls with the credential injected",
            "http",
            lambda d: HttpApiBackend(
                d.openbao,
                d.token_backend,
                catalog=d.catalog,
                allowed_hosts=d.settings.gateway.allowed_hosts,
                aws=d.aws,
            ),
        ),
    )
}


def build_backends(deps: BackendDeps) -> dict[str, CredentialBackend]:
    """Every enabled kind's adapter, keyed by kind; each adapter must declare the kind it serves."""
    backends: dict[str, CredentialBackend] = {}
    for kind, spec in KINDS.items():
        if not spec.enabled(deps.settings):
            continue
        backend = spec.build(deps)
        if backend.kind != kind.value:
            raise TypeError(f"backend for kind {kind.value} declares kind {backend.kind}")
        backends[kind.value] = backend
    return backends
