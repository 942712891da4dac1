"""Request dependencies: the container, the admin principal, the calling agent.

Authentication happens in :class:`broker.api.limits.RequestGuard` before the body is read; these
dependencies hand its result to the route (and mark the route as admin or agent for the guard).
Without the guard (an app built without it) they authenticate themselves, the same way.

The ``Authorization`` and ``DPoP`` headers are read from the request, not declared as parameters:
the OpenAPI document describes them as security schemes (broker/api/openapi.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from broker.api.limits import PRINCIPAL, admin_principal, agent_principal, authenticates, request_url
from broker.container import Container
from broker.errors import Denied
from broker.models import Agent
from broker.services.authn import Principal


async def container(request: Request) -> Container:
    """Async on purpose: no I/O, so it runs on the event loop instead of costing a thread hop."""
    c: Container = request.app.state.container
    return c


def _container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@authenticates("admin")
def admin(request: Request) -> str:
    if request.scope.get("state", {}).get(PRINCIPAL) == "admin":
        return "admin"
    return admin_principal(_container(request), request.headers.get("authorization"), path=request.url.path,
                           address=_address(request))


@authenticates("agent")
def principal(request: Request) -> Principal:
    cached = request.scope.get("state", {}).get(PRINCIPAL)
    caller: Principal = (cached if isinstance(cached, Principal)
                         else agent_principal(_container(request), request.scope, address=_address(request)))
    bound = caller.task_id
    if bound is not None and (request.path_params.get("task_id", bound) != bound or request.url.path == "/v1/tasks"):
        # a delegated sub-task's token works on that task only (not another task, not a new one)
        raise Denied(f"this access token is bound to task {caller.task_id}")
    return caller


@authenticates("agent")
def agent(caller: Annotated[Principal, Depends(principal)]) -> Agent:
    return caller.agent


ContainerDep = Annotated[Container, Depends(container)]
AdminDep = Annotated[str, Depends(admin)]
AgentDep = Annotated[Agent, Depends(agent)]
PrincipalDep = Annotated[Principal, Depends(principal)]

__all__ = ["AdminDep", "AgentDep", "ContainerDep", "PrincipalDep", "request_url"]
