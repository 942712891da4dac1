"""Admin API for managed static secrets (bearer: admin token). Values never cross this API:
bodies and answers carry locations, settings, fingerprints and state only.

- ``PUT /v1/admin/managed-secrets/{name}`` — register or replace (201 created, 200 replaced)
- ``GET /v1/admin/managed-secrets`` / ``GET /v1/admin/managed-secrets/{name}``
- ``DELETE /v1/admin/managed-secrets/{name}`` — stop managing (204; values stay where they are)
- ``POST /v1/admin/managed-secrets/{name}/rotate`` — run one rotation now: 200 with the result,
  or 502 ``rotation_failed`` (the old value stays in force) with the result under ``rotation``
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from broker.api.deps import AdminDep, ContainerDep, ReadDep
from broker.api.schemas import NAME, TEN_YEARS, Strict
from broker.container import Container
from broker.errors import BrokerError
from rotation.service import RotationService

router = APIRouter(prefix="/v1/admin", tags=["rotation"])
Name = Annotated[str, Path(pattern=NAME, description="lower-case name: a-z 0-9 . _ -")]


class KvLocation(Strict):
    mount: str = Field(description="KV v2 mount, e.g. secret")
    path: str = Field(description="path under the mount that consumers read, e.g. apps/billing/db")


class ManagedSecretIn(Strict):
    kind: Literal["kv_generated", "postgres_password", "database_root", "aws_iam_key"]
    kv: KvLocation | None = Field(default=None, description="where consumers read the value (not for database_root)")
    settings: dict[str, Any] = Field(default_factory=dict, description="kind-specific; see docs/rotation.md")
    max_age_seconds: int | None = Field(
        default=None, ge=60, le=TEN_YEARS, description="rotate when older (60 s to 10 years); null: only on demand"
    )
    overlap_seconds: int = Field(default=0, ge=0, le=30 * 86400, description="old value kept valid this long")


class RotateIn(Strict):
    reason: str = Field(
        default="manual",
        pattern=r"^[a-z_]{1,32}$",
        description='why: "manual", "leak" (retires the old value at once), ...',
    )


class RotationFailed(BrokerError):
    status_code = 502
    code = "rotation_failed"


def _service(c: Container) -> RotationService:
    return c.rotation


def view(secret: Any) -> dict[str, Any]:
    try:  # a row stored before max_age_seconds was bounded must not make the list answer 500
        next_at = (
            secret.rotated_at + timedelta(seconds=secret.max_age_seconds)
            if secret.max_age_seconds and secret.rotated_at
            else None
        )
    except OverflowError:
        next_at = None
    return {
        "name": secret.name,
        "kind": secret.kind.value,
        "kv": {"mount": secret.kv_mount, "path": secret.kv_path} if secret.kv_mount else None,
        "settings": dict(secret.settings),
        "max_age_seconds": secret.max_age_seconds,
        "overlap_seconds": secret.overlap_seconds,
        "state": secret.state.value,
        "fingerprints": {
            "current": list(secret.fingerprints_current),
            "previous": list(secret.fingerprints_previous),
        },
        "current": dict(secret.current_ref),
        "previous": (
            {"ref": dict(secret.previous_ref or {}), "retire_at": secret.retire_at.isoformat()}
            if secret.retire_at
            else None
        ),
        "rotated_at": secret.rotated_at.isoformat() if secret.rotated_at else None,
        "next_rotation_at": next_at.isoformat() if next_at else None,
        "last_error": secret.last_error,
    }


@router.put("/managed-secrets/{name}")
def put_managed_secret(name: Name, body: ManagedSecretIn, actor: AdminDep, c: ContainerDep) -> JSONResponse:
    secret, created = _service(c).put(
        name,
        body.kind,
        body.settings,
        kv_mount=body.kv.mount if body.kv else None,
        kv_path=body.kv.path if body.kv else None,
        max_age_seconds=body.max_age_seconds,
        overlap_seconds=body.overlap_seconds,
        actor=actor,
    )
    return JSONResponse(view(secret), status_code=201 if created else 200)


@router.get("/managed-secrets")
def list_managed_secrets(_: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return {"items": [view(s) for s in _service(c).all()]}


@router.get("/managed-secrets/{name}")
def get_managed_secret(name: Name, _: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return view(_service(c).get(name))


@router.delete("/managed-secrets/{name}", status_code=204)
def delete_managed_secret(name: Name, actor: AdminDep, c: ContainerDep) -> Response:
    _service(c).delete(name, actor=actor)
    return Response(status_code=204)


@router.post("/managed-secrets/{name}/rotate")
def rotate_managed_secret(name: Name, actor: AdminDep, c: ContainerDep, body: RotateIn | None = None) -> dict[str, Any]:
    result = _service(c).rotate(name, reason=(body or RotateIn()).reason, actor=actor)
    if not result.ok:
        raise RotationFailed(
            f'rotation of "{name}" failed at {result.failed_step}: {result.error}; the old value stays in force',
            details={"rotation": result.to_dict()},
        )
    return dict(result.to_dict())
