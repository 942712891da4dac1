"""Approvals fixtures: a webhook recorder on loopback and a broker that calls it when an approval
is pending; helpers to drive the agent and admin APIs over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker
from support.wait import DEADLINE, HTTP_TIMEOUT
from support.webhook import WebhookRecorder


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
def approvals_broker(openbao, approval_webhook, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("approvals-broker"), openbao, approval_webhook_url=approval_webhook.url
    )
    yield running
    running.stop()


class Api:
    """Raw HTTP against the broker: status codes and bodies exactly as a client sees them."""

    def __init__(self, broker: RunningBroker) -> None:
        self.broker = broker
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

    def approve(self, approval_id: str, approver: str, reason: str = "checked the invoice") -> httpx.Response:
        return self.admin(
            "POST", f"/v1/approvals/{approval_id}/approve", {"approver": approver, "reason": reason}
        )

    def deny(self, approval_id: str, approver: str, reason: str = "not expected") -> httpx.Response:
        return self.admin(
            "POST", f"/v1/approvals/{approval_id}/deny", {"approver": approver, "reason": reason}
        )

    def step_up(self, task_id: str) -> str:
        resp = self.credential(task_id, "payments.charge", "prod-payments")
        assert resp.status_code == 202, resp.text
        return str(resp.json()["approval_id"])


@pytest.fixture(scope="module")
def api(approvals_broker: RunningBroker) -> Iterator[Api]:
    client = Api(approvals_broker)
    yield client
    client.http.close()
