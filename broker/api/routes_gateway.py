"""The credential-injecting gateway (agent API): the broker makes the call for the agent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from broker.api.deps import AgentDep, ContainerDep
from broker.errors import InvalidInput
from broker.gateway import GatewayRequest
from broker.gateway.service import APPROVAL_HEADER

router = APIRouter(prefix="/v1", tags=["agent"])
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "step-up: approval pending (retry with X-NHI-Approval-Id)"},
    403: {"description": "no request rule, or the decision denied"},
    409: {"description": "task ended or quarantined"},
    422: {"description": "a path that could leave the resource's base URL"},
    502: {"description": "upstream redirected, or its response was too large"},
    503: {"description": "upstream unreachable or too slow"},
}


async def gateway(
    task_id: str, resource: str, path: str, request: Request, agent: AgentDep, c: ContainerDep
) -> Response:
    """Call the ``http_api`` resource's upstream at ``path`` with the credential injected by the
    broker. Decided like a credential request for the action the resource's rules map
    ``METHOD path`` to; the response comes back with every secret in it redacted."""
    del path  # the decoded form hides encoded slashes: the raw path is what is checked and forwarded
    limit = c.settings.gateway.max_request_bytes
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidInput("body", f"must be at most {limit} bytes (gateway.max_request_bytes)")
    raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
    prefix = f"/v1/tasks/{task_id}/gateway/{resource}"
    sub = raw[len(prefix) :] if raw.startswith(prefix) else None
    if sub is None:
        raise InvalidInput("path", "task id and resource must be sent unencoded")
    req = GatewayRequest(
        method=request.method,
        raw_path=sub,
        query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=dict(request.headers),
        body=body,
        approval_id=request.headers.get(APPROVAL_HEADER),
    )
    result = await run_in_threadpool(c.gateway.call, agent, task_id, resource, req)
    if result.status == 202 and result.approval_id is not None:
        payload: dict[str, Any] = {
            "decision": result.decision,
            "approval_id": result.approval_id,
            "retry": f"repeat the request with header X-NHI-Approval-Id: {result.approval_id}",
        }
        return JSONResponse(payload, status_code=202, headers={"Cache-Control": "no-store"})
    headers = {**result.headers, "Cache-Control": "no-store"}
    return Response(content=result.body, status_code=result.status, headers=headers)


for _method in METHODS:  # one operation per method: distinct OpenAPI operation ids
    router.add_api_route(
        "/tasks/{task_id}/gateway/{resource}/{path:path}",
        gateway,
        methods=[_method],
        operation_id=f"gateway_{_method.lower()}",
        name=f"gateway_{_method.lower()}",
        responses=RESPONSES,
    )
