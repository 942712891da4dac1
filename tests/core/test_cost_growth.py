"""Cost growth (issue 14): the revocation worker's expiry sweeps — run on every tick, holding the
store's write lock — read only what expired, whatever the number of active grants and tasks.
Checked without timing: SQLite's plan for every statement the sweeps run uses the (state,
expires_at) indexes (a range), never a scan of the active rows."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from broker.store.db import make_engine, migrate
from broker.store.repo import Store, utcnow
from rotation.revocation_worker import RevocationWorker


@pytest.fixture()
def store(tmp_path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    return Store(engine)


def _plans(store: Store, run: Any) -> list[tuple[str, str]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    out = []
    with store.engine.connect() as conn:
        for statement, params in seen:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            out.append((statement, " | ".join(str(r[-1]) for r in rows)))
    return out


def test_grant_expiry_sweep_reads_a_range_of_the_state_expiry_index_not_every_active_grant(store: Store) -> None:
    worker = RevocationWorker(store, None, {}, interval=60)  # type: ignore[arg-type]  # the sweep needs no backend
    plans = _plans(store, worker.sweep_expired_grants)
    on_grants = [(s, p) for s, p in plans if "grants" in s]
    assert on_grants, plans
    for statement, plan in on_grants:
        assert "ix_grants_state_expires_at" in plan and "expires_at<" in plan, (statement, plan)
        assert "SCAN grants" not in plan, (statement, plan)


def test_task_expiry_sweep_reads_a_range_of_the_state_expiry_index_not_every_active_task(store: Store) -> None:
    def sweep() -> None:
        with store.read() as conn:
            store.expired_active_tasks(conn, utcnow())

    plans = _plans(store, sweep)
    assert plans
    for statement, plan in plans:
        assert "ix_tasks_state_expires_at" in plan and "expires_at<" in plan, (statement, plan)


def test_counting_a_tasks_active_grants_reads_that_task_only(store: Store) -> None:
    def count() -> None:
        with store.read() as conn:
            store.count_active_grants(conn, "tsk_x")

    plans = _plans(store, count)
    assert plans
    for statement, plan in plans:
        assert "ix_grants_task_state" in plan and "task_id=?" in plan, (statement, plan)


def test_the_sweep_indexes_exist_after_migration(store: Store) -> None:
    with store.engine.connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
    assert {"ix_grants_state_expires_at", "ix_tasks_state_expires_at", "ix_grants_task_state"} <= names
