"""Who is signed in to the console, what they may do, and the CSRF check of every form.

Dependencies for console routes (``pages`` builds on these names; keep them stable):

- :func:`console_session` → :class:`~broker.people.sessions.ConsoleSession` (the signed-in person
  as a :class:`~broker.people.model.Caller`, the session's CSRF token, its expiry);
- :func:`console_caller` → ``Caller``; :func:`console_person` → ``Person``;
- :func:`requires_role` ``(*roles)`` → a dependency giving the ``ConsoleSession`` when the person
  has one of the roles (403 page and an ``auth.forbidden`` audit event otherwise);
  :data:`READERS` are the roles that may read the console (admin, auditor, approver, reviewer);
- :func:`csrf_form` → :class:`ConsoleForm`: the posted form, after its ``csrf_token`` field was
  compared (constant time) with the session's token; 403 otherwise. Every state-changing route
  takes it.

Without a session a GET is redirected to ``/console/login?next=<path>``; anything else is a 401
page. Errors are pages (:class:`ConsoleError`), never the API's JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote

import anyio.to_thread
import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from broker.api.limits import note_auth_failure
from broker.container import Container
from broker.errors import BrokerError
from broker.logging import get_logger
from broker.people.model import Caller, Person, Role
from broker.people.service import RoleRequired
from broker.people.sessions import ConsoleSession

log = get_logger("nhi-broker.console")
HERE: Final = Path(__file__).parent
# autoescape everything (not only *.html): a person's data is never markup
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
)
templates.env.filters["factor"] = lambda v: _factor_text(v)
templates.env.filters["scope"] = lambda v: _scope_text(v)
READERS: Final = (Role.ADMIN, Role.AUDITOR, Role.APPROVER, Role.REVIEWER)
MAX_FIELD: Final = 4000
NAV: Final = (
    ("approvals", "Approvals", "/console/approvals"),
    ("reviews", "Reviews", "/console/reviews"),
    ("tasks", "Tasks", "/console/tasks"),
    ("decisions", "Decisions", "/console/decisions"),
    ("findings", "Findings", "/console/findings"),
    ("audit", "Audit", "/console/audit"),
)


def _factor_text(value: Any) -> str:
    """A risk factor as a person reads it: ``financial (+3)``."""
    if isinstance(value, dict) and "weight" in value:
        return f"{value.get('value')} (+{value['weight']})"
    return str(value)


def _scope_text(value: Any) -> str:
    """A resource binding's setting, flattened: ``policies: nhi-prod-payments``."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_scope_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_scope_text(v) for v in value)
    return str(value)


