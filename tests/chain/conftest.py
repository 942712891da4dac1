"""Chain fixtures: a webhook recorder on loopback and a broker that alerts it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import hvac
import pytest
from support.broker import RunningBroker, start_broker


class WebhookRecorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.fail_next = 0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if recorder.fail_next > 0:
                    recorder.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                recorder.raw.append(body)
                recorder.requests.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.requests:
                if r.get("task_id") == task_id:
                    return r
            time.sleep(0.02)
        raise AssertionError(f"no alert for {task_id} within {timeout}s (got {len(self.requests)})")

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookRecorder]:
    rec = WebhookRecorder()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def chain_broker(openbao, webhook, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(tmp_path_factory.mktemp("chain-broker"), openbao, alert_webhook_url=webhook.url)
    yield running
    running.stop()


def token_is_dead(address: str, token: str) -> bool:
    try:
        hvac.Client(url=address, token=token).auth.token.lookup_self()
    except hvac.exceptions.Forbidden:
        return True
    return False


def accessor_is_dead(address: str, root: str, accessor: str) -> bool:
    """Checked with the root token, so a single-use grant is not consumed by the check."""
    try:
        hvac.Client(url=address, token=root).auth.token.lookup_accessor(accessor)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
        return True
    return False
