"""The console's audit status (broker.audit.reading): a full walk once, then only the tail; a
tampered event shows as broken with where; nothing exported, no alert — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from broker.audit import AuditLog
from broker.audit.guard import AuditGuard, AuditMetrics
from broker.audit.keys import load_key_file
from broker.audit.reading import AuditReader
from broker.audit.sinks import FileSink
from broker.store.db import make_engine, migrate
from broker.store.repo import Store


@dataclass
class Rig:
    engine: Engine
    audit: AuditLog
    guard: AuditGuard
    sink: Path

    def tamper(self, seq: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :seq"), {"seq": seq})

    def record(self, n: int) -> None:
        for i in range(n):
            self.audit.record("decision.allowed", actor="agent", task_id=f"tsk_{i}", outcome="allow", data={"i": i})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    url = f"sqlite:///{tmp_path / 'broker.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    engine = make_engine(url)
    migrate(engine)
    audit = AuditLog(Store(engine), load_key_file(tmp_path / "audit.key", create=True))
    audit.anchor()  # keyed, as the guard does at start-up
    sink = tmp_path / "audit-checkpoints.jsonl"
    guard = AuditGuard(
        audit,
        [FileSink(sink)],
        AuditMetrics(CollectorRegistry()),
        alert=None,
        checkpoint_interval=3600,
        verify_interval=3600,
        replica="test",
    )
    rig = Rig(engine, audit, guard, sink)
    rig.record(20)
    yield rig
    engine.dispose()


def test_reading_walks_the_chain_once_then_only_what_was_appended(rig: Rig) -> None:
    reader = AuditReader(rig.audit, rig.guard, full_every_seconds=3600, max_age_seconds=0)
    first = reader.reading()
    assert first.ok and first.full and first.walked.events == 21 and first.head_seq == 21
    rig.record(5)
    second = reader.reading()
    assert second.ok and not second.full and second.since_seq == 21 and second.walked.events == 5
    assert second.head_seq == 26
    assert not rig.sink.exists()  # read-only: no checkpoint exported


def test_reading_shows_a_tampered_event_as_broken_with_its_number(rig: Rig) -> None:
    reader = AuditReader(rig.audit, rig.guard, full_every_seconds=3600, max_age_seconds=0)
    assert reader.reading().ok
    rig.record(3)
    rig.tamper(23)
    broken = reader.reading()
    assert not broken.ok and broken.broken is not None
    assert broken.broken.seq == 23 and "event 23 was modified" in (broken.broken.problem or "")


def test_an_old_event_tampered_shows_on_the_next_full_walk(rig: Rig) -> None:
    reader = AuditReader(rig.audit, rig.guard, full_every_seconds=0, max_age_seconds=0)
    assert reader.reading().ok
    rig.tamper(5)
    again = reader.reading()
    assert again.full and not again.ok and again.broken is not None and again.broken.seq == 5


def test_a_broken_chain_the_guard_found_stays_broken_on_the_page(rig: Rig) -> None:
    assert rig.guard.run_full().ok  # the guard verified (and exported a checkpoint of) the head
    reader = AuditReader(rig.audit, rig.guard, full_every_seconds=3600, max_age_seconds=0)
    tail = reader.reading()
    assert tail.ok and not tail.full and tail.since_seq == 21  # walked on from the guard's point
    rig.tamper(4)
    assert not rig.guard.run_full().ok
    shown = reader.reading()
    assert not shown.ok and shown.broken is not None and shown.broken.seq == 4


def test_readings_are_reused_while_fresh(rig: Rig) -> None:
    reader = AuditReader(rig.audit, rig.guard, full_every_seconds=3600, max_age_seconds=3600)
    first = reader.reading()
    rig.record(2)
    assert reader.reading() is first  # no second walk within max_age
