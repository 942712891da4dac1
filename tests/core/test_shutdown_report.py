"""Shutdown tells the truth: revocations confirmed, revocations pending, where the pending complete."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from support.broker import start_broker

from broker.cli.up import end_active_tasks, report_backlog
from broker.openbao_server import start_dev_server
from broker.store import tables as t

pytestmark = pytest.mark.openbao


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_shutdown_reports_done_and_pending_revocations_and_where_the_pending_complete(tmp_path, capsys):
    bao = start_dev_server(log_path=tmp_path / "bao.log")
    running = start_broker(tmp_path / "data", bao, workers=False)
    try:
        agent = running.agent()
        first = agent.open_task("demo", "ended while OpenBao answers")
        agent.request_credential(first["task_id"], "db.read", "demo-data")
        capsys.readouterr()
        report = end_active_tasks(running.container)
        assert (report.tasks_ended, report.done, report.pending, report.outbox_pending) == (1, 1, 0, 0)
        out = _flat(capsys.readouterr().err)
        assert "ended 1 active task(s): 1 revocation(s) done, 0 pending" in out
        assert "every revocation was confirmed by its backend" in out and "outbox" not in out

        second = agent.open_task("demo", "ended while OpenBao is down")
        agent.request_credential(second["task_id"], "db.read", "demo-data")
        bao.stop()
        report = end_active_tasks(running.container)
        assert (report.tasks_ended, report.done, report.pending, report.outbox_pending) == (1, 0, 1, 1)
        out = _flat(capsys.readouterr().err)
        assert "ended 1 active task(s): 0 revocation(s) done, 1 pending" in out
        assert "revoked what they held" not in out and "every revocation was confirmed" not in out
        db = running.container.settings.resolved_database_url()
        assert (
            f"1 revocation(s) pending in the durable outbox of {db}: not confirmed by their backend yet; "
            f"they complete when the broker next starts on this store "
            f"(nhi-broker up --data-dir {tmp_path / 'data'})"
        ) in out
        # the report matches the store: the revocation is a pending outbox row, the task is ended
        with running.container.store.read() as conn:
            states = (
                conn.execute(select(t.revocations.c.state).where(t.revocations.c.task_id == second["task_id"]))
                .scalars()
                .all()
            )
            task_state = conn.execute(
                select(t.tasks.c.state).where(t.tasks.c.task_id == second["task_id"])
            ).scalar_one()
        assert states == ["pending"] and task_state == "ended"

        # `serve` ends nothing, and names the other replicas (on PostgreSQL) or the next start
        serve = report_backlog(running.container)
        assert (serve.tasks_ended, serve.outbox_pending) == (0, 1)
        out = _flat(capsys.readouterr().err)
        assert "ended" not in out and "1 revocation(s) pending in the durable outbox" in out
    finally:
        running.stop()
        bao.stop()


def test_shutdown_message_names_other_replicas_when_the_store_is_shared():
    from broker.cli.shutdown import ShutdownReport

    report = ShutdownReport(
        tasks_ended=0,
        tasks_failed=0,
        done=0,
        pending=0,
        outbox_pending=3,
        store="postgresql+psycopg://broker:***@db/broker",
        shared_store=True,
    )
    text = report.message(restart_hint="nhi-broker serve --config ...")
    assert "3 revocation(s) pending in the durable outbox of postgresql+psycopg://broker:***@db/broker" in text
    assert "by the revocation worker of any replica running on this database, or when the broker next" in text
