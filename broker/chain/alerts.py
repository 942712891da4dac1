"""The alert webhook: a JSON POST per escalation, sent from a background thread.

Short timeout, a few retries with backoff, never blocks the request that escalated. The payload
names the task, agent, detector, reason and steps (ids, actions, resources, tiers) — never a
secret, a token, an accessor or event text.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import httpx

from broker.errors import InvalidInput
from broker.logging import get_logger
from broker.netpolicy import OutboundPolicy

log = get_logger("nhi-broker.alerts")


class WebhookAlerter:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        attempts: int = 3,
        backoff: float = 0.5,
        policy: OutboundPolicy | None = None,
        field: str = "alert_webhook_url",
    ) -> None:
        """``policy``: the URL is checked now (a refused URL fails start-up) and every address it
        resolves to is checked again before each delivery (broker/netpolicy.py)."""
        self.policy, self.field = policy, field
        if policy is not None:
            policy.check_url(url, field=field)
        self.url = url
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="nhi-alert-webhook", daemon=True)
        self._thread.start()
        self.sent = 0
        self.failed = 0

    def __repr__(self) -> str:
        return "WebhookAlerter(url=**********)"  # the URL may carry a token

    def send(self, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.failed += 1
            log.error("alert.dropped", reason="queue full", task_id=payload.get("task_id"))

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                payload = self._queue.get()
                if payload is None:
                    return
                self._deliver(client, payload)

    def _deliver(self, client: httpx.Client, payload: dict[str, Any]) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                if self.policy is not None:
                    self.policy.check_resolved(self.url, field=self.field)
                resp = client.post(self.url, json=payload)
                if resp.status_code < 300:
                    self.sent += 1
                    return
                error = f"status {resp.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            except InvalidInput as exc:  # the name now resolves somewhere it may not go
                log.error("alert.refused", task_id=payload.get("task_id"), error=exc.message)
                self.failed += 1
                return
            log.warning("alert.failed", task_id=payload.get("task_id"), attempt=attempt, error=error)
            if attempt < self.attempts:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        self.failed += 1

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout=timeout)
