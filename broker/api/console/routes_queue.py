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
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final

import anyio.to_thread
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from broker.api.console.session import (
    ConsoleError,
    ConsoleForm,
    FormDep,
    ReaderDep,
    error_of,
    render,
    session_cookie,
    source,
    templates,
)
from broker.api.console.views import own_request, pending_first, request_context
from broker.approvals.model import Approval, ApprovalState, Review, ReviewState
from broker.approvals.waiting import MAX_WAIT_SECONDS
from broker.container import Container
from broker.errors import BrokerError
from broker.people.model import Caller, Role
from broker.people.sessions import ConsoleSession

router = APIRouter(prefix="/console", include_in_schema=False)
ApprovalId = Annotated[str, Path(pattern=r"^apr_[0-9a-f]{32}$")]
ReviewId = Annotated[str, Path(pattern=r"^rev_[0-9a-f]{32}$")]
POLL_SECONDS: Final = 1.0  # the store is polled: every replica sees every approval (SSE is per replica)
SESSION_CHECK_SECONDS: Final = 10.0
# then the browser reconnects (EventSource does by itself): as short as the agents' long-poll
# (MAX_WAIT_SECONDS), so a stopping server never waits longer for an open page than for an agent
STREAM_SECONDS: Final = float(MAX_WAIT_SECONDS)
RECENT: Final = 50
# open live streams per session and process: each polls the store once a second, so a session
# (or a stolen cookie) must not be able to open hundreds; a few tabs are plenty
MAX_STREAMS_PER_SESSION: Final = 4


class StreamSlots:
    """Counts the open approval streams of each session (by its CSRF token, an HMAC of its id)."""

    def __init__(self, per_session: int = MAX_STREAMS_PER_SESSION) -> None:
        self.per_session = per_session
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        with self._lock:
            if self._open.get(key, 0) >= self.per_session:
                return False
            self._open[key] = self._open.get(key, 0) + 1
            return True

    def give_back(self, key: str) -> None:
        with self._lock:
            left = self._open.get(key, 0) - 1
            if left > 0:
                self._open[key] = left
            else:
                self._open.pop(key, None)


STREAMS: Final = StreamSlots()


def _c(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


# -- approvals -------------------------------------------------------------------------------------
def _rows(c: Container, caller: Caller) -> list[dict[str, object]]:
    pending = c.approvals.list(ApprovalState.PENDING, 500)  # expires what is due first
    own = {agent: own_request(c, caller, agent) for agent in {a.agent for a in pending}}
    return [{"a": a, "own": own[a.agent]} for a in pending_first(pending)]


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
    slot = session.csrf_token
    if not STREAMS.take(slot):
        raise ConsoleError(
            429, "Too many live pages", f"at most {STREAMS.per_session} live approval pages per session", session
        )

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

    return _SlotStream(
        stream(),
        release=lambda: STREAMS.give_back(slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


class _SlotStream(StreamingResponse):
    """A stream that gives its session's slot back however it ends (done, disconnect, shutdown)."""

    def __init__(self, content: AsyncIterator[str], *, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


@router.get("/approvals/{approval_id}", response_class=HTMLResponse)
def approval(request: Request, approval_id: ApprovalId, session: ReaderDep) -> HTMLResponse:
    c = _c(request)
    c.approvals.expire_due()
    return _detail(request, session, "approval", lambda: c.approvals.view(approval_id), Role.APPROVER)


@router.post("/approvals/{approval_id}/approve")
async def approve(request: Request, approval_id: ApprovalId, form: FormDep) -> RedirectResponse:
    return await _act(request, form, Role.APPROVER, _c(request).approvals.approve, approval_id)


@router.post("/approvals/{approval_id}/deny")
async def deny(request: Request, approval_id: ApprovalId, form: FormDep) -> RedirectResponse:
    return await _act(request, form, Role.APPROVER, _c(request).approvals.deny, approval_id)


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
    return _detail(request, session, "review", lambda: _c(request).reviews.get(review_id), Role.REVIEWER)


@router.post("/reviews/{review_id}/fine")
async def mark_fine(request: Request, review_id: ReviewId, form: FormDep) -> RedirectResponse:
    return await _act(request, form, Role.REVIEWER, _c(request).reviews.mark_fine, review_id)


@router.post("/reviews/{review_id}/flag")
async def flag(request: Request, review_id: ReviewId, form: FormDep) -> RedirectResponse:
    return await _act(request, form, Role.REVIEWER, _c(request).reviews.flag, review_id)


# -- one approval or review: its page, and acting on it --------------------------------------------
def _detail(
    request: Request, session: ConsoleSession, kind: str, read: Callable[[], Approval | Review], role: Role
) -> HTMLResponse:
    """``approval.html`` / ``review.html`` with the item as ``item``, its context, whether it is the
    signed-in person's own agent's, and whether their role lets them act."""
    c = _c(request)
    try:
        item = read()
    except BrokerError as exc:
        raise error_of(exc, session) from None
    ctx = request_context(
        c, task_id=item.task_id, decision_id=item.decision_id, action=item.action, resource=item.resource
    )
    return render(
        request,
        f"{kind}.html",
        session=session,
        active=f"{kind}s",
        item=item,
        ctx=ctx,
        own=own_request(c, session.caller, item.agent),
        can_act=role in session.caller.roles,
    )


async def _act(
    request: Request, form: ConsoleForm, role: Role, action: Callable[[str, Caller, str], object], item_id: str
) -> RedirectResponse:
    """Approve, deny, mark fine or flag, as the signed-in person, with the form's required reason.
    The role is checked here (403 page, audited); four-eyes and the state by the service."""
    c = _c(request)
    reason = form.text("reason", required=True)
    caller = form.session.caller

    def act() -> None:
        c.people.require(caller, [role], source=source(request))
        action(item_id, caller, reason)

    try:
        await anyio.to_thread.run_sync(act)
    except BrokerError as exc:
        raise error_of(exc, form.session) from None
    return RedirectResponse(str(request.url.path).rsplit("/", 1)[0], status_code=303)
