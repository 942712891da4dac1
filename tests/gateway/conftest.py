"""Gateway fixtures: real OpenBao, a real broker, and an upstream API on loopback that accepts only
the credential the broker injects."""

from __future__ import annotations

import http.client
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker
from support.upstream import Upstream
from support.wait import HTTP_TIMEOUT

MAX_RESPONSE = 8 * 1024
KV_PATH = "gateway/crm"


@pytest.fixture(scope="module")
def api_key() -> str:
    return "crm-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def gateway_broker(openbao, tmp_path_factory, api_key) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("gateway-broker"),
        openbao,
        gateway={"max_response_bytes": MAX_RESPONSE, "timeout_seconds": 3},
    )
    with running.bao().client() as c:
        c.secrets.kv.v2.create_or_update_secret(path=KV_PATH, secret={"api_key": api_key}, mount_point="secret")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def upstream(gateway_broker, api_key) -> Iterator[Upstream]:
    up = Upstream(api_key=api_key, openbao_addr=gateway_broker.openbao.address, big_bytes=MAX_RESPONSE * 4)
    yield up
    up.close()


CRM_RULES = [
    "GET /v1/customers/* db.read",
    "GET /v1/echo db.read",
    "GET /v1/third-party db.read",
    "GET /v1/redirect db.read",
    "GET /v1/redirect-local db.read",
    "GET /v1/hang db.read",
    "GET /v1/gzip db.read",
    "GET /v1/gzip-bomb db.read",
    "GET /v1/brotli db.read",
    "GET /v1/big db.read",
    "GET /v1/slow db.read",
    "GET /v1/admin/** db.read",
]


class Api:
    def __init__(self, broker: RunningBroker) -> None:
        self.broker = broker
        self.http = httpx.Client(base_url=broker.url, timeout=HTTP_TIMEOUT)

    def agent_headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.broker.token('demo-agent')}", **(extra or {})}

    def admin(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        return self.http.request(
            method, path, json=body, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    def open_task(self) -> str:
        resp = self.http.post(
            "/v1/tasks", json={"profile": "demo", "purpose": "gateway test"}, headers=self.agent_headers()
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["task_id"])

    def call(
        self, task_id: str, method: str, resource: str, path: str, *, approval_id: str | None = None, **kw: Any
    ) -> httpx.Response:
        extra = {"X-NHI-Approval-Id": approval_id} if approval_id else {}
        return self.http.request(
            method, f"/v1/tasks/{task_id}/gateway/{resource}{path}", headers=self.agent_headers(extra), **kw
        )

    def raw_call(self, task_id: str, resource: str, raw_path: str) -> tuple[int, bytes]:
        """Send the path byte for byte (httpx would normalise dot segments away)."""
        parts = urlsplit(self.broker.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request("GET", f"/v1/tasks/{task_id}/gateway/{resource}{raw_path}", headers=self.agent_headers())
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def task_state(self, task_id: str) -> str:
        resp = self.http.get(f"/v1/admin/tasks/{task_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["task"]["state"])


@pytest.fixture(scope="module")
def api(gateway_broker, upstream) -> Iterator[Api]:
    client = Api(gateway_broker)
    put = [
        (
            "crm-api",
            {
                "kind": "http_api",
                "sensitivity": "internal",
                "environment": "dev",
                "http": {
                    "base_url": upstream.base_url,
                    "auth": "header",
                    "auth_name": "X-Api-Key",
                    "source": "vault_kv",
                    "mount": "secret",
                    "path": KV_PATH,
                    "field": "api_key",
                    "rules": CRM_RULES,
                },
            },
        ),
        (
            "crm-token-api",
            {
                "kind": "http_api",
                "sensitivity": "internal",
                "environment": "dev",
                "http": {
                    "base_url": upstream.base_url,
                    "auth": "bearer",
                    "source": "vault_token",
                    "policies": ["nhi-demo-data"],
                    "rules": CRM_RULES,
                },
            },
        ),
        (
            "crm-basic-api",
            {
                "kind": "http_api",
                "sensitivity": "internal",
                "environment": "dev",
                "http": {
                    "base_url": upstream.base_url,
                    "auth": "basic",
                    "username": "svc",
                    "source": "vault_kv",
                    "mount": "secret",
                    "path": KV_PATH,
                    "field": "api_key",
                    "rules": CRM_RULES,
                },
            },
        ),
        (
            "crm-query-api",
            {
                "kind": "http_api",
                "sensitivity": "internal",
                "environment": "dev",
                "http": {
                    "base_url": upstream.base_url,
                    "auth": "query",
                    "auth_name": "api_key",
                    "source": "vault_kv",
                    "mount": "secret",
                    "path": KV_PATH,
                    "field": "api_key",
                    "rules": CRM_RULES,
                },
            },
        ),
        (
            "pay-api",
            {
                "kind": "http_api",
                "sensitivity": "restricted",
                "environment": "prod",
                "http": {
                    "base_url": upstream.base_url,
                    "auth": "bearer",
                    "source": "vault_kv",
                    "mount": "secret",
                    "path": KV_PATH,
                    "field": "api_key",
                    "rules": ["POST /v1/charges payments.charge"],
                },
            },
        ),
    ]
    for name, body in put:
        resp = client.admin("PUT", f"/v1/admin/resources/{name}", body)
        assert resp.status_code in (200, 201), resp.text
    yield client
    client.http.close()
