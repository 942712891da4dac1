"""Request dependencies: the container, the admin principal, the calling agent.

Authentication happens in :class:`broker.api.limits.RequestGuard` before the body is read; these
dependencies hand its result to the route (and mark the route as admin or agent for the guard).
Without the guard (an app built without it) they authenticate themselves, the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from broker.api.limits import PRINCIPAL, admin_principal, bearer
from broker.container import Container
from broker.models import Agent


async def container(request: Request) -> Container:
    """Async on purpose: no I/O, so it runs on the event loop instead of costing a thread hop."""
    c: Container = request.app.state.container
    return c


def _container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# The Authorization header is read from the request, not declared as a parameter: the OpenAPI
# document describes it as a bearer security scheme (broker/api/openapi.py), not as a header field.
def admin(request: Request) -> str:
    if request.scope.get("state", {}).get(PRINCIPAL) == "admin":
        return "admin"
    return admin_principal(_container(request), request.headers.get("authorization"), path=request.url.path,
                           address=_address(request))


def agent(request: Request) -> Agent:
    principal = request.scope.get("state", {}).get(PRINCIPAL)
    if isinstance(principal, Agent):
        return principal
    return _container(request).authenticator.authenticate(bearer(request.headers.get("authorization")),
                                                          source=request.url.path, address=_address(request))


ContainerDep = Annotated[Container, Depends(container)]
AdminDep = Annotated[str, Depends(admin)]
AgentDep = Annotated[Agent, Depends(agent)]
