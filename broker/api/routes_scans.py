"""Scheduled leak scans (admin bearer): scan jobs and their findings. Thin: parse, call, map."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from broker.api.deps import AdminDep, ContainerDep, ReadDep
from broker.api.presenters import run_summary_body, scan_job_body, scan_run_body, stored_finding_body
from broker.api.schemas import NAME, Strict
from broker.container import Container
from broker.services.scan_jobs import ScanJobService
from scanners.jobs.spec import ScanJobIn

router = APIRouter(prefix="/v1", tags=["scans"])
JobName = Annotated[str, Path(pattern=NAME, max_length=128, description="lower-case name: a-z 0-9 . _ -")]
Status = Literal["open", "resolved", "false_positive", "revoked", "rotated"]


class FindingStatusIn(Strict):
    status: Literal["open", "resolved", "false_positive"]
    note: str = Field(default="", max_length=500)


def _service(c: Container) -> ScanJobService:
    return c.scan_jobs


def _naive(c: Container) -> bool:
    return c.store.dialect == "sqlite"  # see presenters.scan_job_body


@router.put("/admin/scan-jobs/{name}")
def put_scan_job(name: JobName, body: ScanJobIn, actor: AdminDep, c: ContainerDep) -> JSONResponse:
    """Create or replace a scan job (201 created, 200 replaced). ``source`` may be left out to
    keep the existing job's source (e.g. ``{"schedule": {"cron": "0 * * * *"}}``)."""
    job, created = _service(c).put_job(name, body, actor)
    return JSONResponse(scan_job_body(job, naive_timestamps=_naive(c)), status_code=201 if created else 200)


@router.get("/admin/scan-jobs")
def list_scan_jobs(_: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return {"items": [scan_job_body(j, naive_timestamps=_naive(c)) for j in _service(c).list_jobs()]}


@router.get("/admin/scan-jobs/{name}")
def get_scan_job(name: JobName, _: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return scan_job_body(_service(c).get_job(name), naive_timestamps=_naive(c))


@router.delete("/admin/scan-jobs/{name}", status_code=204)
def delete_scan_job(name: JobName, actor: AdminDep, c: ContainerDep) -> Response:
    _service(c).delete_job(name, actor)
    return Response(status_code=204)


@router.post("/admin/scan-jobs/{name}/run")
def run_scan_job(name: JobName, _: AdminDep, c: ContainerDep) -> dict[str, Any]:
    """Run the job now and answer with the run (409 while it is running, here or on a replica)."""
    return run_summary_body(_service(c).run_now(name))


@router.get("/admin/scan-jobs/{name}/runs")
def scan_job_runs(
    name: JobName, _: ReadDep, c: ContainerDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    return {"items": [scan_run_body(r) for r in _service(c).runs(name, limit)]}


@router.get("/findings")
def list_findings(
    _: ReadDep,
    c: ContainerDep,
    status: Status | None = None,
    job: Annotated[str | None, Query(pattern=NAME, max_length=128)] = None,
    rule: Annotated[str | None, Query(max_length=128)] = None,
    source: Literal["files", "git", "s3", "openbao_kv"] | None = None,
    fingerprint: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    items = _service(c).findings.list(
        status=status, job=job, rule=rule, source=source, fingerprint=fingerprint, since=since, limit=limit
    )
    return {"items": [stored_finding_body(f) for f in items]}


@router.get("/findings/{finding_id}")
def get_finding(finding_id: Annotated[str, Path(max_length=64)], _: ReadDep, c: ContainerDep) -> dict[str, Any]:
    return stored_finding_body(_service(c).findings.get(finding_id))


@router.patch("/findings/{finding_id}")
def triage_finding(
    finding_id: Annotated[str, Path(max_length=64)], body: FindingStatusIn, actor: AdminDep, c: ContainerDep
) -> dict[str, Any]:
    return stored_finding_body(_service(c).findings.set_status(finding_id, body.status, actor=actor, note=body.note))
