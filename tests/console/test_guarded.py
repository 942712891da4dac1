"""Every console route is seen by the request guard (broker/api/limits.py): body size before the
form is read, the failure budget of sign-ins and forms. FastAPI wraps a router included in a
router lazily, which once hid the whole console from the guard."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.routing import APIRoute
from support.broker import RunningBroker

from broker.api.app import create_app
from broker.api.console import routers
from broker.api.limits import RequestGuard


def test_the_request_guard_sees_every_console_route(console_broker: RunningBroker) -> None:
    app = create_app(console_broker.container)
    layer = app.build_middleware_stack()
    while not isinstance(layer, RequestGuard):
        layer = layer.app  # type: ignore[attr-defined]
    guarded = {(m, r.path_format) for r in layer.routes for m in (r.methods or ())}
    console = {(m, r.path) for router in routers for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
    assert len(console) >= 15 and console <= guarded
    assert not any(p.startswith("/console") for p in app.openapi()["paths"])  # not in the API schema


def test_a_console_form_larger_than_the_body_limit_is_refused_before_it_is_read(
    console_broker: RunningBroker,
) -> None:
    limit = console_broker.container.settings.limits.max_body_bytes
    body = b"csrf_token=" + b"a" * (limit + 1)
    resp = httpx.post(
        f"{console_broker.url}/console/logout",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert resp.status_code == 413
    assert "content-security-policy" in resp.headers


def _served(routes: list[Any]) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, through FastAPI's lazily included routers too."""
    found: set[tuple[str, str]] = set()
    for r in routes:
        if isinstance(r, APIRoute):
            found |= {(m, r.path_format) for m in r.methods}
        elif hasattr(r, "original_router"):
            found |= _served(r.original_router.routes)
    return found


def test_the_request_guard_sees_every_route_the_app_serves(console_broker: RunningBroker) -> None:
    app = create_app(console_broker.container)
    layer = app.build_middleware_stack()
    while not isinstance(layer, RequestGuard):
        layer = layer.app  # type: ignore[attr-defined]
    guarded = {(m, r.path_format) for r in layer.routes for m in (r.methods or ())}
    served = _served(app.router.routes)
    assert len(served) > 50 and served - guarded == set()
