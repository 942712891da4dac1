"""Approvals and reviews: the queues people act on.

- ``/console/approvals``: the pending list (live over SSE, ``/console/approvals/events``) and the
  recently decided ones; ``/console/approvals/{id}``: the whole context and approve / deny with a
  required reason. The signed-in person's own agents' requests are shown with the button
  disabled; the approval service refuses such a vote anyway (four-eyes on authenticated subjects).
- ``/console/reviews``: the post-action queue; ``/console/reviews/{id}``: mark fine or flag (a flag
  escalates the task: every grant revoked, the task quarantined).

Reading needs one of admin, auditor, approver, reviewer; approving needs ``approver``, reviewing
``reviewer`` — checked by the server on every post (an auditor changes nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Final

import anyio.to_thread
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from broker.api.console.session import (
    FormDep,
    ReaderDep,
    error_of,
    render,
    session_cookie,
    source,
    templates,
)
from broker.api.console.views import own_request, pending_first, request_context
from broker.approvals.model import Approval, ApprovalState, ReviewState
from broker.container import Container
from broker.errors import BrokerError
from broker.people.model import Caller, Role

router = APIRouter(prefix="/console")
ApprovalId = Annotated[str, Path(pattern=r"^apr_[0-9a-f]{32}$")]
ReviewId = Annotated[str, Path(pattern=r"^rev_[0-9a-f]{32}$")]
POLL_SECONDS: Final = 1.0  # the store is polled: every replica sees every approval (SSE is per replica)
SESSION_CHECK_SECONDS: Final = 20.0
STREAM_SECONDS: Final = 300.0  # then the browser reconnects (EventSource does by itself)
RECENT: Final = 50


def _c(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


# -- approvals -------------------------------------------------------------------------------------
def _rows(c: Container, caller: Caller) -> list[dict[str, object]]:
    c.approvals.expire_due()
    pending = c.approvals.list(ApprovalState.PENDING, 500)
    return [{"a": a, "own": own_request(c, caller, a.agent)} for a in pending_first(pending)]


def _recent(c: Container) -> list[Approval]:
    items = [a for a in c.approvals.list(None, 5000) if a.state is not ApprovalState.PENDING]
    return sorted(items, key=lambda a: a.created_at, reverse=True)[:RECENT]


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, session: ReaderDep) -> HTMLResponse:
    c = _c(request)
    return render(
        request,
        "approvals.html",
        session=session,
        active="approvals",
        rows=_rows(c, session.caller),
        recent=_recent(c),
    )


@router.get("/approvals/events")
async def approval_events(request: Request, session: ReaderDep) -> StreamingResponse:
    """Server-sent events: ``event: approvals`` with the rendered rows of the pending list, each time
    it changes (and once at the start)."""
    c = _c(request)
    raw = session_cookie(request)
    fragment = templates.get_template("_approval_rows.html")

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last: tuple[tuple[str, str], ...] | None = None
        started = checked = time.monotonic()
        while time.monotonic() - started < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            if time.monotonic() - checked > SESSION_CHECK_SECONDS:
                checked = time.monotonic()
                if await anyio.to_thread.run_sync(c.console_sessions.resume, raw) is None:
                    yield "event: signed-out\ndata: signed out\n\n"
                    return
            rows = await anyio.to_thread.run_sync(_rows, c, session.caller)
            key = tuple((str(r["a"].approval_id), str(r["own"])) for r in rows)  # type: ignore[attr-defined]
            if key != last:
                last = key
                html = fragment.render(rows=rows, csrf_token=session.csrf_token)
                data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
                yield f"event: approvals\n{data}\n"
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.get("/approvals/{approval_id}", response_class=HTMLResponse)
def approval(request: Request, approval_id: ApprovalId, session: ReaderDep) -> HTMLResponse:
    c = _c(request)
    c.approvals.expire_due()
    try:
        a = c.approvals.view(approval_id)
    except BrokerError as exc:
        raise error_of(exc, session) from None
    ctx = request_context(c, task_id=a.task_id, decision_id=a.decision_id, action=a.action, resource=a.resource)
    return render(
        request,
        "approval.html",
        session=session,
        active="approvals",
        a=a,
        ctx=ctx,
        own=own_request(c, session.caller, a.agent),
        can_vote=Role.APPROVER in session.caller.roles,
    )


async def _vote(request: Request, approval_id: str, form: FormDep, verb: str) -> RedirectResponse:
    c = _c(request)
    reason = form.text("reason", required=True)
    caller = form.session.caller

    def act() -> None:
        c.people.require(caller, [Role.APPROVER], source=source(request))
        if verb == "approve":
            c.approvals.approve(approval_id, caller, reason)
        else:
            c.approvals.deny(approval_id, caller, reason)

    try:
        await anyio.to_thread.run_sync(act)
    except BrokerError as exc:
        raise error_of(exc, form.session) from None
    return RedirectResponse(f"/console/approvals/{approval_id}", status_code=303)


@router.post("/approvals/{approval_id}/approve")
async def approve(request: Request, approval_id: ApprovalId, form: FormDep) -> RedirectResponse:
    return await _vote(request, approval_id, form, "approve")


@router.post("/approvals/{approval_id}/deny")
async def deny(request: Request, approval_id: ApprovalId, form: FormDep) -> RedirectResponse:
    return await _vote(request, approval_id, form, "deny")


# -- reviews ---------------------------------------------------------------------------------------
@router.get("/reviews", response_class=HTMLResponse)
def reviews(request: Request, session: ReaderDep) -> HTMLResponse:
    c = _c(request)
    pending = c.reviews.list(ReviewState.PENDING, None, 500)
    done = [r for r in c.reviews.list(None, None, 5000) if r.state is not ReviewState.PENDING]
    return render(
        request,
        "reviews.html",
        session=session,
        active="reviews",
        pending=[{"r": r, "own": own_request(c, session.caller, r.agent)} for r in pending],
        done=sorted(done, key=lambda r: r.created_at, reverse=True)[:RECENT],
    )


@router.get("/reviews/{review_id}", response_class=HTMLResponse)
def review(request: Request, review_id: ReviewId, session: ReaderDep) -> HTMLResponse:
    c = _c(request)
    try:
        r = c.reviews.get(review_id)
    except BrokerError as exc:
        raise error_of(exc, session) from None
    ctx = request_context(c, task_id=r.task_id, decision_id=r.decision_id, action=r.action, resource=r.resource)
    return render(
        request,
        "review.html",
        session=session,
        active="reviews",
        r=r,
        ctx=ctx,
        own=own_request(c, session.caller, r.agent),
        can_review=Role.REVIEWER in session.caller.roles,
    )


async def _resolve(request: Request, review_id: str, form: FormDep, verb: str) -> RedirectResponse:
    c = _c(request)
    reason = form.text("reason", required=True)
    caller = form.session.caller

    def act() -> None:
        c.people.require(caller, [Role.REVIEWER], source=source(request))
        if verb == "fine":
            c.reviews.mark_fine(review_id, caller, reason)
        else:
            c.reviews.flag(review_id, caller, reason)

    try:
        await anyio.to_thread.run_sync(act)
    except BrokerError as exc:
        raise error_of(exc, form.session) from None
    return RedirectResponse(f"/console/reviews/{review_id}", status_code=303)


@router.post("/reviews/{review_id}/fine")
async def mark_fine(request: Request, review_id: ReviewId, form: FormDep) -> RedirectResponse:
    return await _resolve(request, review_id, form, "fine")


@router.post("/reviews/{review_id}/flag")
async def flag(request: Request, review_id: ReviewId, form: FormDep) -> RedirectResponse:
    return await _resolve(request, review_id, form, "flag")
