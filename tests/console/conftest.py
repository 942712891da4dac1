"""Console fixtures: a real OIDC provider on loopback, a broker whose console signs people in
through it, registered people with roles, and (for the browser tests) Debian's chromium.

People (registered through the admin API with the admin token, each bound to an OIDC subject at
the provider; the subject is what they "log in" as on the provider's page):

- ``alice`` (``alice@example.test``) — approver;
- ``demo-owner`` (``owner@example.test``) — demo-agent's bound owner, also an approver and a
  reviewer, so that four-eyes and not a missing role is what refuses them;
- ``dana`` (``dana@example.test``) — reviewer; ``audra`` (``audra@example.test``) — auditor.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker
from support.oidc import CONSOLE_CLIENT_SECRET, ConsoleClient, OidcProvider, console_sign_in

PEOPLE = {
    "alice": (["approver"], "alice@example.test"),
    "demo-owner": (["approver", "reviewer"], "owner@example.test"),
    "dana": (["reviewer"], "dana@example.test"),
    "audra": (["auditor"], "audra@example.test"),
}


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[OidcProvider]:
    provider = OidcProvider()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def console_broker(openbao, oidc_provider: OidcProvider, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("console-broker"),
        openbao,
        human_issuers=[oidc_provider.human_issuer()],
        # cookie_secure false: http://127.0.0.1 only (the settings refuse it elsewhere)
        console={"cookie_secure": False, "client_secret": CONSOLE_CLIENT_SECRET},
    )
    with httpx.Client(base_url=running.url, timeout=60, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        for name, (roles, subject) in PEOPLE.items():
            body = {"roles": roles, "identities": [{"issuer": oidc_provider.issuer, "subject": subject}]}
            resp = http.put(f"/v1/admin/people/{name}", json=body)
            assert resp.status_code in (200, 201), resp.text
    yield running
    running.stop()


@pytest.fixture()
def sign_in(console_broker: RunningBroker) -> Iterator[object]:
    """``sign_in("alice")`` → a :class:`ConsoleClient` signed in through the real OIDC flow."""
    clients: list[ConsoleClient] = []

    def signed_in(person: str) -> ConsoleClient:
        client = console_sign_in(console_broker.url, PEOPLE[person][1])
        clients.append(client)
        return client

    yield signed_in
    for c in clients:
        c.close()


class Agent:
    """demo-agent over the real agent API (dev-issuer tokens): opens tasks, asks for credentials."""

    def __init__(self, broker: RunningBroker) -> None:
        self.broker = broker
        self.http = httpx.Client(base_url=broker.url, timeout=60)
        self.access_token: str | None = None

    def act_for(self, actor_id_token: str) -> None:
        """From now on, act for the person of ``actor_id_token`` (RFC 8693 token exchange: the
        broker's access token carries the verified human; tasks opened with it act for them)."""
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": self.broker.token("demo-agent"),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "actor_token": actor_id_token,
            "actor_token_type": "urn:ietf:params:oauth:token-type:id_token",
        }
        resp = self.http.post("/v1/token", data=form)
        assert resp.status_code == 200, resp.text
        self.access_token = str(resp.json()["access_token"])

    def _call(self, method: str, path: str, body: dict[str, object]) -> httpx.Response:
        token = self.access_token or self.broker.token("demo-agent")
        return self.http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})

    def open_task(self, purpose: str = "console test") -> str:
        resp = self._call("POST", "/v1/tasks", {"profile": "demo", "purpose": purpose})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["task_id"])

    def credential(self, task_id: str, action: str, resource: str, approval_id: str | None = None) -> httpx.Response:
        body: dict[str, object] = {"action": action, "resource": resource}
        if approval_id is not None:
            body["approval_id"] = approval_id
        return self._call("POST", f"/v1/tasks/{task_id}/credentials", body)

    def step_up(self, task_id: str) -> str:
        """``payments.charge`` on ``prod-payments``: critical, needs a person's approval (202)."""
        resp = self.credential(task_id, "payments.charge", "prod-payments")
        assert resp.status_code == 202, resp.text
        return str(resp.json()["approval_id"])


@pytest.fixture()
def agent(console_broker: RunningBroker) -> Iterator[Agent]:
    client = Agent(console_broker)
    yield client
    client.http.close()
