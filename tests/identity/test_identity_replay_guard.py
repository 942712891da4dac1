"""InMemoryReplayGuard: first use wins, atomically; expired entries leave; memory stays bounded."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from broker.errors import UpstreamUnavailable
from broker.identity import InMemoryReplayGuard, ReplayCacheFull


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class WallClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_replay_guard_accepts_a_jti_once_and_refuses_it_after():
    clock = WallClock()
    guard = InMemoryReplayGuard(clock=clock)
    assert guard.check_and_record("iss", "j1", at(clock.now + 60)) is True
    assert guard.check_and_record("iss", "j1", at(clock.now + 60)) is False
    assert guard.check_and_record("other-iss", "j1", at(clock.now + 60)) is True


def test_replay_guard_forgets_a_jti_once_its_window_has_passed():
    clock = WallClock()
    guard = InMemoryReplayGuard(clock=clock)
    guard.check_and_record("iss", "j1", at(clock.now + 60))
    clock.now += 61
    assert len(guard) == 0
    assert guard.check_and_record("iss", "j1", at(clock.now + 60)) is True


def test_replay_guard_is_atomic_under_concurrent_first_use():
    guard = InMemoryReplayGuard()
    barrier = threading.Barrier(32)
    expires = at(datetime.now(tz=UTC).timestamp() + 60)

    def use(_: int) -> bool:
        barrier.wait()
        return guard.check_and_record("iss", "contended", expires)

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert list(pool.map(use, range(32))).count(True) == 1


def test_full_replay_guard_fails_closed_instead_of_forgetting_live_jtis():
    clock = WallClock()
    guard = InMemoryReplayGuard(max_entries=3, clock=clock)
    for n in range(3):
        assert guard.check_and_record("iss", f"j{n}", at(clock.now + 60))
    with pytest.raises(ReplayCacheFull) as info:
        guard.check_and_record("iss", "j3", at(clock.now + 60))
    assert isinstance(info.value, UpstreamUnavailable)
    assert guard.check_and_record("iss", "j0", at(clock.now + 60)) is False  # still remembered

    clock.now += 61  # the live entries expire and make room
    assert guard.check_and_record("iss", "j3", at(clock.now + 60)) is True
    assert len(guard) == 1
