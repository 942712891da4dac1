"""Approvals fixtures: a webhook recorder on loopback and a broker that calls it when an approval
is pending; a local OIDC issuer of people (JWKS over HTTP on loopback); registered people with
roles and API tokens; helpers to drive the agent, people and admin APIs over real HTTP.

People (created through the admin API with the admin token, as an operator would):

- ``alice``, ``bob`` — approvers; ``dana`` — reviewer; ``audra`` — auditor; ``adam`` — admin;
- ``demo-owner`` — demo-agent's bound owner (seeded), given the approver and reviewer roles here
  so that four-eyes, not a missing role, is what refuses them;
- ``olga`` — an approver who signs in with an ID token from the people issuer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker
from support.issuers import LocalIssuer, id_token
from support.wait import DEADLINE, HTTP_TIMEOUT
from support.webhook import WebhookRecorder

PEOPLE_ISSUER = "https://idp.people.test"
ACTOR_AUDIENCE = "nhi-agents-act-for"  # actor tokens handed to agents (token exchange)
SIGN_IN_AUDIENCE = "nhi-broker-people"  # people signing in to the broker
ROLES = {
    "alice": ["approver"],
    "bob": ["approver"],
    "dana": ["reviewer"],
    "audra": ["auditor"],
    "adam": ["admin"],
    "demo-owner": ["approver", "reviewer"],
}


class ApprovalWebhook(WebhookRecorder):
    def __init__(self) -> None:
        super().__init__("/approvals")

    def wait_for_approval(self, approval_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
        return self.wait_for("approval_id", approval_id, timeout)


@pytest.fixture(scope="module")
def approval_webhook() -> Iterator[ApprovalWebhook]:
    rec = ApprovalWebhook()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def people_issuer() -> Iterator[LocalIssuer]:
    issuer = LocalIssuer(PEOPLE_ISSUER)
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def approvals_broker(openbao, approval_webhook, people_issuer, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("approvals-broker"),
        openbao,
        approval_webhook_url=approval_webhook.url,
        human_issuers=[people_issuer.settings(ACTOR_AUDIENCE, sign_in_audiences=[SIGN_IN_AUDIENCE])],
        # one IdP for workloads and people too (it happens): an identity must never be both
        issuers=[people_issuer.settings("nhi-broker-agents")],
    )
    yield running
    running.stop()


class People:
    """The registered people of the approvals broker and their API tokens (created once)."""

    def __init__(self, broker: RunningBroker, issuer: LocalIssuer) -> None:
        self.broker = broker
        self.issuer = issuer
        self.tokens: dict[str, str] = {}
        with httpx.Client(base_url=broker.url, timeout=15, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            for name, roles in ROLES.items():
                resp = http.put(f"/v1/admin/people/{name}", json={"roles": roles})
                assert resp.status_code in (200, 201), resp.text
                made = http.post(f"/v1/admin/people/{name}/tokens", json={"ttl_seconds": 3600})
                assert made.status_code == 201, made.text
                self.tokens[name] = made.json()["token"]
            olga = {"roles": ["approver"], "identities": [{"issuer": PEOPLE_ISSUER, "subject": "olga-0001"}]}
            assert http.put("/v1/admin/people/olga", json=olga).status_code in (200, 201)

    def id_token(self, subject: str = "olga-0001", audience: str = SIGN_IN_AUDIENCE, **over: Any) -> str:
        return self.issuer.mint(
            id_token(self.issuer, subject, audience, email=f"{subject}@example.test", groups=["payments"], **over)
        )

    def header(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}


@pytest.fixture(scope="module")
def people(approvals_broker: RunningBroker, people_issuer: LocalIssuer) -> People:
    return People(approvals_broker, people_issuer)


class Api:
    """Raw HTTP against the broker: status codes and bodies exactly as a client sees them."""

    def __init__(self, broker: RunningBroker, people: People) -> None:
        self.broker = broker
        self.people = people
        self.http = httpx.Client(base_url=broker.url, timeout=HTTP_TIMEOUT)

    def agent(
        self, method: str, path: str, body: dict[str, Any] | None = None, subject: str = "demo-agent"
    ) -> httpx.Response:
        return self.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {self.broker.token(subject)}"}
        )

    def admin(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        return self.http.request(
            method, path, json=body, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    def as_person(
        self,
        person: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        return self.http.request(method, path, json=body, params=params, headers=self.people.header(person))

    def open_task(self, purpose: str = "approvals test", subject: str = "demo-agent") -> str:
        resp = self.agent("POST", "/v1/tasks", {"profile": "demo", "purpose": purpose}, subject)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["task_id"])

    def credential(
        self,
        task_id: str,
        action: str,
        resource: str,
        approval_id: str | None = None,
        subject: str = "demo-agent",
    ) -> httpx.Response:
        body: dict[str, Any] = {"action": action, "resource": resource}
        if approval_id is not None:
            body["approval_id"] = approval_id
        return self.agent("POST", f"/v1/tasks/{task_id}/credentials", body, subject)

    def approve(self, approval_id: str, person: str, reason: str = "checked the invoice") -> httpx.Response:
        return self.as_person(person, "POST", f"/v1/approvals/{approval_id}/approve", {"reason": reason})

    def deny(self, approval_id: str, person: str, reason: str = "not expected") -> httpx.Response:
        return self.as_person(person, "POST", f"/v1/approvals/{approval_id}/deny", {"reason": reason})

    def step_up(self, task_id: str) -> str:
        resp = self.credential(task_id, "payments.charge", "prod-payments")
        assert resp.status_code == 202, resp.text
        return str(resp.json()["approval_id"])


@pytest.fixture(scope="module")
def api(approvals_broker: RunningBroker, people: People) -> Iterator[Api]:
    client = Api(approvals_broker, people)
    yield client
    client.http.close()
