"""Sign-in (OIDC authorization code + PKCE), sign-out, and the console's front door.

``GET /console/login`` starts the flow: a fresh ``state``, ``nonce`` and PKCE verifier, sealed
(HMAC, timestamp) in a short-lived HttpOnly cookie, and a redirect to the issuer's authorize
endpoint. ``GET /console/callback`` checks the state, exchanges the code (with the verifier) at the
token endpoint, verifies the ID token (broker/identity/oidc_login.py), finds the registered
person (an unknown subject is refused with a page saying so), and starts a session.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from broker.api.console.session import (
    ConsoleError,
    FormDep,
    cookie_names,
    render,
    session_cookie,
    source,
)
from broker.api.limits import note_auth_failure
from broker.container import Container
from broker.errors import BrokerError, Unauthenticated
from broker.identity.oidc_login import LoginState

router = APIRouter(prefix="/console", include_in_schema=False)
_NEXT: Final = re.compile(r"/console(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%&=+-]*)?")
Param = Annotated[str, Query(max_length=4096)]


def _c(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def _safe_next(value: str) -> str:
    """Only a console path of this broker (never another host, never ``//``)."""
    return value if _NEXT.fullmatch(value) and "//" not in value else "/console/approvals"


def redirect_uri(request: Request) -> str:
    c = _c(request)
    if c.settings.console_url:
        return c.settings.resolved_console_url() + "/callback"
    return str(request.base_url).rstrip("/") + "/console/callback"


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    settings = _c(request).settings.console
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite=settings.same_site,
    )


@router.get("")
def front_door() -> RedirectResponse:
    return RedirectResponse("/console/approvals", status_code=303)


@router.get("/login")
def login(request: Request, next: Param = "/console/approvals") -> Response:
    c = _c(request)
    target = _safe_next(next)
    if c.console_sessions.resume(session_cookie(request)) is not None:
        return RedirectResponse(target, status_code=303)
    flow = c.console_sign_in
    if flow is None:
        raise ConsoleError(
            503,
            "Sign-in is not configured",
            "No human issuer signs people in: configure human_issuers[].sign_in_audiences "
            "(and console.issuer / console.client_id) — see docs/console.md.",
        )
    back = redirect_uri(request)
    try:
        url, kept = flow.begin(back)
    except BrokerError as exc:
        raise ConsoleError(exc.status_code, "Sign-in is unavailable", exc.message) from None
    sealed = c.console_sessions.seal(
        {"state": kept.state, "nonce": kept.nonce, "verifier": kept.verifier, "next": target, "redirect_uri": back}
    )
    response = RedirectResponse(url, status_code=303)
    _set_cookie(request, response, cookie_names(c)[1], sealed, c.settings.console.login_timeout_seconds)
    return response


@router.get("/callback")
def callback(
    request: Request, code: Param = "", state: Param = "", error: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    c = _c(request)
    login_cookie = cookie_names(c)[1]
    kept = c.console_sessions.unseal(
        request.cookies.get(login_cookie), max_age_seconds=c.settings.console.login_timeout_seconds
    )
    flow = c.console_sign_in
    if flow is None or kept is None:
        _failed(c, request, "sign-in state missing, forged or expired")
        raise ConsoleError(
            400,
            "Sign-in expired",
            "This sign-in was not started here or took too long. Start again from the sign-in page.",
        )
    if error:
        shown = re.sub(r"[^A-Za-z0-9_.-]", "", error)[:64]
        _failed(c, request, f"the issuer answered error={shown}")
        raise ConsoleError(401, "Sign-in refused", f"The identity provider refused the sign-in ({shown}).")
    try:
        identity = flow.finish(
            code=code,
            returned_state=state,
            redirect_uri=str(kept["redirect_uri"]),
            kept=LoginState(state=str(kept["state"]), nonce=str(kept["nonce"]), verifier=str(kept["verifier"])),
        )
    except Unauthenticated as exc:
        _failed(c, request, exc.message)
        raise ConsoleError(401, "Sign-in failed", exc.message) from None
    except BrokerError as exc:
        raise ConsoleError(exc.status_code, "Sign-in is unavailable", exc.message) from None
    try:
        caller = c.people.person_of(identity)
    except Unauthenticated as exc:
        _failed(c, request, exc.message, subject={"issuer": identity.issuer, "subject": identity.subject})
        raise ConsoleError(
            403,
            "Not a registered person",
            f"You signed in as {identity.subject} at {identity.issuer}, but {exc.message}. "
            "Ask an administrator to register you (nhi-broker people put NAME --issuer ISS --subject SUB).",
        ) from None
    # a new id at every sign-in, and whatever session this browser held before ends (fixation)
    c.console_sessions.end(session_cookie(request), source=source(request))
    session_id = c.console_sessions.start(caller, source=source(request))
    response = RedirectResponse(str(kept["next"]), status_code=303)
    _set_cookie(request, response, cookie_names(c)[0], session_id.reveal(), c.settings.console.max_session_seconds)
    response.delete_cookie(login_cookie, path="/", secure=c.settings.console.cookie_secure, httponly=True)
    return response


def _failed(c: Container, request: Request, reason: str, subject: dict[str, str] | None = None) -> None:
    data: dict[str, object] = {"reason": reason, "source": source(request), "surface": "console"}
    if subject is not None:
        data["subject"] = subject
    c.audit.record("auth.failed", actor="unknown", outcome="denied", data=data)
    note_auth_failure(request.scope)  # counts against the address like a bad bearer token


@router.post("/logout")
async def logout(request: Request, form: FormDep) -> Response:
    c = _c(request)
    await anyio.to_thread.run_sync(lambda: c.console_sessions.end(session_cookie(request), source=source(request)))
    response = RedirectResponse("/console/signed-out", status_code=303)
    response.delete_cookie(cookie_names(c)[0], path="/", secure=c.settings.console.cookie_secure, httponly=True)
    return response


@router.get("/signed-out")
def signed_out(request: Request) -> HTMLResponse:
    return render(request, "signed_out.html", session=None)
