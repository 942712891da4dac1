"""Agent API (bearer: workload identity JWT)."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from broker.api.deps import AgentDep, ContainerDep, PrincipalDep
from broker.api.limits import ScanGate
from broker.api.presenters import (
    credential_body,
    ended_task_body,
    event_body,
    finding_body,
    leaks_body,
    task_body,
    unwrap_report_body,
)
from broker.api.schemas import CredentialIn, DelegationIn, EventIn, ScanIn, TaskIn
from broker.approvals.waiting import MAX_WAIT_SECONDS
from broker.chain.model import StepKind
from broker.services.free_text import screen

router = APIRouter(prefix="/v1", tags=["agent"])


@router.post("/tasks", status_code=201)
def open_task(body: TaskIn, caller: PrincipalDep, c: ContainerDep) -> dict[str, Any]:
    """Open a task. ``purpose`` and ``on_behalf_of`` are scanned before they are stored: a secret
    in them is stored redacted and reported under ``findings``; a broker-issued one is a leak
    (its task escalates, ``leaks``)."""
    agent = caller.agent
    purpose = screen(c.scanning, c.audit, agent, body.purpose, field="purpose", max_length=4000)
    for_whom = (
        screen(c.scanning, c.audit, agent, body.on_behalf_of, field="on_behalf_of", max_length=512)
        if body.on_behalf_of
        else None
    )
    task = c.tasks.open_task(
        agent,
        body.profile,
        purpose.text,
        for_whom.text if for_whom else None,
        body.lifetime_seconds,
        acting_for=caller.human,
        scope=caller.scope,
    )
    screened = [purpose, *([for_whom] if for_whom else [])]
    return {
        **task_body(task),
        "findings": [finding_body(f, agent.name) for s in screened for f in s.findings],
        "leaks": leaks_body([leak for s in screened for leak in s.leaks]),
    }


@router.post(
    "/tasks/{task_id}/delegations",
    status_code=201,
    responses={
        403: {"description": "widening refused, with the reason"},
        409: {"description": "task ended or quarantined"},
    },
)
def delegate(task_id: str, body: DelegationIn, agent: AgentDep, c: ContainerDep) -> dict[str, Any]:
    """Hand a narrower sub-task to another registered agent. The sub-agent then exchanges its own
    workload identity with ``delegation=<sub-task id>`` for a token bound to that sub-task. The
    ``purpose`` is scanned like a task's (stored redacted; a broker-issued secret escalates)."""
    purpose = screen(c.scanning, c.audit, agent, body.purpose, field="purpose", max_length=4000)
    child = c.tasks.delegate(
        agent,
        task_id,
        to_agent=body.agent,
        actions=body.actions,
        ceiling=body.ceiling,
        lifetime_seconds=body.lifetime_seconds,
        purpose=purpose.text,
    )
    return {
        **task_body(child),
        "findings": [finding_body(f, agent.name) for f in purpose.findings],
        "leaks": leaks_body(purpose.leaks),
    }


@router.get("/tasks/{task_id}")
def get_task(task_id: str, agent: AgentDep, c: ContainerDep) -> dict[str, Any]:
    return task_body(c.tasks.task_for(agent, task_id))


@router.post(
    "/tasks/{task_id}/credentials",
    responses={403: {"description": "denied, with the decision"}, 409: {"description": "task ended or quarantined"}},
)
def request_credential(task_id: str, body: CredentialIn, agent: AgentDep, c: ContainerDep) -> JSONResponse:
    result = c.credentials.request(agent, task_id, body.action, body.resource, body.approval_id)
    payload = credential_body(result)
    status = 202 if payload["credential"] is None else 200
    if result.approval_id:
        payload["approval_id"] = result.approval_id
    return JSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})


@router.get(
    "/tasks/{task_id}/approvals/{approval_id}",
    responses={404: {"description": "no such approval in this agent's task"}},
)
async def approval_status(
    task_id: str,
    approval_id: str,
    agent: AgentDep,
    c: ContainerDep,
    wait: Annotated[
        int, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait while the approval is pending")
    ] = 0,
) -> JSONResponse:
    """The state of a step-up approval of the caller's task: ``pending``, ``approved``, ``denied``,
    ``expired``, ``cancelled`` or ``collected``. With ``wait`` the answer comes as soon as it is no
    longer pending, or after ``wait`` seconds. Not a chain step (never counts toward ``burst``)."""
    task = await to_thread.run_sync(c.tasks.task_for, agent, task_id)
    body = await c.approvals.status(task, approval_id, wait)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/tasks/{task_id}/events", status_code=201, responses={409: {"description": "task ended or quarantined"}})
def report_event(task_id: str, body: EventIn, agent: AgentDep, c: ContainerDep) -> dict[str, Any]:
    """A chain step the agent reports. The text is never stored: its length and fingerprint are.
    A reported tool call runs the chain's sequence detectors (``escalation`` says if it fired)."""
    report = c.events.report(agent, task_id, StepKind(body.kind), body.text, body.action, body.resource)
    return event_body(report, agent.name)


@router.post(
    "/tasks/{task_id}/credentials/{grant_id}/unwrap-failed",
    responses={404: {"description": "no such grant in this task"}},
)
def unwrap_failed(task_id: str, grant_id: str, agent: AgentDep, c: ContainerDep) -> dict[str, Any]:
    """Report that unwrapping a wrapped secret failed. The broker judges why: ``tampered``
    (someone else unwrapped it: audited, task escalated), ``expired``, ``revoked`` or
    ``not_consumed`` (still waiting: retry)."""
    return unwrap_report_body(c.incidents.report_unwrap_failure(agent, task_id, grant_id))


@router.post(
    "/scan",
    response_model=None,
    responses={429: {"description": "rate limited or too many scans queued (Retry-After)"}},
)
async def scan(body: ScanIn, agent: AgentDep, c: ContainerDep, request: Request) -> Response | dict[str, Any]:
    """Scan text for secrets; returns findings and a redacted copy. A broker-issued secret found
    here is an incident: its task is escalated (revoked and quarantined). Scans queue for a
    bounded number of slots; a scan whose client disconnects is cancelled."""
    gate: ScanGate = request.app.state.scan_gate
    outcome = await gate.until_disconnect(request.receive, c.scanning.scan(body.text, source=f"scan:{agent.name}"))
    if outcome is None:  # the client is gone; nobody reads this
        return Response(status_code=499)
    return {
        "findings": [finding_body(f, agent.name) for f in outcome.result.findings],
        "redacted_text": outcome.result.redacted_text,
        "leaks": leaks_body(outcome.leaks),
    }


@router.delete("/tasks/{task_id}")
def end_task(task_id: str, agent: AgentDep, c: ContainerDep) -> dict[str, Any]:
    return ended_task_body(c.tasks.end_task(agent, task_id))
