"""Admin API for people, their roles and their API tokens; ``/v1/people/me`` for anyone signed in.

Writes need the ``admin`` role (or the admin token, audited as ``admin-token``); reads ``admin``
or ``auditor``. A token's secret is in the creation answer only (``Cache-Control: no-store``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from broker.api.deps import AdminCallerDep, ContainerDep, ReadDep, caller
from broker.api.schemas import NAME, Strict
from broker.people.model import Caller, PersonIdentity, Role

router = APIRouter(prefix="/v1", tags=["people"])
Name = Annotated[str, Path(pattern=NAME, description="lower-case name: a-z 0-9 . _ -")]
TokenIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$")]


class PersonIdentityIn(Strict):
    issuer: str = Field(min_length=1, max_length=512, description="a configured human issuer")
    subject: str = Field(min_length=1, max_length=512)


class PersonIn(Strict):
    display_name: str = Field(default="", max_length=256)
    roles: list[Role] = Field(default=[], max_length=4, description="admin, approver, reviewer, auditor")
    identities: list[PersonIdentityIn] = Field(
        default=[], max_length=10, description="OIDC identities the person signs in with"
    )
    disabled: bool = False


class TokenIn(Strict):
    ttl_seconds: int = Field(default=30 * 86400, ge=60, description="lifetime; at most person_token_max_ttl_seconds")
    description: str = Field(default="", max_length=256)


@router.put("/admin/people/{name}")
def put_person(name: Name, body: PersonIn, who: AdminCallerDep, c: ContainerDep) -> JSONResponse:
    view, created = c.people.put(
        name,
        display_name=body.display_name,
        roles=body.roles,
        identities=[PersonIdentity(i.issuer, i.subject) for i in body.identities],
        disabled=body.disabled,
        actor=who,
    )
    return JSONResponse(view, status_code=201 if created else 200)


@router.get("/admin/people")
def list_people(_: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return {"items": c.people.list_people()}


@router.get("/admin/people/{name}")
def get_person(name: Name, _: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return c.people.get(name).to_dict()


@router.delete("/admin/people/{name}", status_code=204)
def delete_person(name: Name, who: AdminCallerDep, c: ContainerDep) -> Response:
    """The person and their identities; their tokens are revoked."""
    c.people.delete(name, who)
    return Response(status_code=204)


@router.post("/admin/people/{name}/tokens", status_code=201)
def create_token(name: Name, body: TokenIn, who: AdminCallerDep, c: ContainerDep) -> JSONResponse:
    """A new API token for the person. ``token`` is shown here once and never again."""
    secret, view = c.people.create_token(name, ttl_seconds=body.ttl_seconds, description=body.description, actor=who)
    return JSONResponse(
        {**view, "token": secret.reveal()}, status_code=201, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


@router.get("/admin/people/{name}/tokens")
def list_tokens(name: Name, _: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return {"items": c.people.list_tokens(name)}


@router.delete("/admin/people/{name}/tokens/{token_id}")
def revoke_token(name: Name, token_id: TokenIdPath, who: AdminCallerDep, c: ContainerDep) -> dict[str, Any]:
    return c.people.revoke_token(name, token_id, who)


@router.get("/people/me")
def me(who: Annotated[Caller, Depends(caller)]) -> dict[str, Any]:
    """Who the broker takes the caller for, and their roles."""
    return {
        "actor": who.actor,
        "subject": who.to_dict(),
        "roles": sorted(r.value for r in who.roles),
        "person": who.person.to_dict() if who.person is not None else None,
    }