class ConsoleError(Exception):
    """A refusal shown as a page: ``status``, a short ``title`` and what to do about it."""

    def __init__(self, status: int, title: str, message: str, session: ConsoleSession | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.session = session


class SignInRequired(Exception):
    pass


def cookie_names(c: Container) -> tuple[str, str]:
    """The session cookie and the sign-in cookie. ``__Host-`` (Secure, Path=/, no Domain) when
    the cookies are Secure."""
    if c.settings.console.cookie_secure:
        return "__Host-nhi_console", "__Host-nhi_console_login"
    return "nhi_console", "nhi_console_login"


def _container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def source(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def session_cookie(request: Request) -> str | None:
    return request.cookies.get(cookie_names(_container(request))[0])


def console_session(request: Request) -> ConsoleSession:
    """The signed-in person's live session (idle and absolute timeouts checked, activity noted)."""
    cached = request.scope.get("state", {}).get("console_session")
    if isinstance(cached, ConsoleSession):
        return cached
    found = _container(request).console_sessions.resume(session_cookie(request))
    if found is None:
        raise SignInRequired()
    request.scope.setdefault("state", {})["console_session"] = found
    return found


SessionDep = Annotated[ConsoleSession, Depends(console_session)]


def console_caller(session: SessionDep) -> Caller:
    return session.caller


def console_person(session: SessionDep) -> Person:
    assert session.caller.person is not None  # a console session is always a person's
    return session.caller.person


def requires_role(*roles: Role) -> Callable[..., ConsoleSession]:
    """A dependency: the session, when its person has one of ``roles`` (403 page, audited, otherwise)."""

    def dependency(request: Request, session: SessionDep) -> ConsoleSession:
        try:
            _container(request).people.require(session.caller, roles, source=source(request))
        except RoleRequired as exc:
            raise ConsoleError(403, "Not allowed", exc.message, session) from None
        return session

    dependency.__name__ = "console_requires_" + "_or_".join(r.value for r in roles)
    return dependency


ReaderDep = Annotated[ConsoleSession, Depends(requires_role(*READERS))]


@dataclass(frozen=True, slots=True)
class ConsoleForm:
    """A posted form whose CSRF token matched the session."""

    session: ConsoleSession
    fields: Mapping[str, str]

    def text(self, name: str, *, required: bool = False, max_length: int = 2000) -> str:
        value = self.fields.get(name, "").strip()
        if required and not value:
            raise ConsoleError(422, "Missing field", f"{name}: required", self.session)
        if len(value) > max_length:
            raise ConsoleError(422, "Field too long", f"{name}: at most {max_length} characters", self.session)
        return value


async def csrf_form(request: Request) -> ConsoleForm:
    """The form of a state-changing request, after the CSRF check (403 page when it fails)."""
    c = _container(request)
    raw = session_cookie(request)
    form = await request.form(max_files=0, max_fields=20, max_part_size=MAX_FIELD * 4)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    # the session first: a post without a session is a 401 page, not a CSRF hint
    session = await _resume(request, raw)
    if not c.console_sessions.csrf_ok(raw, fields.get("csrf_token")):
        note_auth_failure(request.scope)  # counts against the address like a bad bearer token
        c.audit.record(
            "auth.forbidden",
            actor=session.caller.actor,
            outcome="denied",
            data={"source": source(request), "reason": "csrf token missing or wrong", "surface": "console"},
        )
        raise ConsoleError(
            403, "Form refused", "this form has no valid CSRF token (reload the page and try again)", session
        )
    return ConsoleForm(session=session, fields=fields)


async def _resume(request: Request, raw: str | None) -> ConsoleSession:
    found = await anyio.to_thread.run_sync(_container(request).console_sessions.resume, raw)
    if found is None:
        raise SignInRequired()
    request.scope.setdefault("state", {})["console_session"] = found
    return found


FormDep = Annotated[ConsoleForm, Depends(csrf_form)]


def render(
    request: Request,
    template: str,
    *,
    session: ConsoleSession | None,
    active: str = "",
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page: ``template`` extends ``base.html``, which gets the signed-in person (``me``), the
    form token (``csrf_token``), the navigation and the active section."""
    me = session.caller if session is not None else None
    return templates.TemplateResponse(
        request,
        template,
        {
            "me": me,
            "roles": sorted(r.value for r in me.roles) if me is not None else [],
            "csrf_token": session.csrf_token if session is not None else "",
            "session": session,
            "nav": NAV,
            "active": active,
            **context,
        },
        status_code=status,
    )


def install_handlers(app: FastAPI) -> None:
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        if request.method == "GET" and request.headers.get("accept", "") != "text/event-stream":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)
        return render(
            request,
            "error.html",
            session=None,
            status=401,
            title="Signed out",
            message="You are not signed in, or your session ended. Sign in again.",
        )

    @app.exception_handler(ConsoleError)
    async def _console_error(request: Request, exc: ConsoleError) -> Response:
        return render(
            request, "error.html", session=exc.session, status=exc.status, title=exc.title, message=exc.message
        )


def error_of(exc: BrokerError, session: ConsoleSession) -> ConsoleError:
    """A service refusal as a console page, with the service's status and message."""
    titles = {401: "Not signed in", 403: "Refused", 404: "Not found", 409: "No longer open", 422: "Invalid input"}
    return ConsoleError(exc.status_code, titles.get(exc.status_code, "Error"), exc.message, session)
