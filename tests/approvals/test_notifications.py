"""Notifications link to the page (issue 17, item 3): the approval webhook carries the console URL
of the approval; ``approval_webhook_format: slack`` posts a Slack-compatible message instead."""

from __future__ import annotations

import time

import httpx
import pytest
from support.broker import start_broker
from support.webhook import WebhookRecorder

from broker.approvals.notify import slack_message

pytestmark = pytest.mark.openbao
CONSOLE = "https://broker.example.test/console"


def test_slack_format_posts_text_and_blocks_linking_to_the_approval_page(openbao, tmp_path):
    hook = WebhookRecorder("/slack")
    running = start_broker(
        tmp_path, openbao, approval_webhook_url=hook.url, approval_webhook_format="slack", console_url=CONSOLE + "/"
    )
    try:
        with httpx.Client(base_url=running.url, timeout=15) as http:
            auth = {"Authorization": f"Bearer {running.token()}"}
            task = http.post("/v1/tasks", json={"profile": "demo", "purpose": "pay"}, headers=auth).json()
            auth = {"Authorization": f"Bearer {running.token()}"}
            resp = http.post(
                f"/v1/tasks/{task['task_id']}/credentials",
                headers=auth,
                json={"action": "payments.charge", "resource": "prod-payments"},
            )
        assert resp.status_code == 202, resp.text
        approval_id = resp.json()["approval_id"]
        deadline = time.monotonic() + 10
        while not hook.requests:
            assert time.monotonic() < deadline, "no webhook call"
            time.sleep(0.02)
        [body] = hook.requests
        url = f"{CONSOLE}/approvals/{approval_id}"
        assert set(body) == {"text", "blocks"}  # Slack's incoming-webhook shape, nothing else
        assert url in body["text"] and "payments.charge" in body["text"] and "demo-agent" in body["text"]
        [button] = [e for b in body["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert button["url"] == url
    finally:
        running.stop()
        hook.close()


def test_slack_text_escapes_control_characters_from_reasons():
    body = slack_message(
        {
            "agent": "a",
            "action": "x",
            "resource": "r",
            "tier": "critical",
            "url": "u",
            "reasons": ["<!channel> & <https://evil.test|click>"],
        }
    )
    text = " ".join(b["text"]["text"] for b in body["blocks"] if b["type"] == "section" and "text" in b)
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; &lt;https://evil.test|click&gt;" in text


def test_console_url_must_be_an_http_url_without_credentials():
    from pydantic import ValidationError

    from broker.config import Settings

    for bad in ("ftp://x/console", "https://user:pw@x/console", "console"):
        with pytest.raises(ValidationError, match="console_url"):
            Settings(dev_mode=True, console_url=bad)
    assert Settings(dev_mode=True, host="127.0.0.1", port=9).resolved_console_url() == "http://127.0.0.1:9/console"
