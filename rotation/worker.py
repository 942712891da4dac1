"""The rotation worker: one background thread that runs ``rotate_due`` (max-age schedule) and
``retire_due`` (overlap windows that ended) every ``interval`` seconds. It survives anything (a
failed tick is logged and the next one runs).
"""

from __future__ import annotations

from broker.workers import PeriodicWorker
from rotation.service import RotationService


class RotationWorker:
    """Rotation schedules as one :class:`~broker.workers.PeriodicWorker` tick."""

    def __init__(self, service: RotationService, interval: float = 30.0) -> None:
        self.service = service
        self.worker = PeriodicWorker("rotation-worker", interval, self.tick)

    @property
    def last_tick(self) -> float | None:
        return self.worker.last_run

    def start(self) -> RotationWorker:
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()

    def tick(self) -> dict[str, int]:
        rotated = self.service.rotate_due()
        retired = self.service.retire_due()
        return {
            "rotated": sum(r.ok for r in rotated),
            "failed": sum(not r.ok for r in rotated),
            "retired": retired,
        }
