"""The registry (agents, profiles, resources) cached in process, invalidated by a version counter.

Every change of an agent, profile or resource increments the one row of ``registry_version`` in the
same transaction (:meth:`broker.store.repo.Store.bump_registry`). A reader reads that row first
(one statement, in the connection it reads the task with) and takes a cached entry only when the
entry was loaded at exactly that version; otherwise it loads the row and caches it under that
version. Because the version is read before the rows, a row loaded afterwards is never older
than the version it is filed under, so a change committed on any process or replica is honoured
by every other one on its next request: no notification to lose, no time window.

Without the counter row (a schema built some other way) nothing is cached: every lookup reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from broker.store import tables as t

_VERSION = select(t.registry_version.c.version).where(t.registry_version.c.id == 1)
# bounded: a flood of lookups of names that do not exist cannot grow the cache without limit
MAX_ENTRIES = 4096


class RegistryCache:
    """Process-wide: ``{(kind, key): (version, value)}``. Thread-safe; values are frozen models."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, Any], tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def view(self, conn: Connection) -> RegistryView:
        """Read the registry's version in ``conn`` and look up through the cache at that version."""
        version = conn.execute(_VERSION).scalar()
        return RegistryView(self, conn, None if version is None else int(version))

    def lookup(self, version: int | None, key: tuple[str, Any], load: Callable[[], Any]) -> Any:
        if version is None:
            return load()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            self.hits += 1
            return entry[1]
        self.misses += 1
        value = load()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: e for k, e in self._entries.items() if e[0] == version}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            current = self._entries.get(key)
            if current is None or current[0] <= version:  # never replace a newer entry by an older one
                self._entries[key] = (version, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RegistryView:
    """Lookups at one registry version, through one connection."""

    __slots__ = ("_cache", "_conn", "version")

    def __init__(self, cache: RegistryCache, conn: Connection, version: int | None) -> None:
        self._cache = cache
        self._conn = conn
        self.version = version

    def get(self, kind: str, key: Any, load: Callable[[Connection], Any]) -> Any:
        return self._cache.lookup(self.version, (kind, key), lambda: load(self._conn))
