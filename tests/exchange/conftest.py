"""A broker trusting local SPIFFE-, Kubernetes- and GitHub-shaped issuers and a human OIDC issuer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support.broker import RunningBroker, start_broker
from support.issuers import LocalIssuer

from broker.openbao_server import OpenBaoServer

AUDIENCE = "nhi-broker"
HUMAN_CLIENT = "nhi-broker-console"


@dataclass
class Issuers:
    spiffe: LocalIssuer
    k8s: LocalIssuer
    github: LocalIssuer
    people: LocalIssuer
    untrusted_people: LocalIssuer


@pytest.fixture(scope="module")
def issuers() -> Iterator[Issuers]:
    found = Issuers(
        LocalIssuer("https://spire.example.test"),
        LocalIssuer("https://kubernetes.default.svc.cluster.local"),
        LocalIssuer("https://token.actions.githubusercontent.com"),
        LocalIssuer("https://login.example.test"),
        LocalIssuer("https://evil-idp.example.test"),
    )
    yield found
    for issuer in (found.spiffe, found.k8s, found.github, found.people, found.untrusted_people):
        issuer.stop()


@pytest.fixture(scope="module")
def xbroker(
    openbao: OpenBaoServer, issuers: Issuers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("exchange-broker"),
        openbao,
        issuers=[
            issuers.spiffe.settings(AUDIENCE, require_jti=False),
            issuers.k8s.settings(AUDIENCE),
            issuers.github.settings(AUDIENCE),
        ],
        human_issuers=[issuers.people.settings(HUMAN_CLIENT, claims=["groups", "email"])],
    )
    admin = running.admin()
    admin.put(
        "agents",
        "spiffe-agent",
        {
            "owner": "platform-team",
            "profiles": ["demo"],
            "owner_identity": {"person": "demo-owner"},
            "identities": [
                {"issuer": issuers.spiffe.issuer, "subject": "spiffe://example.org/ns/agents/sa/summarizer"}
            ],
        },
    )
    admin.put(
        "agents",
        "k8s-agent",
        {
            "owner": "platform-team",
            "profiles": ["demo"],
            "identities": [{"issuer": issuers.k8s.issuer, "subject": "system:serviceaccount:agents:reporter"}],
        },
    )
    admin.put(
        "agents",
        "ci-agent",
        {
            "owner": "platform-team",
            "profiles": ["demo"],
            "identities": [
                {
                    "issuer": issuers.github.issuer,
                    "subject": "repo:acme/agents:ref:refs/heads/main",
                    "claims": {"repository": "acme/agents"},
                }
            ],
        },
    )
    yield running
    running.stop()
