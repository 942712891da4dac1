"""Security headers of every answer under ``/console`` (pure ASGI, no per-request task).

A strict Content-Security-Policy: everything from the broker itself, no inline script or style,
no framing, forms post only to the broker; plus ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and ``Cache-Control: no-store`` on pages
(static files may be cached: they carry no person's data).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PREFIX: Final = "/console"
STATIC: Final = "/console/static/"

_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def headers_for(path: str) -> dict[str, str]:
    """The console's headers for an answer made outside :class:`SecurityHeaders` (the 500 handler
    runs in Starlette's outermost layer); nothing for a path outside ``/console``."""
    if not (path == PREFIX or path.startswith(PREFIX + "/")):
        return {}
    return {k.decode(): v.decode() for k, v in _HEADERS} | {"cache-control": "no-store"}


class SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(STATIC)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                drop = {name for name, _ in _HEADERS} | ({b"cache-control"} if not static else set())
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
                headers += list(_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
