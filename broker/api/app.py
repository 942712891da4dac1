"""FastAPI application: routes are thin; one handler maps the error tree to HTTP."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.api import (
    console,
    openapi,
    routes_admin,
    routes_agent,
    routes_approvals,
    routes_gateway,
    routes_people,
    routes_rotation,
    routes_scans,
    routes_token,
)
from broker.api.docs import add_offline_docs
from broker.api.limits import RequestGuard, ScanGate, TooManyRequests
from broker.container import Container
from broker.errors import BrokerError, Denied
from broker.logging import configure_logging, get_logger
from broker.metrics import Metrics

log = get_logger("nhi-broker.api")
GATEWAY_ROUTE = "/v1/tasks/{task_id}/gateway/{resource}/{path}"


def _field(loc: tuple[Any, ...]) -> str:
    # drop only the leading location kind: a body field may itself be called "path" or "query"
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


class _RequestContext:
    """Pure ASGI middleware: binds ``request_id`` (the caller's ``X-Request-ID`` when it is a
    sane token, else a new one) and the path's ``task_id`` to every log line of the request
    through structlog's contextvars, returns the id in ``X-Request-ID``, writes one access-log
    line and times the request for ``/metrics`` (Starlette's ``BaseHTTPMiddleware`` costs a task
    and a stream copy per request; this costs two clock reads)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        request_id = _request_id(scope)
        ids: dict[str, str] = {"request_id": request_id}
        task = _TASK_IN_PATH.search(scope["path"])
        if task is not None:
            ids["task_id"] = task.group(1)
        tokens = structlog.contextvars.bind_contextvars(**ids)

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.observe_request(scope["method"], scope["path"], status, elapsed)
            log.info(
                "request",
                method=scope["method"],
                route=self.metrics.route_of(scope["path"]),
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.reset_contextvars(**tokens)


_TASK_IN_PATH = re.compile(r"^/v1/(?:admin/)?tasks/(tsk_[0-9a-f]{32})(?:/|$)")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _request_id(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
            break
    return "req_" + uuid.uuid4().hex


def create_app(container: Container) -> FastAPI:
    if not structlog.is_configured():
        # structlog's own default renders rich tracebacks with local variables: slow under load
        # (a 500 took over 15 s) and a secret in a frame would reach the log
        configure_logging(container.settings.log_format, container.settings.log_level)
    app = FastAPI(
        title="nhi-broker",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        description="Credential broker for non-human identities. See docs/api.md.",
    )
    add_offline_docs(app)  # /docs and /redoc from the package's own assets (no CDN)
    app.state.container = container

    @app.exception_handler(BrokerError)
    async def _broker_error(_: Request, exc: BrokerError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.to_dict()}
        if isinstance(exc, Denied) and "decision" in exc.details:
            body = {
                "error": {k: v for k, v in exc.to_dict().items() if k != "decision"},
                "decision": exc.details["decision"],
            }
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        field = _field(tuple(first.get("loc", ())))
        # never echo the input value: it could be a secret
        message = f"{field}: {first.get('msg', 'invalid value')}"
        return JSONResponse(
            {
                "error": {
                    "code": "invalid_input",
                    "message": message,
                    "field": field,
                    "errors": [
                        {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg")} for e in exc.errors()[:20]
                    ],
                }
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own errors, in the broker's shape; an unparseable body is bad input (422)
        if exc.status_code == 400:
            return JSONResponse(
                {"error": {"code": "invalid_input", "field": "body", "message": "body: must be a JSON document"}},
                status_code=422,
            )
        return JSONResponse(
            {"error": {"code": f"http_{exc.status_code}", "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("request.failed", error_type=type(exc).__name__, exc_info=exc)
        # this answer leaves through the outermost layer, past the console's header middleware
        headers = console.headers_for(request.url.path)
        return JSONResponse(
            {"error": {"code": "internal_error", "message": "internal error; see broker logs"}},
            status_code=500,
            headers=headers,
        )

    limits = container.settings.limits
    app.state.scan_gate = ScanGate(limits.max_concurrent_scans, limits.max_queued_scans)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        report = container.health.readiness()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    def metrics() -> PlainTextResponse:
        container.metrics.refresh(container.health.revocation_backlog())
        return PlainTextResponse(generate_latest(container.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routers = [
        routes_agent.router,
        routes_admin.router,
        routes_approvals.router,
        routes_people.router,
        routes_rotation.router,
        routes_scans.router,
        routes_token.router,
        routes_gateway.router,
        *console.routers,
    ]
    for router in routers:
        app.include_router(router)
    # innermost first: the guard (size, authentication, rates) runs before any body is read
    api_routes = [
        r for r in (*app.router.routes, *(r for router in routers for r in router.routes)) if isinstance(r, APIRoute)
    ]
    openapi.install(app, api_routes)
    # the gateway forwards bodies up to its own limit (gateway.max_request_bytes)
    gateway_limit = {GATEWAY_ROUTE: container.settings.gateway.max_request_bytes}
    guard_limits = limits.model_copy(update={"route_max_body_bytes": {**gateway_limit, **limits.route_max_body_bytes}})
    app.add_middleware(RequestGuard, container=container, routes=api_routes, limits=guard_limits)
    console.install(app)  # the console's pages: static files, error pages, CSP (outside the guard)
    app.add_middleware(_RequestContext, metrics=container.metrics)
    return app
