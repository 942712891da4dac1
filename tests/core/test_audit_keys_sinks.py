"""The audit key (outside the database, never printed), legacy stores, the sinks, several replicas."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, update
from support.wait import HTTP_TIMEOUT
from support.webhook import WebhookRecorder

from broker.audit import AuditKeyError, AuditLog, LocalAuditKey
from broker.audit.chain import GENESIS, canonical, event_fields
from broker.audit.checkpoints import parse
from broker.audit.guard import AuditGuard, AuditMetrics
from broker.audit.keys import load_key_file
from broker.audit.sinks import FileSink, SyslogSink, WebhookSink
from broker.audit.wiring import audit_key
from broker.config import AuditSettings, CheckpointSinkSettings
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.repo import Store, utcnow


def _store(url: str) -> Store:
    engine = make_engine(url)
    migrate(engine)
    return Store(engine)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", "audit", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "1000", **(env or {})},
    )


# -- the key --------------------------------------------------------------------------------------
def test_audit_key_file_is_created_0600_and_never_prints(tmp_path: Path) -> None:
    key = load_key_file(tmp_path / "audit.key", create=True)
    material = (tmp_path / "audit.key").read_text().strip()
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600
    assert material not in repr(key) and material not in str(key) and key.key_id in repr(key)
    assert load_key_file(tmp_path / "audit.key", create=False).key_id == key.key_id


def test_audit_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_key_file(tmp_path / "audit.key", create=True)
    (tmp_path / "audit.key").chmod(0o644)
    with pytest.raises(AuditKeyError, match=r"mode 0644: it must not be readable by group or others"):
        load_key_file(tmp_path / "audit.key", create=False)


def test_audit_key_from_settings_names_the_setting_never_the_value(tmp_path: Path) -> None:
    good = secrets.token_hex(32)
    assert audit_key(AuditSettings(key=good), tmp_path, create=False).key_id.startswith("local:")  # type: ignore[arg-type]
    assert not (tmp_path / "audit.key").exists()
    bad = "zz" + secrets.token_hex(31)
    with pytest.raises(AuditKeyError, match=r"^audit.key: the audit key must be hex") as err:
        audit_key(AuditSettings(key=bad), tmp_path, create=False)  # type: ignore[arg-type]
    assert bad not in str(err.value)
    with pytest.raises(AuditKeyError, match=r"at least 32 bytes"):
        audit_key(AuditSettings(key="ab" * 16), tmp_path, create=False)  # type: ignore[arg-type]


def test_chain_keyed_with_another_key_stops_the_broker_from_appending(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'b.db'}")
    AuditLog(store, LocalAuditKey(secrets.token_bytes(32))).record("task.opened", actor="a")
    other = AuditLog(store, LocalAuditKey(secrets.token_bytes(32)))
    with pytest.raises(AuditKeyError, match=r"the audit chain is keyed with local:\w+ but this broker's audit key"):
        other.check_key()
    with pytest.raises(AuditKeyError):
        other.record("task.opened", actor="b")
    store.engine.dispose()


def test_verify_cli_never_creates_a_key_and_requires_a_checkpoint(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'broker.db'}")
    AuditLog(store, load_key_file(tmp_path / "audit.key", create=True)).record("task.opened", actor="a")
    store.engine.dispose()
    no_checkpoint = _cli("--data-dir", str(tmp_path))
    assert no_checkpoint.returncode == 1 and "no exported checkpoint" in no_checkpoint.stderr
    (tmp_path / "audit.key").rename(tmp_path / "elsewhere.key")
    missing = _cli("--data-dir", str(tmp_path), "--no-checkpoints")
    assert missing.returncode == 1 and "audit.key does not exist" in missing.stderr
    assert not (tmp_path / "audit.key").exists()
    moved = _cli("--data-dir", str(tmp_path), "--no-checkpoints", "--key-file", str(tmp_path / "elsewhere.key"))
    assert moved.returncode == 0 and "intact: 2 events" in moved.stdout


# -- a store written before the chain was keyed -----------------------------------------------------
def _legacy_append(store: Store, n: int) -> None:
    """What the previous release wrote: plain SHA-256 links, head without a key id."""
    with store.write() as conn:
        head = conn.execute(t.audit_head.select()).one()
        prev, seq = head.hash, head.seq
        for i in range(n):
            seq += 1
            event = {
                "seq": seq,
                "event_id": uuid.uuid4().hex,
                "ts": utcnow(),
                "kind": "decision.allowed",
                "actor": "old-agent",
                "task_id": f"tsk_{i}",
                "outcome": "allow",
                "data": {"i": i},
            }
            digest = hashlib.sha256(prev.encode() + b"\n" + canonical(event_fields(event))).hexdigest()
            conn.execute(insert(t.audit_events).values(**event, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(update(t.audit_head).values(seq=seq, hash=prev))


def test_legacy_store_is_anchored_and_its_old_rows_are_protected_from_then_on(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'b.db'}")
    _legacy_append(store, 20)
    audit = AuditLog(store, LocalAuditKey(secrets.token_bytes(32)))
    unkeyed = audit.verify()
    assert unkeyed.ok and unkeyed.keyed_from is None and "not keyed yet" in unkeyed.summary()
    audit.check_key()  # an unkeyed chain is accepted: it is keyed on the first write
    assert audit.anchor() and not audit.anchor()
    audit.record("task.opened", actor="new-agent")
    result = audit.verify()
    assert result.ok and result.keyed_from == 21 and result.events == 22
    assert "20 legacy events before the key anchor at event 21" in result.summary()
    anchor = audit.events(kind="audit.chain_keyed")[0]
    assert anchor.data["legacy_events"] == 20 and anchor.prev_hash == anchor.data["legacy_head"]

    # re-chaining the legacy prefix with plain SHA-256 (which needs no key) breaks the anchor's link
    with store.write() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(
                t.audit_events.select().where(t.audit_events.c.seq <= 20).order_by(t.audit_events.c.seq)
            )
        ]
        prev = GENESIS
        for row in rows:
            row["actor"] = "rewritten"
            digest = hashlib.sha256(prev.encode() + b"\n" + canonical(event_fields(row))).hexdigest()
            conn.execute(
                update(t.audit_events)
                .where(t.audit_events.c.seq == row["seq"])
                .values(actor="rewritten", prev_hash=prev, hash=digest)
            )
            prev = digest
    broken = audit.verify()
    assert not broken.ok and broken.problem == "event 21 does not link to the event before it"
    store.engine.dispose()


# -- sinks ----------------------------------------------------------------------------------------
def _guard(
    audit: AuditLog,
    sinks: list,
    registry: CollectorRegistry,
    alert=None,  # type: ignore[no-untyped-def]
    replica: str = "r1",
) -> AuditGuard:
    return AuditGuard(
        audit,
        sinks,
        AuditMetrics(registry),
        alert=alert,
        checkpoint_interval=3600,
        verify_interval=3600,
        replica=replica,
    )


def test_checkpoints_reach_syslog_and_a_webhook_and_verify_there(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'b.db'}")
    key_bytes = secrets.token_bytes(32)
    key = LocalAuditKey(key_bytes)
    audit = AuditLog(store, key)
    audit.record("task.opened", actor="a")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(30)
    hook = WebhookRecorder("/checkpoints")
    try:
        sinks = [
            FileSink(tmp_path / "cp.jsonl"),
            SyslogSink(f"127.0.0.1:{udp.getsockname()[1]}", "local3"),
            WebhookSink(hook.url),
        ]
        assert _guard(audit, sinks, CollectorRegistry()).run_full().ok
        datagram = udp.recv(8192).decode()
        assert datagram.startswith(f"<{19 * 8 + 5}>nhi-broker-audit: {{")  # local3.notice
        from_syslog = parse([datagram + "\n"], key, source="syslog")
        from_webhook = parse([json.dumps(hook.requests[0]) + "\n"], key, source="webhook")
        from_file = parse((tmp_path / "cp.jsonl").read_text().splitlines(keepends=True), key, source="file")
        assert not from_syslog.problems and not from_webhook.problems
        assert from_syslog.checkpoints == from_webhook.checkpoints == from_file.checkpoints
        assert from_file.checkpoints[0].seq == 2
        # lines collected from syslog work as `audit verify --checkpoints`
        (tmp_path / "collected.log").write_text(f"Dec  1 01:00:00 host {datagram}\n")
        (tmp_path / "audit.key").write_text(key_bytes.hex())
        (tmp_path / "audit.key").chmod(0o600)
        store.engine.dispose()
        cmd = (
            "--database-url",
            f"sqlite:///{tmp_path / 'b.db'}",
            "--data-dir",
            str(tmp_path),
            "--checkpoints",
            str(tmp_path / "collected.log"),
        )
        ok = _cli(*cmd)
        assert ok.returncode == 0 and "latest checkpoint: event 2" in ok.stdout, ok.stderr
        (tmp_path / "audit.key").write_text(secrets.token_hex(32))  # not the key that signed them
        wrong_key = _cli(*cmd)
        assert wrong_key.returncode == 1 and "not the audit key" in wrong_key.stderr
    finally:
        udp.close()
        hook.close()


def test_a_failing_sink_is_counted_and_alerted_and_the_others_still_get_the_checkpoint(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'b.db'}")
    audit = AuditLog(store, LocalAuditKey(secrets.token_bytes(32)))
    audit.record("task.opened", actor="a")
    down = WebhookRecorder()
    down.fail_next = 10
    alerts: list[dict[str, object]] = []

    class Collect:
        def send(self, payload: dict[str, object]) -> None:
            alerts.append(payload)

    registry = CollectorRegistry()
    try:
        guard = _guard(audit, [WebhookSink(down.url), FileSink(tmp_path / "cp.jsonl")], registry, Collect())
        assert guard.run_full().ok
        audit.record("task.opened", actor="b")
        assert guard.run_incremental().ok  # still failing: counted again, alerted once
    finally:
        down.close()
    assert registry.get_sample_value("nhi_audit_checkpoint_export_failures_total", {"sink": "webhook"}) == 2
    assert alerts == [
        {"event": "audit.checkpoint_export_failed", "sink": "webhook", "error": "checkpoint sink webhook: status 500"}
    ]
    assert len((tmp_path / "cp.jsonl").read_text().splitlines()) == 2
    store.engine.dispose()


def test_sink_settings_refuse_credentials_in_the_url_and_need_a_target() -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        CheckpointSinkSettings(kind="webhook", url="https://user:pw@example.test/hook")
    with pytest.raises(ValueError, match="needs address"):
        CheckpointSinkSettings(kind="syslog")


# -- several replicas on one PostgreSQL ---------------------------------------------------------------
@pytest.mark.postgres
def test_replicas_anchor_once_append_one_chain_and_export_safely_to_one_sink(pg_database: str, tmp_path: Path) -> None:
    key_bytes = secrets.token_bytes(32)
    replicas = [AuditLog(_store(pg_database), LocalAuditKey(key_bytes)) for _ in range(3)]
    barrier = threading.Barrier(3)
    anchored: list[bool] = []

    def start(audit: AuditLog) -> None:
        barrier.wait()
        anchored.append(audit.anchor())

    threads = [threading.Thread(target=start, args=(a,)) for a in replicas]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(anchored) == [False, False, True]

    sink = tmp_path / "shared-checkpoints.jsonl"
    guards = [_guard(a, [FileSink(sink)], CollectorRegistry(), replica=f"r{n}") for n, a in enumerate(replicas)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(audit: AuditLog, n: int) -> None:
        for i in range(40):
            audit.record("decision.allowed", actor=f"r{n}", data={"i": i})

    def export(guard: AuditGuard) -> None:
        try:
            while not stop.is_set():
                assert guard.run_incremental().ok
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(a, n)) for n, a in enumerate(replicas)]
    exporters = [threading.Thread(target=export, args=(g,)) for g in guards]
    for th in writers + exporters:
        th.start()
    for th in writers:
        th.join()
    stop.set()
    for th in exporters:
        th.join()
    assert errors == []
    for g in guards:
        assert g.run_incremental().ok
    found = parse(sink.read_text().splitlines(keepends=True), LocalAuditKey(key_bytes), source="shared")
    assert not found.problems and not found.notes
    assert max(c.seq for c in found.checkpoints) == 121  # the anchor and 3 x 40 events
    assert {c.replica for c in found.checkpoints} == {"r0", "r1", "r2"}
    result = replicas[0].verify(found.checkpoints)
    assert result.ok and result.events == 121
    for a in replicas:
        a.store.engine.dispose()


# -- the scheduled job ----------------------------------------------------------------------------------
def test_running_guard_checkpoints_new_events_and_alerts_on_tampering_found_by_its_schedule(tmp_path: Path) -> None:
    from sqlalchemy import text

    from broker.chain.alerts import WebhookAlerter

    store = _store(f"sqlite:///{tmp_path / 'b.db'}")
    audit = AuditLog(store, LocalAuditKey(secrets.token_bytes(32)))
    hook = WebhookRecorder()
    alerter = WebhookAlerter(hook.url, timeout=HTTP_TIMEOUT)
    registry = CollectorRegistry()
    sink = tmp_path / "cp.jsonl"
    guard = AuditGuard(
        audit,
        [FileSink(sink)],
        AuditMetrics(registry),
        alert=alerter,
        checkpoint_interval=0.1,
        verify_interval=0.3,
        replica="r1",
    ).start()
    try:
        assert guard.first_run.wait(60)  # the start-up verification keyed the empty chain
        audit.record("task.opened", actor="a")
        deadline = time.monotonic() + 60
        while registry.get_sample_value("nhi_audit_last_checkpoint_seq") != 2:
            assert time.monotonic() < deadline, "the new event was never checkpointed"
            time.sleep(0.05)
        with store.write() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
        alert = hook.wait_for("event", "audit.chain_broken", timeout=60)  # found by the full walk
        assert alert["problem"].startswith("event 2 was modified") and alert["replica"] == "r1"
        assert registry.get_sample_value("nhi_audit_chain_intact") == 0
    finally:
        guard.stop()
        alerter.close()
        hook.close()
        store.engine.dispose()
    # the anchor (start-up) and event 2 were checkpointed; nothing after the tampering was signed
    assert [json.loads(line)["seq"] for line in sink.read_text().splitlines()] == [1, 2]


@pytest.mark.openbao
def test_the_composed_broker_alerts_its_configured_webhook_when_the_chain_is_tampered_with(
    openbao, tmp_path: Path
) -> None:
    from sqlalchemy import text
    from support.broker import start_broker

    hook = WebhookRecorder()
    running = start_broker(
        tmp_path / "data", openbao, alert_webhook_url=hook.url, audit={"checkpoint_interval_seconds": 3600}
    )
    try:
        guard = running.container.audit_guard
        assert guard.run_full().ok  # what the runner's start-up verification does
        assert (tmp_path / "data" / "audit-checkpoints.jsonl").exists()
        with running.container.store.write() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"))
        assert not guard.run_full().ok
        alert = hook.wait_for("event", "audit.chain_broken")
        assert alert["problem"].startswith("event 3 was modified")
        metrics = running.container.metrics.registry
        assert metrics.get_sample_value("nhi_audit_chain_intact") == 0
    finally:
        running.stop()
        hook.close()


@pytest.mark.openbao
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_untouched_store_verifies_after_the_broker_restarts(
    backend: str, openbao, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from support.broker import start_broker

    url = "" if backend == "sqlite" else request.getfixturevalue("pg_database")
    data = tmp_path / "data"
    seqs = []
    for run in range(2):
        running = start_broker(data, openbao, database_url=url)
        try:
            guard = running.container.audit_guard
            guard.tick()  # the runner's first tick: key the chain, walk it against the sink, checkpoint
            assert guard.first_run.is_set() and guard.last_result is not None and guard.last_result.ok
            with running.agent().task("demo", purpose=f"run {run}") as task:
                task.credential("db.read", "demo-data")
            guard.stop()  # what the runner does last: verify the tail, export the final checkpoint
            assert guard.last_result.ok and guard.last_exported is not None
            seqs.append(guard.last_exported.seq)
        finally:
            running.stop()
    assert seqs[1] > seqs[0]
    lines = [json.loads(x) for x in (data / "audit-checkpoints.jsonl").read_text().splitlines()]
    assert len({x["chain"] for x in lines}) == 1  # one chain across restarts: one key anchor
    args = ["--data-dir", str(data)] + (["--database-url", url] if url else [])
    # a PostgreSQL store's replicas share a configured audit key (no key file in the data dir)
    from support.broker import AUDIT_KEY

    verify = _cli(*args, env={"NHI_BROKER_AUDIT__KEY": AUDIT_KEY} if url else None)
    assert verify.returncode == 0 and f"latest checkpoint: event {seqs[1]}" in verify.stdout, verify.stderr
