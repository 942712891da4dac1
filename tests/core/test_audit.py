"""The audit trail is hash-chained: modification, insertion and deletion are detected."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import delete, select, update

from broker.audit import AuditLog
from broker.audit.keys import load_key_file
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.repo import Store


@pytest.fixture()
def audit(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    migrate(engine)
    log = AuditLog(Store(engine), load_key_file(tmp_path / "audit.key", create=True))
    for i in range(5):
        log.record("decision.allowed", actor="agent-a", task_id=f"tsk_{i}", outcome="allow", data={"i": i})
    yield log
    engine.dispose()


def test_audit_verify_accepts_untouched_chain(audit):
    result = audit.verify()
    assert result.ok and result.events == 6  # the key anchor and the five events


def test_audit_verify_detects_modified_event(audit):
    with audit.store.write() as conn:
        conn.execute(update(t.audit_events).where(t.audit_events.c.seq == 3).values(outcome="deny"))
    result = audit.verify()
    assert not result.ok and result.seq == 3 and "modified" in result.problem


def test_audit_verify_detects_deleted_event_in_the_middle(audit):
    with audit.store.write() as conn:
        conn.execute(delete(t.audit_events).where(t.audit_events.c.seq == 2))
    result = audit.verify()
    assert not result.ok and "missing" in result.problem


def test_audit_verify_detects_deleted_last_event(audit):
    with audit.store.write() as conn:
        conn.execute(delete(t.audit_events).where(t.audit_events.c.seq == 6))
    result = audit.verify()
    assert not result.ok and "deleted" in result.problem


def test_audit_verify_detects_rehashed_forgery_of_one_event(audit):
    # an attacker who rewrites one event and recomputes its hash still breaks the next link
    import hashlib
    import json

    with audit.store.write() as conn:
        row = conn.execute(select(t.audit_events).where(t.audit_events.c.seq == 2)).one()
        conn.execute(
            update(t.audit_events)
            .where(t.audit_events.c.seq == 2)
            .values(hash=hashlib.sha256(row.prev_hash.encode() + json.dumps({"forged": 1}).encode()).hexdigest())
        )
    assert not audit.verify().ok


def test_audit_verify_cli_exits_1_on_tampering(audit, tmp_path):
    cmd = [sys.executable, "-m", "broker.cli", "audit", "verify", "--data-dir", str(tmp_path), "--no-checkpoints"]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0 and "intact: 6 events" in ok.stdout
    with audit.store.write() as conn:
        conn.execute(update(t.audit_events).where(t.audit_events.c.seq == 2).values(actor="someone-else"))
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 1 and "event 2 was modified" in bad.stderr
