"""A real browser (Debian's chromium, Playwright) opens an escalated task's timeline: the escalation
and the revocations' confirmation times are on the page, the agent's HTML in the purpose stays
text (no dialog), the page breaks no Content-Security-Policy rule, and the explain view is one click
away. Saves docs/img/console-task-timeline.png, the README's screenshot."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Dialog
from support.broker import RunningBroker
from support.browser import browser_sign_in, open_browser, playwright

from tests.console.pages_scenario import XSS, escalated_task

pytestmark = pytest.mark.openbao
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "console-task-timeline.png"


def test_browser_shows_an_escalated_tasks_timeline_and_its_explain_view(
    console_broker: RunningBroker, tmp_path: Path
) -> None:
    s = escalated_task(console_broker)
    dialogs: list[str] = []
    csp: list[str] = []

    def on_dialog(d: Dialog) -> None:
        dialogs.append(d.message)
        d.dismiss()

    def on_console(m: ConsoleMessage) -> None:
        if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text:
            csp.append(m.text)

    with playwright() as p, open_browser(p, tmp_path / "audra") as ctx:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page = browser_sign_in(ctx, console_broker.url, "audra@example.test", f"/console/tasks/{s.task_id}")
        page.wait_for_selector("li.entry-escalation")
        assert "dangerous_sequence" in page.inner_text("li.entry-escalation")
        confirmed = page.locator("li.entry-escalation time.confirmed-at")
        assert confirmed.count() == 1 and confirmed.inner_text().endswith("UTC")
        assert page.locator("table.revocations td.confirmed .ok").count() >= 1
        assert XSS in page.inner_text("#purpose")  # shown as text, never run
        assert page.locator("#delegation-tree a.task-link").count() == 1
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        page.click(f'a.decision-link[href="/console/decisions/{s.export_decision}"]')
        page.wait_for_selector("#detection .detected.pre")
        assert "dangerous_sequence" in page.inner_text("#detection")
    assert dialogs == [] and csp == []
    assert SCREENSHOT.stat().st_size > 10_000
