"""Engine creation and schema migration (Alembic, run at start-up)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).parent / "migrations"
# advisory lock key for schema migration ("nhim"); task locks use another namespace
MIGRATION_LOCK = 0x6E68696D


PG_CONNECT_TIMEOUT_SECONDS = 10
# a pooled PostgreSQL connection is pinged (SELECT 1) on checkout only after it sat idle this long
PING_AFTER_IDLE_SECONDS = 2.0
_IDLE_SINCE = "nhi_idle_since"


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Pessimistic disconnect handling that costs nothing under load: a connection back from the
    pool is pinged only if it sat idle for ``idle_seconds`` or more (a database restart or an idle
    timeout kills idle connections); a failed ping makes the pool discard it and connect anew.
    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more round trip per store access,
    several per credential request (docs/design-notes.md, "Round trips to PostgreSQL"). A
    connection that dies between two uses less than ``idle_seconds`` apart fails that statement;
    SQLAlchemy then invalidates the whole pool, so the request fails closed (503) and the next
    reconnects."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # new, or in use a moment ago
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
            if not getattr(dbapi_conn, "autocommit", True):
                dbapi_conn.rollback()  # end the ping's implicit transaction
        except Exception as error:  # the pool retries the checkout with a fresh connection
            raise exc.DisconnectionError(f"stale pooled connection ({type(error).__name__})") from error


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
    else:
        kwargs.update(pool_size=10, max_overflow=10)
        if "connect_timeout" not in url:  # a database that never answers fails start-up, not hangs it
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_SECONDS}
    engine = create_engine(url, **kwargs)
    if not url.startswith("sqlite"):
        ping_when_idle(engine)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent).

    On PostgreSQL the upgrade runs under a transaction-scoped advisory lock, so replicas starting
    at once on an empty database migrate one after another: the first creates the schema, the
    others wait, then find it at head and do nothing. (Transactional DDL alone is not enough: two
    concurrent ``CREATE TABLE`` of one name fail with ``pg_type_typname_nsp_index``.)"""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
