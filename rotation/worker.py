"""The rotation worker: one background thread that runs ``rotate_due`` (max-age schedule) and
``retire_due`` (overlap windows that ended) every ``interval`` seconds. It survives anything (a
failed tick is logged and the next one runs). It exposes ``last_tick`` rather than ``last_run`` so
``/readyz``'s revocation-worker check is not fed by it.
"""

from __future__ import annotations

import threading
import time

from broker.logging import get_logger
from rotation.service import RotationService

log = get_logger("nhi-broker.rotation")


class RotationWorker:
    def __init__(self, service: RotationService, interval: float = 30.0) -> None:
        self.service = service
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_tick: float | None = None
        self.last_error: str | None = None

    def start(self) -> RotationWorker:
        self._thread = threading.Thread(target=self._loop, name="nhi-rotation-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def tick(self) -> dict[str, int]:
        rotated = self.service.rotate_due()
        retired = self.service.retire_due()
        self.last_tick = time.time()
        return {
            "rotated": sum(r.ok for r in rotated),
            "failed": sum(not r.ok for r in rotated),
            "retired": retired,
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
                self.last_error = None
            except Exception as exc:  # the worker must survive anything
                self.last_error = type(exc).__name__
                log.error("rotation.tick_failed", error_type=type(exc).__name__)
