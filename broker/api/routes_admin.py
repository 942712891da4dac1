"""Admin API (bearer: admin token). PUT by name is idempotent: 201 created, 200 replaced."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from broker.api.deps import AdminDep, ContainerDep, QueueReaderDep, ReadDep
from broker.api.presenters import (
    audit_event_body,
    decision_body,
    registered_body,
    revocations_body,
    task_body,
    task_view_body,
)
from broker.api.schemas import MAX_SEQ, NAME, AgentIn, ProfileIn, ResourceIn, RevokeIn
from broker.errors import NotFound
from broker.models import Agent, IdentityBinding, Resource, TaskProfile, TaskState
from broker.services.registry import agent_may_hold
from broker.store.rows import Entity, Registered

router = APIRouter(prefix="/v1", tags=["admin"])
Name = Annotated[str, Path(pattern=NAME, description="lower-case name: a-z 0-9 . _ -")]


def _put(result: tuple[Registered, bool]) -> JSONResponse:
    entry, created = result
    return JSONResponse(registered_body(entry), status_code=201 if created else 200)


@router.put("/admin/agents/{name}")
def put_agent(name: Name, body: AgentIn, actor: AdminDep, c: ContainerDep) -> JSONResponse:
    agent = Agent(
        name=name,
        owner=body.owner,
        trust_level=body.trust_level,
        description=body.description,
        bindings=tuple(IdentityBinding(i.issuer, i.subject, dict(i.claims)) for i in body.identities),
        profiles=tuple(dict.fromkeys(body.profiles)),
        owner_identity=body.owner_identity.to_model() if body.owner_identity is not None else None,
    )
    if agent.owner_identity is not None:
        c.people.check_owner(agent.owner_identity)
    return _put(c.registry.put_agent(agent, actor))


@router.put("/admin/profiles/{name}")
def put_profile(name: Name, body: ProfileIn, actor: AdminDep, c: ContainerDep) -> JSONResponse:
    profile = TaskProfile(
        name=name,
        allowed_actions=tuple(dict.fromkeys(body.allowed_actions)),
        ceiling=body.ceiling,
        max_lifetime_seconds=body.max_lifetime_seconds,
        description=body.description,
    )
    return _put(c.registry.put_profile(profile, actor))


@router.put("/admin/resources/{name}")
def put_resource(name: Name, body: ResourceIn, actor: AdminDep, c: ContainerDep) -> JSONResponse:
    resource = Resource(
        name=name,
        kind=body.kind.value,
        sensitivity=body.sensitivity,
        environment=body.environment,
        settings=body.settings(),
        description=body.description,
        external=body.external,
        agent_may_hold=agent_may_hold(body.kind.value, body.agent_may_hold),
    )
    return _put(c.registry.put_resource(resource, actor))


def _entity_routes(entity: Entity, plural: str) -> None:
    @router.get(f"/admin/{plural}", name=f"list_{plural}")
    def _list(_: ReadDep, c: ContainerDep) -> dict[str, Any]:
        return {"items": [registered_body(e) for e in c.registry.list(entity)]}

    @router.get(f"/admin/{plural}/{{name}}", name=f"get_{entity.value}")
    def _get(name: str, _: ReadDep, c: ContainerDep) -> dict[str, Any]:
        return registered_body(c.registry.get(entity, name))

    @router.delete(f"/admin/{plural}/{{name}}", status_code=204, name=f"delete_{entity.value}")
    def _delete(name: str, actor: AdminDep, c: ContainerDep) -> Response:
        c.registry.delete(entity, name, actor)
        return Response(status_code=204)


for _entity, _plural in ((Entity.AGENT, "agents"), (Entity.PROFILE, "profiles"), (Entity.RESOURCE, "resources")):
    _entity_routes(_entity, _plural)


@router.get("/admin/tasks/{task_id}")
def get_task(task_id: str, _: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return task_view_body(c.tasks.view(task_id))


@router.post("/admin/tasks/{task_id}/revoke")
def revoke_task(task_id: str, body: RevokeIn, actor: AdminDep, c: ContainerDep) -> dict[str, Any]:
    c.tasks.get(task_id)  # 404 before anything is revoked
    report = c.chain.escalate_task(task_id, detector="admin_revoke", reason=body.reason, actor=actor, steps=[])
    return {"task": task_body(c.tasks.get(task_id)), **revocations_body(report)}


@router.get("/audit")
def audit(
    _: ReadDep,
    c: ContainerDep,
    task_id: str | None = None,
    kind: str | None = None,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict[str, Any]:
    return {
        "items": [
            audit_event_body(e) for e in c.audit.events(task_id=task_id, kind=kind, after_seq=after_seq, limit=limit)
        ]
    }


@router.get("/decisions/{decision_id}")
def explain(decision_id: str, _: QueueReaderDep, c: ContainerDep) -> dict[str, Any]:
    with c.store.read() as conn:
        row = c.store.get_decision(conn, decision_id)
    if row is None:
        raise NotFound(f'decision "{decision_id}" does not exist')
    return decision_body(row, naive_timestamps=c.store.dialect == "sqlite")


@router.get("/admin/policies")
def policies(_: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return c.policy_admin.info()


@router.post("/admin/policies/reload")
def reload_policies(actor: AdminDep, c: ContainerDep) -> JSONResponse:
    """Reload the bundle from its directory. A bad bundle is refused (422, with file, line and
    message for each problem) and the bundle in force stays; both outcomes are audited."""
    result = c.policy_admin.reload(trigger="api", actor=actor)
    return JSONResponse(result, status_code=200 if result.get("ok") else 422)


__all__ = ["TaskState", "router"]
