"""The red team's audit attacks, replayed with raw SQL on SQLite and PostgreSQL, must be detected.

An attacker here has the database (any statement) but neither the audit key (a 0600 file in the
data dir) nor write access to the checkpoint sink. Each test performs the attack, then asserts
that the chain walk, the guard (alert webhook + metric) and ``nhi-broker audit verify`` all see it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text
from support.wait import HTTP_TIMEOUT
from support.webhook import WebhookRecorder

from broker.audit import AuditLog, LocalAuditKey
from broker.audit.chain import canonical, event_fields, keyed_digest
from broker.audit.guard import AuditGuard, AuditMetrics
from broker.audit.keys import load_key_file
from broker.audit.sinks import FileSink
from broker.chain.alerts import WebhookAlerter
from broker.store.db import make_engine, migrate
from broker.store.repo import Store

EVENTS = 40


@dataclass
class Rig:
    url: str
    data_dir: Path
    engine: Engine
    audit: AuditLog
    guard: AuditGuard
    registry: CollectorRegistry
    webhook: WebhookRecorder
    alerter: WebhookAlerter

    @property
    def sink(self) -> Path:
        return self.data_dir / "audit-checkpoints.jsonl"

    def sql(self, statement: str, **params: object) -> list[dict[str, object]]:
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [dict(r._mapping) for r in result] if result.returns_rows else []

    def intact_metric(self) -> float | None:
        return self.registry.get_sample_value("nhi_audit_chain_intact")

    def cli(self, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            sys.executable,
            "-m",
            "broker.cli",
            "audit",
            "verify",
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.url,
            *extra,
        ]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "1000"},
        )


def _fields(row: dict[str, object], **changes: object) -> dict[str, object]:
    """What the attacker hashes: the row as raw SQL returned it (SQLite gives text), edited."""
    row = {**row, **changes}
    if isinstance(row["data"], str):
        row["data"] = json.loads(row["data"])
    if isinstance(row["ts"], str):
        row["ts"] = datetime.fromisoformat(row["ts"])
    return event_fields(row)


def _guard(audit: AuditLog, data_dir: Path, registry: CollectorRegistry, alerter: WebhookAlerter) -> AuditGuard:
    return AuditGuard(
        audit,
        [FileSink(data_dir / "audit-checkpoints.jsonl")],
        AuditMetrics(registry),
        alert=alerter,
        checkpoint_interval=3600,
        verify_interval=3600,
        replica="test",
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    url = f"sqlite:///{tmp_path / 'broker.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    engine = make_engine(url)
    migrate(engine)
    audit = AuditLog(Store(engine), load_key_file(tmp_path / "audit.key", create=True))
    for i in range(EVENTS):
        audit.record("decision.allowed", actor=f"agent-{i % 3}", task_id=f"tsk_{i}", outcome="allow", data={"i": i})
    webhook = WebhookRecorder()
    alerter = WebhookAlerter(webhook.url, timeout=HTTP_TIMEOUT)
    registry = CollectorRegistry()
    guard = _guard(audit, tmp_path, registry, alerter)
    assert guard.run_full().ok  # the start-up verification: exports the first checkpoint
    yield Rig(url, tmp_path, engine, audit, guard, registry, webhook, alerter)
    alerter.close()
    webhook.close()
    engine.dispose()


def _assert_detected(rig: Rig, *fragments: str) -> None:
    result = rig.guard.run_full()
    assert not result.ok
    for fragment in fragments:
        assert fragment in (result.problem or ""), result.problem
    alert = rig.webhook.wait_for("event", "audit.chain_broken")
    assert alert["problem"] == result.problem
    assert rig.intact_metric() == 0
    assert rig.registry.get_sample_value("nhi_audit_verify_failures_total") == 1
    cli = rig.cli()
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "BROKEN" in cli.stderr


def test_untouched_chain_verifies_and_exports_a_signed_checkpoint(rig: Rig) -> None:
    result = rig.audit.verify()
    assert result.ok and result.events == EVENTS + 1 and result.keyed_from == 1
    lines = rig.sink.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["seq"] == EVENTS + 1
    assert rig.intact_metric() == 1
    cli = rig.cli()
    assert cli.returncode == 0, cli.stderr
    assert f"intact: {EVENTS + 1} events" in cli.stdout and f"checkpoint: event {EVENTS + 1}" in cli.stdout


def test_truncation_with_head_rewind_is_detected_against_the_checkpoint(rig: Rig) -> None:
    # the red team's attack: delete the last 3 rows and move the head back to the new last row
    keep = EVENTS + 1 - 3
    rig.sql("DELETE FROM audit_events WHERE seq > :keep", keep=keep)
    rig.sql("UPDATE audit_head SET seq = :keep, hash = (SELECT hash FROM audit_events WHERE seq = :keep)", keep=keep)
    # the chain alone cannot see it (that is what the checkpoint outside the database is for) ...
    assert rig.audit.verify().ok
    # ... the checkpoint does
    _assert_detected(rig, f"the store ends at event {keep}", "deleted and the head moved back")


def test_rewriting_an_actor_and_rechaining_every_event_with_another_key_is_detected(rig: Rig) -> None:
    forged_key = LocalAuditKey(secrets.token_bytes(32))  # the attacker's: they do not have ours
    rows = rig.sql("SELECT * FROM audit_events ORDER BY seq")
    prev = "0" * 64
    for row in rows:
        actor = "someone-else" if row["actor"] == "agent-1" else row["actor"]
        digest = keyed_digest(forged_key, prev, _fields(row, actor=actor))
        rig.sql(
            "UPDATE audit_events SET actor = :actor, prev_hash = :prev, hash = :hash WHERE seq = :seq",
            actor=actor,
            prev=prev,
            hash=digest,
            seq=row["seq"],
        )
        prev = digest
    rig.sql("UPDATE audit_head SET hash = :hash", hash=prev)
    _assert_detected(rig, "event 1 (the chain's key anchor) is not keyed with the audit key")


def test_rechaining_every_event_as_unkeyed_legacy_links_is_detected(rig: Rig) -> None:
    # a downgrade: pretend the store was never keyed (no anchor, plain SHA-256, head key id cleared)
    rows = rig.sql("SELECT * FROM audit_events ORDER BY seq")
    prev = "0" * 64
    for row in rows:
        kind = "task.opened" if row["kind"] == "audit.chain_keyed" else row["kind"]
        fields = _fields(row, kind=kind)
        digest = hashlib.sha256(prev.encode() + b"\n" + canonical(fields)).hexdigest()
        rig.sql(
            "UPDATE audit_events SET kind = :kind, prev_hash = :prev, hash = :hash WHERE seq = :seq",
            kind=kind,
            prev=prev,
            hash=digest,
            seq=row["seq"],
        )
        prev = digest
    rig.sql("UPDATE audit_head SET hash = :hash, key_id = NULL", hash=prev)
    # the broker restarts and keys the "legacy" chain again: the checkpoint still tells
    assert rig.audit.anchor()
    _assert_detected(rig, "differs from the checkpoint")


def test_an_edited_row_is_detected(rig: Rig) -> None:
    rig.sql("UPDATE audit_events SET outcome = 'deny' WHERE seq = 7")
    _assert_detected(rig, "event 7 was modified")


def test_an_edited_row_with_its_hash_recomputed_breaks_the_next_link(rig: Rig) -> None:
    row = rig.sql("SELECT * FROM audit_events WHERE seq = 12")[0]
    forged = keyed_digest(LocalAuditKey(secrets.token_bytes(32)), str(row["prev_hash"]), _fields(row, actor="nobody"))
    rig.sql("UPDATE audit_events SET actor = 'nobody', hash = :h WHERE seq = 12", h=forged)
    _assert_detected(rig, "event 12 was modified")


def test_a_forged_checkpoint_line_is_refused(rig: Rig) -> None:
    line = json.loads(rig.sink.read_text().splitlines()[0])
    line.update(seq=1, hash="f" * 64)  # someone without the key appends a "checkpoint" of their own
    with rig.sink.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    _assert_detected(rig, "line 2 has a signature that does not verify")


def test_new_events_are_verified_incrementally_and_checkpointed(rig: Rig) -> None:
    for i in range(5):
        rig.audit.record("task.opened", actor="agent-x", task_id=f"tsk_new_{i}")
    result = rig.guard.run_incremental()
    assert result.ok and result.events == 5
    assert [json.loads(x)["seq"] for x in rig.sink.read_text().splitlines()] == [EVENTS + 1, EVENTS + 6]
    # truncating below what this guard verified is caught without a full walk
    rig.sql("DELETE FROM audit_events WHERE seq > 30")
    rig.sql("UPDATE audit_head SET seq = 30, hash = (SELECT hash FROM audit_events WHERE seq = 30)")
    broken = rig.guard.run_incremental()
    assert not broken.ok and "the head moved back" in (broken.problem or "")
    rig.webhook.wait_for("event", "audit.chain_broken")
    assert len(rig.sink.read_text().splitlines()) == 2  # a broken chain is never checkpointed


def test_verification_passes_on_an_untouched_store_after_restart(rig: Rig) -> None:
    rig.engine.dispose()
    # a new process: new engine, key read from its file, a new guard reading the same sink
    engine = make_engine(rig.url)
    migrate(engine)
    audit = AuditLog(Store(engine), load_key_file(rig.data_dir / "audit.key", create=False))
    audit.check_key()
    assert not audit.anchor()  # already keyed: no second anchor
    audit.record("task.opened", actor="agent-a", task_id="tsk_after_restart")
    registry = CollectorRegistry()
    guard = _guard(audit, rig.data_dir, registry, rig.alerter)
    result = guard.run_full()
    assert result.ok and result.checkpoint is not None and result.checkpoint.seq == EVENTS + 1
    assert registry.get_sample_value("nhi_audit_chain_intact") == 1
    assert rig.cli().returncode == 0
    assert rig.webhook.requests == []
    engine.dispose()
