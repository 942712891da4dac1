"""Waiting for an approval's decision without holding anything while waiting (agent long-poll).

``GET /v1/tasks/{task_id}/approvals/{approval_id}?wait=SECONDS`` answers at once when the approval
is no longer pending, else waits up to ``wait`` seconds (at most :data:`MAX_WAIT_SECONDS`) for a
decision. The wait is an ``asyncio`` coroutine on the event loop:

- no thread and no database connection is held between looks: each look at the store is one short
  read in a worker thread (a connection is checked out and returned within milliseconds);
- between looks the waiter sleeps with backoff (:data:`BACKOFF`, 0.25 s doubling to 2 s), so a
  decision taken on **another replica** is seen within about 2 s — the store is the truth;
- a decision taken on **this** replica (approve, deny, cancel) also sets an in-process
  :class:`asyncio.Event` (:class:`ApprovalSignals`), which wakes the waiter at once.

N waiters cost N sleeping coroutines and one short store read per waiter every 2 s at most; past
:data:`MAX_WAITERS` in one process a request answers at once with the current state instead of
waiting (the agent asks again), so waiting cannot exhaust the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

from anyio import to_thread

from broker.approvals.model import ApprovalState

MAX_WAIT_SECONDS = 30
MAX_WAITERS = 1000
BACKOFF = (0.25, 0.5, 1.0, 2.0)


class ApprovalSignals:
    """In-process wake-ups for waiters of one approval; thread-safe (deciders run in worker
    threads, waiters on the event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def register(self, approval_id: str) -> asyncio.Event:
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.setdefault(approval_id, []).append(entry)
        return event

    def unregister(self, approval_id: str, event: asyncio.Event) -> None:
        with self._lock:
            left = [w for w in self._waiters.get(approval_id, []) if w[1] is not event]
            if left:
                self._waiters[approval_id] = left
            else:
                self._waiters.pop(approval_id, None)

    def notify(self, approval_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(approval_id, ()))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its waiter is gone
                continue

    def waiting(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._waiters.values())


async def wait_for_decision(
    approval_id: str,
    look: Callable[[], ApprovalState],
    wait_seconds: float,
    signals: ApprovalSignals,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ApprovalState:
    """Look at the approval (``look`` reads the store, in a worker thread) until it is no longer
    pending or ``wait_seconds`` have passed; returns the last state seen."""
    state = await to_thread.run_sync(look)
    if state is not ApprovalState.PENDING or wait_seconds <= 0 or signals.waiting() >= MAX_WAITERS:
        return state
    deadline = clock() + min(wait_seconds, MAX_WAIT_SECONDS)
    event = signals.register(approval_id)
    try:
        step = 0
        while True:
            left = deadline - clock()
            if left <= 0:
                return state
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(BACKOFF[min(step, len(BACKOFF) - 1)], left))
            event.clear()
            step += 1
            state = await to_thread.run_sync(look)
            if state is not ApprovalState.PENDING:
                return state
    finally:
        signals.unregister(approval_id, event)
