"""Request dependencies: the container, the calling person (or the admin token) and their roles,
the calling agent. People and roles: docs/people.md.

Authentication happens in :class:`broker.api.limits.RequestGuard` before the body is read: these
dependencies are marked (:func:`~broker.api.limits.authenticates`) so the guard knows which
routes take a person and which an agent, and they hand its result to the route. Without the guard
they authenticate themselves, the same way. ``Authorization`` and ``DPoP`` are read from the
request, not declared as header parameters: the OpenAPI document has security schemes instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request

from broker.api.limits import PRINCIPAL, agent_principal, authenticates, request_url
from broker.container import Container
from broker.errors import Denied
from broker.models import Agent
from broker.people.model import Caller, Role
from broker.services.authn import Principal


async def container(request: Request) -> Container:
    """Async on purpose: no I/O, so it runs on the event loop instead of costing a thread hop."""
    c: Container = request.app.state.container
    return c


def _container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


@authenticates("person")
def caller(request: Request) -> Caller:
    """The person (API token or ID token) or the admin token behind a people route; 401 otherwise."""
    cached = request.scope.get("state", {}).get(PRINCIPAL)
    if isinstance(cached, Caller):
        return cached
    return _container(request).people.authenticate(request.headers.get("authorization"), source=_source(request))


def _source(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def _with_roles(*roles: Role) -> Callable[..., Caller]:
    def dependency(request: Request, who: Annotated[Caller, Depends(caller)]) -> Caller:
        return _container(request).people.require(who, roles, source=_source(request))

    dependency.__name__ = "requires_" + "_or_".join(r.value for r in roles)
    return dependency


_admin = _with_roles(Role.ADMIN)
_reader = _with_roles(Role.ADMIN, Role.AUDITOR)
_queue_reader = _with_roles(Role.ADMIN, Role.AUDITOR, Role.APPROVER, Role.REVIEWER)


def admin(who: Annotated[Caller, Depends(_admin)]) -> str:
    """The audit actor of an administrator: ``admin-token`` or ``person:NAME`` (role admin)."""
    return who.actor


def reader(who: Annotated[Caller, Depends(_reader)]) -> str:
    return who.actor


@authenticates("agent")
async def principal(request: Request) -> Principal:
    """Async: the guard middleware has already authenticated the caller (in a worker thread), so
    this is a lookup on the event loop instead of a thread hop; the fallback does its I/O in a
    worker thread."""
    cached = request.scope.get("state", {}).get(PRINCIPAL)
    if isinstance(cached, Principal):
        who = cached
    else:
        c, scope, address = _container(request), request.scope, _address(request)
        who = await anyio.to_thread.run_sync(lambda: agent_principal(c, scope, address=address))
    bound = who.task_id
    if bound is not None and (request.path_params.get("task_id", bound) != bound or request.url.path == "/v1/tasks"):
        # a delegated sub-task's token works on that task only (not another task, not a new one)
        raise Denied(f"this access token is bound to task {who.task_id}")
    return who


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@authenticates("agent")
async def agent(caller: Annotated[Principal, Depends(principal)]) -> Agent:
    """Async: no I/O, no thread hop."""
    return caller.agent


ContainerDep = Annotated[Container, Depends(container)]
AdminDep = Annotated[str, Depends(admin)]  # role admin (or the admin token): writes and reads
ReadDep = Annotated[str, Depends(reader)]  # role admin or auditor: reads
AdminCallerDep = Annotated[Caller, Depends(_admin)]
QueueReaderDep = Annotated[Caller, Depends(_queue_reader)]  # approvals, reviews, decisions
ApproverDep = Annotated[Caller, Depends(_with_roles(Role.APPROVER))]
ReviewerDep = Annotated[Caller, Depends(_with_roles(Role.REVIEWER))]
AgentDep = Annotated[Agent, Depends(agent)]
PrincipalDep = Annotated[Principal, Depends(principal)]

__all__ = ["AdminDep", "AgentDep", "ContainerDep", "PrincipalDep", "ReadDep", "request_url"]
