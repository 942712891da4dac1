"""The OpenAPI document says every status an operation can answer with.

FastAPI documents 200/201 and 422 from the signatures; the rest comes from how the broker works,
so it is added here in one place, from the routes themselves:

- 401 (and 429, too many failed authentications) on every operation that authenticates; 403
  (``role_required``) where a person's role is checked;
- 404 on every operation with a path parameter (the named thing may not exist);
- 409 where a conflict can happen (a task that ended or is quarantined, a profile still in use,
  an approval no longer pending, a rotation or scan already running): :data:`CONFLICTS`;
- 413 on every operation with a request body (the size cap runs before the body is read);
- 405 is answered with an ``Allow`` header that lists every method of the path
  (:class:`broker.api.limits.RequestGuard`).

``tests/security/test_openapi.py`` checks the document against the routes, and the schemathesis
run checks the answers against the document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from fastapi import FastAPI
from fastapi.routing import APIRoute

from broker.api.limits import TOKEN_ENDPOINTS, auth_kind

ERROR: Final = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
        }
    },
}

# (method, path template) -> why a 409 can come back
CONFLICTS: Final[dict[tuple[str, str], str]] = {
    ("POST", "/v1/tasks"): "the task profile changed while the task was opened",
    ("POST", "/v1/tasks/{task_id}/credentials"): "task ended, expired or quarantined",
    ("POST", "/v1/tasks/{task_id}/events"): "task ended, expired or quarantined",
    ("DELETE", "/v1/tasks/{task_id}"): "task already ended or revoked",
    ("DELETE", "/v1/admin/profiles/{name}"): "the profile is still allowed for an agent",
    ("POST", "/v1/approvals/{approval_id}/approve"): "not pending (approved, denied, expired or collected)",
    ("POST", "/v1/approvals/{approval_id}/deny"): "no longer open",
    ("POST", "/v1/reviews/{review_id}/fine"): "already resolved",
    ("POST", "/v1/reviews/{review_id}/flag"): "already resolved",
    ("POST", "/v1/admin/scan-jobs/{name}/run"): "the job is running (here or on a replica)",
    ("PUT", "/v1/admin/managed-secrets/{name}"): "the secret is being rotated",
    ("POST", "/v1/admin/managed-secrets/{name}/rotate"): "the secret is being rotated, or its IAM user "
    "already holds two keys",
    ("DELETE", "/v1/admin/managed-secrets/{name}"): "the secret is being rotated",
}
DENIALS: Final[dict[tuple[str, str], str]] = {
    ("POST", "/v1/tasks"): "the agent may not open tasks under this profile",
    ("POST", "/v1/tasks/{task_id}/credentials"): "denied, with the decision",
    ("POST", "/v1/approvals/{approval_id}/approve"): "four-eyes: the agent's owner cannot approve alone",
}
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


def install(app: FastAPI, routes: Iterable[APIRoute]) -> None:
    """Replace ``app.openapi`` with one that adds the statuses above (built once, cached)."""
    by_key = {(m, r.path_format): r for r in routes for m in (r.methods or ())}
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), by_key)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any], routes: dict[tuple[str, str], APIRoute]) -> dict[str, Any]:
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "person": {
            "type": "http",
            "scheme": "bearer",
            "description": "the admin token, or a person's API token or ID token (docs/people.md)",
        },
        "agent": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "a workload identity token (single use: one jti per request)",
        },
    }
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            route = routes.get((method.upper(), path))
            responses: dict[str, Any] = op.setdefault("responses", {})

            def add(status: int, description: str, responses: dict[str, Any] = responses) -> None:
                responses.setdefault(str(status), {"description": description, "content": ERROR})

            kind = auth_kind(route) if route is not None else None
            if path in TOKEN_ENDPOINTS:
                add(429, "too many refused exchanges from this source (Retry-After)")
            if kind == "person":
                add(403, "role_required: the person lacks the role this operation needs (docs/people.md)")
            if kind is not None:
                op["security"] = [{kind: []}]
                add(401, "identity missing or not accepted (audited as auth.failed)")
                add(429, "too many failed authentications or requests from this source (Retry-After)")
            if "{" in path:
                add(404, "no such " + path.rsplit("{", 1)[1].rstrip("}").removesuffix("_id").replace("_", " "))
            if method.upper() == "PUT" and "200" in responses:  # PUT by name: 201 created, 200 replaced
                responses.setdefault("201", {**responses["200"], "description": "created"})
                responses["200"] = {**responses["200"], "description": "replaced"}
            if (method.upper(), path) == ("POST", "/v1/tasks/{task_id}/credentials"):
                responses.setdefault(
                    "202", {**responses.get("200", {}), "description": "step-up: an approval is pending (approval_id)"}
                )
            denial = DENIALS.get((method.upper(), path))
            if denial is not None:
                add(403, denial)
            conflict = CONFLICTS.get((method.upper(), path))
            if conflict is not None:
                add(409, conflict)
            if method.upper() in _BODY_METHODS:
                add(413, "request body larger than the route's limit")
            if "422" in responses or op.get("parameters") or method.upper() in _BODY_METHODS:
                # the broker's error shape, not FastAPI's default HTTPValidationError
                responses["422"] = {"description": "invalid input; error.field names the field", "content": ERROR}
    return doc
