"""The console in a real headless browser (Debian's chromium, driven by Playwright).

Few and whole: an approver signs in through the local OIDC provider, sees an agent's step-up
arrive on the open approvals page without a reload (SSE), opens it, approves with a reason, and
the agent collects its credential exactly once; the agent's owner and an auditor see the approve
button disabled, and forcing the form anyway is refused by the server, as is a form stripped of
its CSRF token. The approval page's screenshot goes to docs/img/console-approval.png (README).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.broker import RunningBroker
from support.browser import browser_sign_in, open_browser, playwright
from support.oidc import ACTOR_CLIENT_ID

pytestmark = pytest.mark.openbao
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


def test_an_approver_sees_a_step_up_arrive_live_approves_it_and_the_agent_collects_once(
    console_broker: RunningBroker, oidc_provider, agent, tmp_path: Path
) -> None:
    # the agent acts for a person its identity provider verified (token exchange with an actor token)
    agent.act_for(oidc_provider.id_token("olga@example.test", ACTOR_CLIENT_ID))
    task_id = agent.open_task("pay invoice 4711 for ACME")
    broken: list[str] = []  # CSP violations and dialogs: the live page must need neither
    with playwright() as p, open_browser(p, tmp_path / "alice") as browser:
        first = browser.pages[0] if browser.pages else browser.new_page()
        first.on("console", lambda m: broken.append(m.text) if "Content Security Policy" in m.text else None)
        first.on("dialog", lambda d: (broken.append(d.message), d.dismiss()))
        page = browser_sign_in(browser, console_broker.url, "alice@example.test")
        assert page is first
        page.wait_for_selector("#pending[data-live=on]")  # the SSE stream is open
        page.evaluate("window.__stillTheSamePage = true")

        approval_id = agent.step_up(task_id)
        row = page.locator(f'tr[data-approval="{approval_id}"]')
        row.wait_for()
        assert page.evaluate("window.__stillTheSamePage === true")  # arrived without a reload

        row.locator("a").click()
        page.wait_for_url(f"**/console/approvals/{approval_id}")
        who = page.locator("#who").inner_text()
        assert "demo-agent" in who and "demo-owner" in who
        assert "verified" in page.locator("#acting-for").inner_text()
        assert "olga@example.test" in page.locator("#acting-for").inner_text()
        assert "critical" in page.locator("#risk").inner_text()
        assert "payments.charge" in page.locator("#what").inner_text()
        assert "restricted" in page.locator("#what").inner_text() or "prod" in page.locator("#what").inner_text()
        assert page.locator("#approve").is_enabled()
        page.fill("#reason", "invoice 4711 matches the purchase order")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "console-approval.png"), full_page=True)

        page.click("#approve")
        page.wait_for_selector("#approval-state:has-text('approved')")
        assert page.locator("#decided-by").inner_text() == "person:alice"
    assert broken == []

    first = agent.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert first.status_code == 200, first.text
    assert agent.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code != 200


def test_the_owner_and_an_auditor_cannot_approve_and_a_form_without_csrf_is_refused(
    console_broker: RunningBroker, agent, tmp_path: Path
) -> None:
    approval_id = agent.step_up(agent.open_task())
    path = f"/console/approvals/{approval_id}"
    with playwright() as p:
        with open_browser(p, tmp_path / "owner") as browser:
            page = browser_sign_in(browser, console_broker.url, "owner@example.test", path)
            assert page.locator("#own-warning").is_visible()
            assert page.locator("#approve").is_disabled()
            assert page.locator("input[name=approver], input[name=name], input[name=decided_by]").count() == 0
            # force it: enable the button in the page and submit; the server refuses (four-eyes)
            page.evaluate("document.getElementById('approve').disabled = false")
            page.fill("#reason", "my own agent, fine")
            page.click("#approve")
            page.wait_for_selector("section.error")
            assert "four" in page.locator("section.error").inner_text().lower()

        with open_browser(p, tmp_path / "audra") as browser:
            page = browser_sign_in(browser, console_broker.url, "audra@example.test", path)
            assert page.locator("#no-role").is_visible()
            assert page.locator("#approve").is_disabled() and page.locator("#deny").is_disabled()
            # a form stripped of its CSRF token is refused before anything else is looked at
            page.evaluate(
                "document.querySelector('#decide input[name=csrf_token]').remove();"
                "for (const el of document.querySelectorAll('#decide [disabled]')) el.disabled = false;"
            )
            page.fill("#reason", "auditing")
            page.click("#deny")
            page.wait_for_selector("section.error")
            assert "CSRF" in page.locator("section.error").inner_text()
            # with the token, the server still refuses an auditor (role)
            page.goto(f"{console_broker.url}{path}")
            page.evaluate("for (const el of document.querySelectorAll('#decide [disabled]')) el.disabled = false;")
            page.fill("#reason", "auditing")
            page.click("#deny")
            page.wait_for_selector("section.error")
            assert "approver" in page.locator("section.error").inner_text()
    assert console_broker.container.approvals.get(approval_id).state.value == "pending"
