"""The agent's approval status through the Python client with token exchange and DPoP: the
long-poll's query string is not part of the proof's ``htu`` (RFC 9449), so a proof per call works."""

from __future__ import annotations

from typing import Any

import pytest

from broker.client import AdminClient, BrokerClient
from tests.exchange.test_token_exchange import svid

pytestmark = pytest.mark.openbao


def test_the_python_client_waits_for_an_approval_over_dpop(xbroker, issuers):
    with BrokerClient(xbroker.url, lambda: svid(issuers), exchange=True) as client:
        task_id = client.open_task("demo", "pay an invoice")["task_id"]
        step_up = client.request_credential(task_id, "payments.charge", "prod-payments")
        approval_id = step_up.approval_id
        assert approval_id
        assert client.approval_status(task_id, approval_id)["state"] == "pending"
        assert client.approval_status(task_id, approval_id, wait=1)["state"] == "pending"
        admin = xbroker.admin()
        admin.request("PUT", "/v1/admin/people/alice", {"roles": ["approver"]})
        token = admin.request("POST", "/v1/admin/people/alice/tokens", {"ttl_seconds": 600})["token"]
        alice = AdminClient(xbroker.url, token)  # a person's bearer client: the approver is alice
        xbroker.clients.append(alice)
        approved: dict[str, Any] = alice.request(
            "POST", f"/v1/approvals/{approval_id}/approve", {"reason": "invoice 4711"}
        )
        assert approved["state"] == "approved"
        assert client.approval_status(task_id, approval_id, wait=30)["state"] == "approved"
        cred = client.request_credential(task_id, "payments.charge", "prod-payments", approval_id)
        assert cred.secret("token")
        client.end_task(task_id)
