"""Tasks and decisions: read-only pages every console role may open.

- ``/console/tasks``: active and recent tasks, filtered by state (``active``, ``ended``,
  ``quarantined``, ``all``) and agent, newest first, paged;
- ``/console/tasks/{id}``: the task's chain as a timeline (decisions with their grants, events,
  escalations with the revocations they queued and when the backend confirmed each, approvals,
  reviews), the task it was delegated from and its delegation tree;
- ``/console/decisions``: recent decisions (by outcome and agent) and a lookup by id;
- ``/console/decisions/{id}``: the explain view (inputs, factors, matched policies, bundle hash,
  chain detection before or after issuance, what it issued and opened).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from broker.api.console import formatting
from broker.api.console.query import NAME, checked, container, member, refusals_as_pages
from broker.api.console.session import ReaderDep, render, templates
from broker.api.console.views_decisions import DECISION_ID, decision_explain, decision_page
from broker.api.console.views_tasks import TaskFilter, flatten, task_page, task_timeline
from broker.models import Outcome

router = APIRouter(prefix="/console", include_in_schema=False)
formatting.register(templates.env)
# an unknown or malformed id is a 404 page (not the API's JSON 422): the views look it up
TaskId = Annotated[str, Path(max_length=64)]
DecisionId = Annotated[str, Path(max_length=64)]
Text = Annotated[str | None, Query(max_length=256)]
AGENT = "an agent name (a-z 0-9 . _ -)"


@router.get("/tasks", response_class=HTMLResponse)
def tasks(
    request: Request, session: ReaderDep, state: Text = None, agent: Text = None, before: Text = None
) -> Response:
    with refusals_as_pages(session):
        page = task_page(
            container(request),
            state=member("state", state, TaskFilter) or TaskFilter.ALL,
            agent=checked("agent", agent, NAME, AGENT),
            before=before or None,
        )
    return render(request, "tasks.html", session=session, active="tasks", page=page, filters=list(TaskFilter))


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task(request: Request, task_id: TaskId, session: ReaderDep) -> Response:
    with refusals_as_pages(session):
        timeline = task_timeline(container(request), task_id)
    return render(request, "task.html", session=session, active="tasks", t=timeline, tree=flatten(timeline.delegations))


@router.get("/decisions", response_class=HTMLResponse)
def decisions(
    request: Request,
    session: ReaderDep,
    id: Text = None,  # the lookup box
    outcome: Text = None,
    agent: Text = None,
    before: Text = None,
) -> Response:
    with refusals_as_pages(session):
        if id:
            wanted = checked("id", id.strip(), DECISION_ID, "a decision id: dec_ and 32 hex digits")
            return RedirectResponse(f"/console/decisions/{wanted}", status_code=303)
        page = decision_page(
            container(request),
            outcome=member("outcome", outcome, Outcome),
            agent=checked("agent", agent, NAME, AGENT),
            before=before or None,
        )
    return render(request, "decisions.html", session=session, active="decisions", page=page, outcomes=list(Outcome))


@router.get("/decisions/{decision_id}", response_class=HTMLResponse)
def decision(request: Request, decision_id: DecisionId, session: ReaderDep) -> Response:
    with refusals_as_pages(session):
        explained = decision_explain(container(request), decision_id)
    return render(request, "decision.html", session=session, active="decisions", d=explained)
