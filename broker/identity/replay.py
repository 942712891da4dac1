"""Single use of identity tokens: a token's ``jti`` is recorded until the token could no longer verify.

:class:`ReplayGuard` is the port; the store can provide a shared implementation for several
replicas. :class:`InMemoryReplayGuard` serves one process: thread-safe, expired entries evicted,
memory bounded. When it is full of entries that are still live it refuses new tokens (fails
closed) rather than forget a ``jti`` that could then be replayed.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final, Protocol

from broker.errors import UpstreamUnavailable

DEFAULT_MAX_ENTRIES: Final = 200_000


class ReplayGuard(Protocol):
    def check_and_record(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """True on first use (and records it until ``expires_at``); False when seen before. Atomic."""
        ...


class JtiLedger(Protocol):
    def record_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool: ...


class StoreReplayGuard:
    """Replay guard shared by every replica: a jti is recorded once in the store."""

    def __init__(self, ledger: JtiLedger) -> None:
        self.ledger = ledger

    def check_and_record(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        return self.ledger.record_jti(issuer, jti, expires_at)


class ReplayCacheFull(UpstreamUnavailable):
    """The replay cache holds only live entries and has no room: refuse instead of forgetting."""


class InMemoryReplayGuard:
    __slots__ = ("_clock", "_entries", "_expiry_heap", "_lock", "_max_entries")

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._max_entries = max_entries
        self._clock = clock  # wall-clock seconds, comparable with datetime.timestamp()
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], float] = {}
        self._expiry_heap: list[tuple[float, tuple[str, str]]] = []

    def check_and_record(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        key = (issuer, jti)
        expiry = expires_at.timestamp()
        with self._lock:
            now = self._clock()
            self._evict(now)
            recorded = self._entries.get(key)
            if recorded is not None and recorded > now:
                return False
            if expiry <= now:
                return True  # already past its window: nothing left to guard
            if len(self._entries) >= self._max_entries:
                raise ReplayCacheFull("too many identity tokens in use at once; try again shortly")
            self._entries[key] = expiry
            heapq.heappush(self._expiry_heap, (expiry, key))
            return True

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return len(self._entries)

    def _evict(self, now: float) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expiry, key = heapq.heappop(heap)
            if self._entries.get(key) == expiry:
                del self._entries[key]
