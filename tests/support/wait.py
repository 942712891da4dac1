"""Waiting in tests: on a condition with a generous deadline, never on time.

The suite runs in parallel (pytest-xdist) on machines whose cores are busy with something else,
so a test never sleeps a fixed time and never asserts how long something took. It polls the
condition it needs (``wait_until``) with a deadline that only a real hang reaches, and gives every
HTTP client a timeout that only a hung server reaches (``HTTP_TIMEOUT``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 60.0  # seconds: a condition not met by then is a hang, not a slow machine
HTTP_TIMEOUT = 60.0  # seconds: for clients of servers the tests start on loopback


def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE, *, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value.

    Raises ``AssertionError`` naming ``what`` (and the last value, or the last exception the
    predicate raised) once ``timeout`` seconds have passed. A predicate that raises is retried
    until the deadline: a server still starting answers with connection errors.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # retried until the deadline, reported if it is the last word
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
