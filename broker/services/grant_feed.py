"""The grant feed: every replica's known-grant index learns the grants the other replicas issue.

A replica adds the grants it issues to its own :class:`scanners.known.KnownSecretIndex` at once
(``ScanService.on_issued``). With several replicas on one PostgreSQL store, the others learn of
them here:

- ``LISTEN nhi_grant_issued``: the store sends ``pg_notify`` in the same transaction that inserts
  the grant (``Store.add_grant``), so the notification arrives at commit, never before the row is
  readable. It carries what the index needs (grant, task, agent, fingerprints and secret lengths —
  keyed fingerprints, never a secret: :func:`broker.store.repo.grant_notice`), so the feed adds it
  without reading the store; a notice with the bare grant id (too long, or from an older replica)
  makes the feed read that grant. Measured: a grant is matchable on another replica in a few
  milliseconds.
- Fallback, because a notification is lost while the listening connection is down: on every
  (re)connect, and every ``resync_seconds`` anyway, grants issued since the last sync (minus an
  overlap for commit order and clock skew between replicas) are read from the store.

On SQLite (one process) there is nothing to follow and the feed does not start.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from broker.logging import get_logger
from broker.services.scanning import add_active_grants
from broker.store.repo import GRANT_CHANNEL, Store, utcnow
from scanners.known import GrantMatch, KnownSecretIndex

log = get_logger("nhi-broker.grant-feed")
OVERLAP = timedelta(seconds=30)  # re-read window: commit order and clock skew between replicas


def _parse_notice(payload: str) -> dict[str, Any] | None:
    """A JSON grant notice, checked field by field; None for a bare grant id or anything else."""
    if not payload.startswith("{"):
        return None
    try:
        notice = json.loads(payload)
    except ValueError:
        return None
    names = ("grant_id", "task_id", "agent")
    if not isinstance(notice, dict) or not all(isinstance(notice.get(k), str) for k in names):
        return None
    fps = notice.get("fingerprints")
    if not isinstance(fps, dict) or not all(
        isinstance(fp, str) and (n is None or (isinstance(n, int) and not isinstance(n, bool))) for fp, n in fps.items()
    ):
        return None
    return notice


class GrantFeed:
    def __init__(self, store: Store, index: KnownSecretIndex, *, resync_seconds: float = 5.0) -> None:
        self.store = store
        self.index = index
        self.resync_seconds = resync_seconds
        self._conninfo = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since: datetime | None = None
        self.notified = 0  # grants added from notifications (for tests and metrics)
        self.connected = threading.Event()

    def start(self) -> GrantFeed:
        self._thread = threading.Thread(target=self._loop, name="nhi-grant-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def resync(self) -> int:
        """Add grants issued since the last sync (all active grants the first time)."""
        started = utcnow()
        count = add_active_grants(self.index, self.store, since=None if self._since is None else self._since - OVERLAP)
        self._since = started
        return count

    def _add_notice(self, payload: str) -> bool:
        """Add the grant a notification names: from the notice itself, or read by its id."""
        notice = _parse_notice(payload)
        if notice is None:
            return add_active_grants(self.index, self.store, grant_id=payload[:128]) > 0
        match = GrantMatch(notice["grant_id"], notice["task_id"], notice["agent"])
        for fp, length in notice["fingerprints"].items():
            self.index.add(fp, match, length=length)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (psycopg.Error, SQLAlchemyError, OSError) as exc:
                log.warning("grant_feed.disconnected", error_type=type(exc).__name__)
            except Exception as exc:  # the feed must survive anything; the resync covers the gap
                log.error("grant_feed.failed", error_type=type(exc).__name__)
            self.connected.clear()
            self._stop.wait(1.0)

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {GRANT_CHANNEL}")
            self.connected.set()
            self.resync()  # whatever was issued while we were not listening
            last_sync = time.monotonic()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.5, stop_after=64):
                    if self._add_notice(note.payload):
                        self.notified += 1
                if time.monotonic() - last_sync >= self.resync_seconds:
                    self.resync()
                    last_sync = time.monotonic()
