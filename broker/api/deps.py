"""Request dependencies: the container, the admin principal, the calling agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from broker.container import Container
from broker.errors import Denied, Unauthenticated
from broker.models import Agent
from broker.secrets import constant_time_equals
from broker.services.authn import Principal


async def container(request: Request) -> Container:
    """Async on purpose: no I/O, so it runs on the event loop instead of costing a thread hop."""
    c: Container = request.app.state.container
    return c


def _container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("authorization header must be: Bearer <token>")
    return value.strip()


def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    c = _container(request)
    token = _bearer(authorization)
    if token is None or not constant_time_equals(token, c.settings.admin_token.get_secret_value()):
        c.audit.record("auth.failed", actor="unknown", outcome="denied",
                       data={"reason": "admin token missing or wrong", "path": request.url.path})
        raise Unauthenticated("admin token missing or wrong")
    return "admin"


def request_url(request: Request, public_url: str) -> str:
    """The URL the caller used (DPoP ``htu``): the configured public URL behind a proxy."""
    if public_url:
        return public_url.rstrip("/") + request.url.path
    return str(request.url)


def principal(request: Request, authorization: Annotated[str | None, Header()] = None,
              dpop: Annotated[str | None, Header(alias="DPoP")] = None) -> Principal:
    c = _container(request)
    caller = c.authenticator.authenticate_http(
        authorization, dpop, method=request.method,
        url=request_url(request, c.settings.token_exchange.public_url), source=request.url.path)
    bound = caller.task_id
    if bound is not None and (request.path_params.get("task_id", bound) != bound or request.url.path == "/v1/tasks"):
        # a delegated sub-task's token works on that task only (not another task, not a new one)
        raise Denied(f"this access token is bound to task {caller.task_id}")
    return caller


def agent(caller: Annotated[Principal, Depends(principal)]) -> Agent:
    return caller.agent


ContainerDep = Annotated[Container, Depends(container)]
AdminDep = Annotated[str, Depends(admin)]
AgentDep = Annotated[Agent, Depends(agent)]
PrincipalDep = Annotated[Principal, Depends(principal)]
