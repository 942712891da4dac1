"""``auth.failed`` audit events, aggregated per source so a flood cannot flood the audit trail.

``data.source`` is the path asked for (as before), ``data.address`` the caller's address.
The first failure of a kind (address, reason) in an interval is written at once, so a single
failed login is visible immediately. Repeats within the interval are counted, and one more
``auth.failed`` event with ``data.count`` (repeats since the first) and ``data.aggregated: true``
is written when the interval has passed: at the next failure from anywhere, or when the broker
stops (:meth:`AuthFailureLog.flush`). A million bad tokens from one address cost a handful of
rows instead of a million.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.audit import AuditLog

MAX_KEYS = 10_000  # distinct (source, reason) pairs tracked at once; more are flushed early


@dataclass(slots=True)
class _Window:
    started: float
    path: str
    repeats: int = 0


class AuthFailureLog:
    def __init__(
        self, audit: AuditLog, *, interval_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.audit = audit
        self.interval = interval_seconds
        self.clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def record(self, *, reason: str, address: str, path: str, actor: str = "unknown") -> None:
        now = self.clock()
        key = (address, reason)
        with self._lock:
            due = self._take_due(now)
            window = self._windows.get(key)
            first = window is None
            if window is None:
                self._windows[key] = _Window(started=now, path=path)
            else:
                window.repeats += 1
        for (addr, why), w in due:
            self._write_summary(addr, why, w)
        if first:
            self.audit.record(
                "auth.failed",
                actor=actor,
                outcome="denied",
                data={"reason": reason, "source": path, "address": address},
            )

    def flush(self) -> None:
        """Write every pending count (on shutdown)."""
        with self._lock:
            pending, self._windows = list(self._windows.items()), {}
        for (addr, why), w in pending:
            self._write_summary(addr, why, w)

    def _take_due(self, now: float) -> list[tuple[tuple[str, str], _Window]]:
        due = [(k, w) for k, w in self._windows.items() if now - w.started >= self.interval]
        if len(self._windows) - len(due) >= MAX_KEYS:
            oldest = sorted(self._windows.items(), key=lambda kv: kv[1].started)[: MAX_KEYS // 10]
            due = list({k: w for k, w in [*due, *oldest]}.items())
        for k, _ in due:
            del self._windows[k]
        return due

    def _write_summary(self, address: str, reason: str, window: _Window) -> None:
        if window.repeats == 0:
            return
        data: dict[str, Any] = {
            "reason": reason,
            "source": window.path,
            "address": address,
            "count": window.repeats,
            "aggregated": True,
            "window_seconds": self.interval,
        }
        self.audit.record("auth.failed", actor="unknown", outcome="denied", data=data)
