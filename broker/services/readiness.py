"""Readiness (``/readyz``): every check runs concurrently under one time budget.

Each check (the store with the revocation backlog, one per backend) runs in its own daemon
thread; the report waits for all of them for at most ``budget_seconds`` (default 2 s,
``readiness_budget_seconds``). A check that has not answered by then is reported
``unavailable: no answer within Ns`` and the broker is not ready — a hanging OpenBao costs one
budget, not one client timeout per check.

A check still running from an earlier probe is not started again: its thread is awaited
instead, so a hanging dependency and a probe every second hold at most one thread per check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from broker.logging import get_logger

log = get_logger("nhi-broker.readiness")

# a check returns (ok, entries): entries are merged into the report's "checks"
CheckResult = tuple[bool, dict[str, Any]]
Check = Callable[[], CheckResult]


class Readiness:
    def __init__(self, checks: Mapping[str, Check], *, budget_seconds: float) -> None:
        self.checks = dict(checks)
        self.budget_seconds = budget_seconds
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[CheckResult]] = {}

    def _start(self, name: str, check: Check) -> Future[CheckResult]:
        with self._lock:
            running = self._inflight.get(name)
            if running is not None and not running.done():
                return running
            future: Future[CheckResult] = Future()
            self._inflight[name] = future

        def run() -> None:
            try:
                future.set_result(check())
            except Exception as exc:  # a check reports, never raises
                future.set_result((False, {name: f"error: {type(exc).__name__}"}))

        threading.Thread(target=run, name=f"readyz-{name}", daemon=True).start()
        return future

    def report(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.budget_seconds
        futures = {name: self._start(name, check) for name, check in self.checks.items()}
        checks: dict[str, Any] = {}
        ready = True
        for name, future in futures.items():
            try:
                ok, entries = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                ok, entries = False, {name: f"unavailable: no answer within {self.budget_seconds:g}s"}
                log.warning("readiness.check_timed_out", check=name, budget_seconds=self.budget_seconds)
            checks.update(entries)
            ready = ready and ok
        return {"ready": ready, "checks": checks, "budget_seconds": self.budget_seconds}
