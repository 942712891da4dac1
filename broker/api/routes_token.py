"""The token endpoint (RFC 8693 token exchange, RFC 9449 DPoP) and the metadata clients discover."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from broker.api.deps import ContainerDep, request_url
from broker.services.token_exchange import OAuthError

router = APIRouter(tags=["token"])
MAX_FORM_BYTES = 32 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(exc: OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.message}, status_code=exc.status_code, headers=NO_STORE
    )


TOKEN_ERRORS = (
    "RFC 6749 error: invalid_request, invalid_grant, unsupported_grant_type, invalid_target, invalid_dpop_proof"
)


@router.post("/v1/token", responses={400: {"description": TOKEN_ERRORS}})
async def token(request: Request, c: ContainerDep) -> JSONResponse:
    """Exchange a workload identity token for a broker access token (RFC 8693, form-encoded).
    With a ``DPoP`` header the token is bound to that key (``token_type: DPoP``)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return _oauth_error(OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded"))
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _oauth_error(OAuthError("invalid_request", f"the body is larger than {MAX_FORM_BYTES} bytes"))
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(OAuthError("invalid_request", "the body is not a valid form"))
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:  # RFC 6749 §3.2: parameters must not be included more than once
            return _oauth_error(OAuthError("invalid_request", f"{key} is given more than once"))
        form[key] = value
    url = request_url(request, c.settings.token_exchange.public_url)
    try:
        result = c.token_exchange.exchange(
            form, dpop_proof=request.headers.get("dpop"), url=url, source=request.url.path
        )
    except OAuthError as exc:
        return _oauth_error(exc)
    return JSONResponse(result.body, headers=NO_STORE)


@router.get("/.well-known/oauth-authorization-server")
def metadata(request: Request, c: ContainerDep) -> dict[str, Any]:
    base = (c.settings.token_exchange.public_url or str(request.base_url)).rstrip("/")
    return c.token_exchange.metadata(base)


@router.get("/.well-known/jwks.json")
def jwks(c: ContainerDep) -> dict[str, Any]:
    return c.signing_key.jwks()
