"""A real headless browser for the console tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download cannot work here and is never used (no ``playwright install``):
:func:`open_browser` launches ``/usr/bin/chromium`` (``apt-get install -y chromium``; ``.ci/run``
installs it when missing) with a fresh user-data directory per context, headless, no sandbox (root
in CI containers), nothing in the background, and every request to a host other than 127.0.0.1
aborted (the OIDC provider's page links a CDN stylesheet; the console itself needs nothing outside).

:func:`browser_sign_in` signs a person in through the OIDC provider's real login page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

CHROMIUM: Final = Path("/usr/bin/chromium")
ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS: Final = 60_000  # an upper bound only: every wait is on a selector or a condition
_ELSEWHERE: Final = re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*")


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the console's browser tests need Debian's chromium "
            "(`apt-get install -y chromium`; .ci/run installs it). Playwright's own browsers are not used."
        )


@contextmanager
def playwright() -> Iterator[Playwright]:
    require_chromium()
    with sync_playwright() as p:
        yield p


@contextmanager
def open_browser(p: Playwright, user_data_dir: Path) -> Iterator[BrowserContext]:
    """A fresh chromium (its own profile directory): one per signed-in person."""
    context = p.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=str(CHROMIUM),
        headless=True,
        args=ARGS,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.route(_ELSEWHERE, lambda route: route.abort())
    try:
        yield context
    finally:
        context.close()


def browser_sign_in(context: BrowserContext, broker_url: str, subject: str, path: str = "/console/approvals") -> Page:
    """Open ``path``, get sent to sign in, log in at the OIDC provider as ``subject`` and land back."""
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(f"{broker_url}{path}")
    page.wait_for_url(re.compile(r"/oauth2/authorize"))  # the provider's login page
    page.fill("input[name=sub]", subject)
    page.click("button[type=submit]:has-text('Authorize')")
    page.wait_for_url(f"{broker_url}{path}")
    return page
