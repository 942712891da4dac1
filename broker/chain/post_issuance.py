"""The pool the post-issuance chain checks run on (``chain.yaml`` ``detection``).

A credential whose decision is checked after issuance goes out first; its detectors run here right
after, off the request's path. Threads start on the first submitted check, never when the
container is built; ``close`` (container close) lets the checks in flight finish first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from broker.logging import get_logger

log = get_logger("nhi-broker.chain")


class PostIssuancePool:
    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chain-post-issuance")
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._idle:
            if self._closed:  # shutting down: run it here rather than drop a check
                closed = True
            else:
                closed = False
                self._pending += 1
        if closed:
            fn(*args)
            return
        self._executor.submit(self._run, fn, args)

    def _run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception:  # the checks log their own failures; never kill a pool thread
            log.exception("chain.post_issuance_task_failed")
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted check has finished; False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        with self._idle:
            self._closed = True
        self._executor.shutdown(wait=True)
