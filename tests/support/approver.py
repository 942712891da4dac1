"""A registered approver (a person with the ``approver`` role and an API token) for tests that
approve a step-up: approvals are decided by authenticated people, never typed names."""

from __future__ import annotations

import httpx


def approver_token(broker_url: str, admin_token: str, name: str = "alice") -> str:
    with httpx.Client(base_url=broker_url, timeout=15, headers={"Authorization": f"Bearer {admin_token}"}) as http:
        resp = http.put(f"/v1/admin/people/{name}", json={"roles": ["approver"]})
        assert resp.status_code in (200, 201), resp.text
        made = http.post(f"/v1/admin/people/{name}/tokens", json={"ttl_seconds": 3600})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


def approve(broker_url: str, token: str, approval_id: str, reason: str = "checked the invoice") -> httpx.Response:
    return httpx.post(
        f"{broker_url}/v1/approvals/{approval_id}/approve",
        json={"reason": reason},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
