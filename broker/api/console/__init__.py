"""The web console for people, served under ``/console`` (docs/console.md).

Server-rendered (Jinja2 templates in ``templates/``, extending ``base.html``), one small vendored
script (``static/console.js``: live updates over SSE), no CDN. Sign-in is the OIDC code flow with
PKCE (``routes_auth``); every page takes the signed-in person from :mod:`.session`
(``console_caller`` / ``console_person`` / ``requires_role``), every state-changing form carries a
CSRF token (:func:`.session.csrf_protect`), and every answer under ``/console`` gets a strict
Content-Security-Policy (:class:`.security.SecurityHeaders`).
"""

from __future__ import annotations

from fastapi import FastAPI

from broker.api.console.router import routers
from broker.api.console.security import SecurityHeaders, headers_for
from broker.api.console.session import install_handlers

__all__ = ["SecurityHeaders", "headers_for", "install", "routers"]


def install(app: FastAPI) -> None:
    """Static files, error pages and security headers of the console (the routers are included with
    the others in :func:`broker.api.app.create_app`)."""
    install_handlers(app)
    app.add_middleware(SecurityHeaders)
