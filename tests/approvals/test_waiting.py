"""The long-poll's waiting logic (pure: a fake look at the store, the real signals)."""

from __future__ import annotations

import asyncio
import threading

from broker.approvals import waiting
from broker.approvals.model import ApprovalState
from broker.approvals.waiting import ApprovalSignals, wait_for_decision


def test_a_decided_approval_answers_without_waiting():
    looks: list[int] = []

    def look() -> ApprovalState:
        looks.append(1)
        return ApprovalState.DENIED

    assert asyncio.run(wait_for_decision("apr_1", look, 30, ApprovalSignals())) is ApprovalState.DENIED
    assert len(looks) == 1


def test_a_signal_from_another_thread_wakes_the_waiter_which_reads_the_store_again():
    signals = ApprovalSignals()
    state = {"now": ApprovalState.PENDING}

    async def scenario() -> ApprovalState:
        task = asyncio.create_task(wait_for_decision("apr_2", lambda: state["now"], 30, signals))
        while signals.waiting() == 0:
            await asyncio.sleep(0.01)

        def decide() -> None:  # an approver's request, in a worker thread
            state["now"] = ApprovalState.APPROVED
            signals.notify("apr_2")

        threading.Thread(target=decide).start()
        return await asyncio.wait_for(task, timeout=20)

    assert asyncio.run(scenario()) is ApprovalState.APPROVED
    assert signals.waiting() == 0  # the waiter unregistered


def test_without_a_signal_the_store_is_polled_until_the_wait_ends():
    looks: list[int] = []

    def look() -> ApprovalState:
        looks.append(1)
        return ApprovalState.PENDING

    clock = iter(float(t) for t in range(0, 1000))  # each clock read: one second later
    result = asyncio.run(wait_for_decision("apr_3", look, 3, ApprovalSignals(), clock=lambda: next(clock)))
    assert result is ApprovalState.PENDING and len(looks) >= 2


def test_past_the_waiter_limit_a_request_answers_at_once(monkeypatch):
    monkeypatch.setattr(waiting, "MAX_WAITERS", 0)
    looks: list[int] = []

    def look() -> ApprovalState:
        looks.append(1)
        return ApprovalState.PENDING

    assert asyncio.run(wait_for_decision("apr_4", look, 30, ApprovalSignals())) is ApprovalState.PENDING
    assert len(looks) == 1
