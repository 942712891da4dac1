"""One worker abstraction: a named background thread that runs ``tick`` every ``interval`` seconds.

Every periodic job of the broker (revocation retries and expiry sweeps, rotation schedules, the
policy-bundle watcher, the scan scheduler's wake-ups) is a :class:`PeriodicWorker`. It survives
anything: a tick that raises is logged (type only, never the message, which could carry a
secret-bearing URL) and the next tick runs. ``last_run`` (epoch seconds of the last tick that
finished) and ``last_error`` feed ``/readyz`` and ``/metrics``.

Building a service never starts a worker; the runner (``nhi-broker up``/``serve``, or a test's
harness) starts them through :mod:`broker.runtime` and stops them on the way out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from broker.logging import get_logger

log = get_logger("nhi-broker.workers")


class Worker(Protocol):
    """Anything the runner starts and stops."""

    def stop(self) -> None: ...


class PeriodicWorker:
    def __init__(self, name: str, interval: float, tick: Callable[[], object], *, first_tick_now: bool = False) -> None:
        if interval <= 0:
            raise ValueError(f"worker {name}: interval must be > 0 (got {interval})")
        self.name = name
        self.interval = interval
        self._tick = tick
        self._first_now = first_tick_now
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_run: float | None = None
        self.last_error: str | None = None

    def start(self) -> PeriodicWorker:
        if self._thread is not None:
            raise RuntimeError(f"worker {self.name} already started")
        self._thread = threading.Thread(target=self._loop, name=f"nhi-{self.name}", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run the next tick now instead of at the end of the interval."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def tick_once(self) -> None:
        try:
            self._tick()
            self.last_error = None
        except Exception as exc:  # a worker must survive anything
            self.last_error = type(exc).__name__
            log.error("worker.tick_failed", worker=self.name, error_type=type(exc).__name__)
        finally:
            self.last_run = time.time()

    def _loop(self) -> None:
        if self._first_now:
            self.tick_once()
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.tick_once()


class Heartbeat:
    """The revocation worker's last completed run, shared with the readiness check (which must
    know it without holding the worker: the container is built before any worker starts)."""

    def __init__(self) -> None:
        self.last: float | None = None

    def beat(self) -> None:
        self.last = time.time()
