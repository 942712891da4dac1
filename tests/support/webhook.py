"""A webhook receiver on loopback that records what the broker posts (alerts, approvals)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .wait import DEADLINE, wait_until


class WebhookRecorder:
    """Records JSON POSTs; ``fail_next`` answers that many requests with 500 (retry tests)."""

    def __init__(self, path: str = "/alerts") -> None:
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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, key: str, value: str, timeout: float = DEADLINE) -> dict[str, Any]:
        """The first recorded request whose ``key`` equals ``value`` (waits up to ``timeout``)."""
        return wait_until(
            lambda: next((r for r in list(self.requests) if r.get(key) == value), None),
            timeout,
            what=f"a webhook call with {key}={value}",
            interval=0.02,
        )

    def close(self) -> None:
        self.server.shutdown()
