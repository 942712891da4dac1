"""Findings and audit: read-only, filterable, paged lists every console role may open.

- ``/console/findings``: scheduled scans' findings (never the secret: rule, where, the keyed
  fingerprint, a redacted excerpt), filtered by status, job, rule and source, last seen first;
- ``/console/audit``: the audit trail, newest first, filtered by kind, task and actor, with the
  chain's verification status (:class:`broker.audit.reading.AuditReader`): intact, or broken and
  at which event.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from broker.api.console import formatting
from broker.api.console.query import container, refusals_as_pages
from broker.api.console.session import ReaderDep, render, templates
from broker.api.console.views_records import (
    AuditFilters,
    FindingFilters,
    FindingSource,
    audit_page,
    finding_page,
)
from broker.models import FindingStatus

router = APIRouter(prefix="/console", include_in_schema=False)
formatting.register(templates.env)
Text = Annotated[str | None, Query(max_length=256)]


@router.get("/findings", response_class=HTMLResponse)
def findings(
    request: Request,
    session: ReaderDep,
    status: Text = None,
    job: Text = None,
    rule: Text = None,
    source: Text = None,
    before: Text = None,
) -> Response:
    with refusals_as_pages(session):
        filters = FindingFilters.parse(status=status, job=job, rule=rule, source=source)
        page = finding_page(container(request), filters, before=before or None)
    return render(
        request,
        "findings.html",
        session=session,
        active="findings",
        page=page,
        statuses=list(FindingStatus),
        sources=list(FindingSource),
    )


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    session: ReaderDep,
    kind: Text = None,
    task_id: Text = None,
    actor: Text = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    with refusals_as_pages(session):
        filters = AuditFilters.parse(kind=kind, task_id=task_id, actor=actor)
        page = audit_page(container(request), filters, before=before)
    return render(request, "audit.html", session=session, active="audit", page=page)
