"""The audit chain's status for a reader (the console's audit page), without the cost of a full
walk per page view and without side effects.

A full walk of a million events takes 30-75 s (docs/benchmarks.md), so a reading walks only the
events appended since a point already verified — the guard's last verified point when the guard is
running, else the reader's own — and walks the whole chain against the exported checkpoints only
when it has no such point or its last full walk is older than ``full_every_seconds``. Readings are
reused for ``max_age_seconds`` (page views cannot make the broker walk back to back) and one walk
runs at a time. The guard's own last result is part of the status: a broken chain the guard found
shows as broken even when the tail walked since verifies. Read-only: it exports no checkpoint,
alerts nobody and leaves the guard's schedule and metrics alone (the guard reports a broken chain).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from broker.audit.guard import AuditGuard
from broker.audit.log import AuditLog
from broker.audit.verify import VerifyResult
from broker.store.repo import utcnow

MAX_AGE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Reading:
    """``walked``: what this reading verified — the whole chain against ``checkpoints`` exported
    checkpoints (``full``), or the events after ``since_seq``; ``guard``: the guard's last
    scheduled verification, when it has run."""

    walked: VerifyResult
    full: bool
    since_seq: int
    checkpoints: int
    guard: VerifyResult | None
    at: datetime
    seconds: float

    @property
    def broken(self) -> VerifyResult | None:
        """The failing verification, if any (the guard's first: it saw the older events)."""
        if self.guard is not None and not self.guard.ok:
            return self.guard
        return None if self.walked.ok else self.walked

    @property
    def ok(self) -> bool:
        return self.broken is None

    @property
    def head_seq(self) -> int:
        return self.walked.head_seq


class AuditReader:
    def __init__(
        self,
        audit: AuditLog,
        guard: AuditGuard,
        *,
        full_every_seconds: float,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ) -> None:
        self.audit = audit
        self.guard = guard
        self.full_every_seconds = full_every_seconds
        self.max_age_seconds = max_age_seconds
        self._lock = threading.Lock()
        self._last: tuple[float, Reading] | None = None
        self._point: tuple[int, str] | None = None  # a keyed (seq, hash) a full reading verified
        self._full_at = 0.0

    def reading(self) -> Reading:
        with self._lock:
            started = time.monotonic()
            if self._last is not None and started - self._last[0] < self.max_age_seconds:
                return self._last[1]
            start = self.guard.verified_point or self._point
            stale = started - self._full_at >= self.full_every_seconds
            if start is None or (stale and self.guard.verified_point is None):
                reading = self._full(started)
            else:
                reading = self._tail(start, started)
            self._last = (started, reading)
            return reading

    def _full(self, started: float) -> Reading:
        found = self.guard.read_checkpoints()
        if found.problems:
            head = self.audit.head()
            result = VerifyResult(False, 0, found.problems[0], None, head_seq=head.seq, head_hash=head.hash)
        else:
            result = self.audit.verify(found.checkpoints)
        self._full_at = started
        self._point = (result.head_seq, result.head_hash) if result.ok and result.chain_id is not None else None
        return self._reading(result, True, 0, len(found.checkpoints), started)

    def _tail(self, start: tuple[int, str], started: float) -> Reading:
        result = self.audit.verify(start=start)
        if result.ok and start == self._point:
            self._point = (result.head_seq, result.head_hash)
        return self._reading(result, False, start[0], 0, started)

    def _reading(self, result: VerifyResult, full: bool, since: int, checkpoints: int, started: float) -> Reading:
        return Reading(
            walked=result,
            full=full,
            since_seq=since,
            checkpoints=checkpoints,
            guard=self.guard.last_result,
            at=utcnow(),
            seconds=time.monotonic() - started,
        )
