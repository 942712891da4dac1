"""The OpenAPI document lists what operations really answer (issue 12 §3): 401 where a caller is
authenticated, 404 where a path names a thing, 409 where conflicts happen; a 405 names every
method of the path."""

from __future__ import annotations

import httpx
import pytest
from support.broker import ADMIN_TOKEN

pytestmark = pytest.mark.openbao


@pytest.fixture(scope="module")
def doc(broker) -> dict:
    r = httpx.get(f"{broker.url}/openapi.json")
    r.raise_for_status()
    return r.json()


def _ops(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method.upper(), op


def test_every_authenticated_operation_documents_401_and_429(doc) -> None:
    # the token endpoint authenticates from its form body (OAuth errors are 400)
    public = {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/token",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    }
    for path, method, op in _ops(doc):
        if path in public:
            assert "401" not in op["responses"], (method, path)
            continue
        assert {"401", "429"} <= set(op["responses"]), (method, path)


def test_every_operation_with_a_path_parameter_documents_404(doc) -> None:
    for path, method, op in _ops(doc):
        if "{" in path:
            assert "404" in op["responses"], (method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/tasks/{task_id}/credentials"),
        ("POST", "/v1/tasks/{task_id}/events"),
        ("DELETE", "/v1/tasks/{task_id}"),
        ("DELETE", "/v1/admin/profiles/{name}"),
        ("POST", "/v1/approvals/{approval_id}/approve"),
        ("POST", "/v1/admin/scan-jobs/{name}/run"),
    ],
)
def test_conflicting_operations_document_409(doc, method: str, path: str) -> None:
    assert "409" in doc["paths"][path][method.lower()]["responses"]


def test_error_answers_are_documented_with_the_brokers_error_shape(doc) -> None:
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    op = doc["paths"]["/v1/admin/agents/{name}"]["put"]
    assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"


@pytest.mark.parametrize(
    ("path", "method", "allowed"),
    [
        ("/v1/admin/agents/demo-agent", "POST", {"GET", "PUT", "DELETE"}),
        ("/v1/tasks/t-1", "PUT", {"GET", "DELETE"}),
        ("/v1/admin/scan-jobs/x", "POST", {"GET", "PUT", "DELETE"}),
        ("/v1/findings/f-1", "DELETE", {"GET", "PATCH"}),
        ("/v1/admin/managed-secrets/x", "PATCH", {"GET", "PUT", "DELETE"}),
    ],
)
def test_405_lists_every_method_of_the_path(broker, path: str, method: str, allowed: set[str]) -> None:
    r = httpx.request(method, f"{broker.url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed
    assert r.json()["error"]["code"] == "method_not_allowed"
