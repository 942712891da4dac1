"""Configurable behaviour after an escalation, and the alert webhook's delivery."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from support.broker import start_broker
from support.wait import HTTP_TIMEOUT, wait_until
from support.webhook import WebhookRecorder

from broker.chain.alerts import WebhookAlerter
from broker.client import CredentialDenied
from policies import DEFAULT_BUNDLE
from tests.chain.conftest import token_is_dead


@pytest.mark.openbao
def test_step_up_only_mode_revokes_everything_but_keeps_the_task_behind_step_up(openbao, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    raw = yaml.safe_load((bundle / "chain.yaml").read_text())
    raw["on_escalation"] = "step_up_only"
    (bundle / "chain.yaml").write_text(yaml.safe_dump(raw))
    running = start_broker(tmp_path / "broker", openbao, policy_dir=bundle)
    try:
        agent = running.agent()
        task_id = agent.open_task("demo", "step up after escalation")["task_id"]
        token = agent.request_credential(task_id, "db.read", "demo-data").secret("token")
        agent.request_credential(task_id, "secrets.read", "demo-secrets")
        with pytest.raises(CredentialDenied) as exc:
            agent.request_credential(task_id, "data.export", "demo-data")
        assert exc.value.body["error"]["task_state"] == "active"
        assert token_is_dead(openbao.address, token)
        later = agent.request_credential(task_id, "db.read", "demo-data")  # 202: step-up, no credential
        assert later.decision["outcome"] == "step_up" and not later.issued
        assert any("step-up" in r for r in later.decision["reasons"])
    finally:
        running.stop()


def test_alert_webhook_retries_a_failed_delivery():
    rec = WebhookRecorder()
    rec.fail_next = 1
    alerter = WebhookAlerter(rec.url, timeout=1.0, attempts=3, backoff=0.05)
    try:
        alerter.send({"event": "task.escalated", "task_id": "tsk_retry", "detector": "burst"})
        assert rec.wait_for("task_id", "tsk_retry")["detector"] == "burst"
        assert alerter.sent == 1 and alerter.failed == 0
    finally:
        alerter.close()
        rec.close()


def test_alert_webhook_that_never_answers_does_not_block_the_sender():
    returned = threading.Event()
    seen: list[bool] = []

    class Held(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append(returned.wait(timeout=HTTP_TIMEOUT))  # answers only once send() has returned
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Held)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alerter = WebhookAlerter(
        f"http://127.0.0.1:{server.server_address[1]}/alerts", timeout=2 * HTTP_TIMEOUT, attempts=1
    )
    try:
        alerter.send({"event": "task.escalated", "task_id": "tsk_held"})
        returned.set()
        wait_until(lambda: seen, what="the alert delivered")
        # the webhook held the request until send() had returned: queued, never sent inline
        assert seen == [True]
    finally:
        alerter.close(timeout=HTTP_TIMEOUT)
        server.shutdown()
        server.server_close()


def test_alert_webhook_counts_an_alert_no_attempt_delivered():
    alerter = WebhookAlerter("http://127.0.0.1:9/unreachable", timeout=0.2, attempts=2, backoff=0.01)
    try:
        alerter.send({"event": "task.escalated", "task_id": "tsk_x"})
        wait_until(lambda: alerter.failed == 1, what="the undeliverable alert counted")
    finally:
        alerter.close(timeout=HTTP_TIMEOUT)
    assert alerter.failed == 1 and alerter.sent == 0
