"""A credential request touches the store a bounded number of times (issue 14).

Counted with SQLAlchemy event hooks on the real store of a real broker (SQLite, real OpenBao),
for the statements the request's own threads run: one write transaction holds the decision, the
grant and both audit events (appended as one batch: one head lock, one insert (executemany), one head
update); the task's history is read once; the registry (agent, profile, resource) comes from the
in-process cache while nothing changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from broker.client import CredentialDenied

pytestmark = pytest.mark.openbao

# the request's threads: uvicorn's event loop (main thread of the server is the test's thread
# here, so only the worker threads the sync routes and dependencies run in count)
REQUEST_THREAD_PREFIX = "AnyIO worker thread"


@dataclass
class Counts:
    statements: list[str] = field(default_factory=list)
    transactions: list[list[str]] = field(default_factory=list)  # statements of each committed write
    connections: int = 0


@contextmanager
def counting(engine: Any) -> Iterator[Counts]:
    counts = Counts()
    current: dict[int, list[str]] = {}

    def ours() -> bool:
        return threading.current_thread().name.startswith(REQUEST_THREAD_PREFIX)

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if ours():
            counts.statements.append(statement)
            current.setdefault(threading.get_ident(), []).append(statement)

    def on_checkout(*args: Any) -> None:
        if ours():
            counts.connections += 1
            current[threading.get_ident()] = []

    def on_commit(conn: Any) -> None:
        if ours():
            counts.transactions.append(current.pop(threading.get_ident(), []))

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(engine, "commit", on_commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine.pool, "checkout", on_checkout)
        event.remove(engine, "commit", on_commit)


def writes(counts: Counts, table: str) -> list[list[str]]:
    return [tx for tx in counts.transactions if any(f"INSERT INTO {table}" in s for s in tx)]


def reads_of(counts: Counts, table: str) -> int:
    return sum(1 for s in counts.statements if s.lstrip().startswith("SELECT") and f"FROM {table}" in s)


def test_credential_request_writes_decision_grant_and_audit_in_one_transaction(broker):
    engine = broker.container.store.engine
    with broker.agent().task("demo", purpose="count round trips") as task:
        task.credential("db.read", "demo-data")  # the first request also writes the task's parent handle
        with counting(engine) as counts:
            cred = task.credential("db.read", "demo-data")
        assert cred.decision["outcome"] == "allow"
        # one transaction carries the decision, the grant and both audit events
        decision_tx = writes(counts, "decisions")
        assert len(decision_tx) == 1, counts.transactions
        tx = decision_tx[0]
        assert any("INSERT INTO grants" in s for s in tx)
        # both audit events in one batch: the head locked and advanced once, one insert (executemany),
        # the head's hash set once (three statements, not three per event)
        assert sum("INSERT INTO audit_events" in s for s in tx) == 1, tx
        assert sum(s.lstrip().startswith("UPDATE audit_head") for s in tx) == 2, tx
        issued = broker.container.audit.events(task_id=task.task_id, kind="credential.issued")[-1]
        allowed = broker.container.audit.events(task_id=task.task_id, kind="decision.allowed")[-1]
        assert issued.seq == allowed.seq + 1 and issued.prev_hash == allowed.hash
        assert issued.data["decision_id"] == allowed.data["decision_id"] == cred.decision["decision_id"]
        assert broker.container.audit.verify().ok
        # the other committed writes: at most the replay guard's seen-token record
        others = [t for t in counts.transactions if t is not tx]
        assert all(all("seen_jti" in s or not s.lstrip().startswith("INSERT") for s in t) for t in others), others
        assert len(others) <= 1
        # the chain history (decisions + chain events) is read once per request
        assert reads_of(counts, "decisions") == 1, counts.statements
        assert reads_of(counts, "chain_events") == 1
        # the registry comes from the cache: no agent, profile or resource rows read
        for table in ("agents", "agent_identities", "profiles", "resources"):
            assert reads_of(counts, table) == 0, (table, counts.statements)
        # 13: the replay guard's insert; the read (registry version twice: authentication and the
        # request; task, decisions, chain events, grant count); the write (decision, grant, the task's
        # state under a share lock, audit head lock, one audit insert, head hash)
        assert len(counts.statements) <= 13, counts.statements
        assert sum(s.lstrip().startswith("SELECT tasks.state") for s in tx) == 1, tx
        assert counts.connections <= 4  # the replay guard, authentication, the read, the write


def test_denied_request_records_its_decision_in_one_transaction_and_issues_nothing(broker):
    engine = broker.container.store.engine
    with broker.agent().task("demo", purpose="count a denial") as task:
        with counting(engine) as counts, pytest.raises(CredentialDenied):
            task.credential("iam.modify", "demo-data")  # not an action of the profile: denied
        decision_tx = writes(counts, "decisions")
        assert len(decision_tx) == 1
        assert not writes(counts, "grants")


def test_admin_change_of_a_profile_is_honoured_on_the_next_request(broker):
    """The cache never serves a registry entry older than the last committed change."""
    admin = broker.admin()
    agent = broker.agent()
    profile = admin.get("profiles", "demo")
    fields = ("allowed_actions", "ceiling", "max_lifetime_seconds", "description")
    try:
        with agent.task("demo", purpose="cache invalidation") as task:
            assert task.credential("db.read", "demo-data").decision["outcome"] == "allow"
            narrowed = {k: profile[k] for k in fields}
            narrowed["allowed_actions"] = [a for a in profile["allowed_actions"] if a != "db.read"]
            admin.put("profiles", "demo", narrowed)
            with pytest.raises(CredentialDenied):
                task.credential("db.read", "demo-data")
    finally:
        admin.put("profiles", "demo", {k: profile[k] for k in fields})


def test_post_issuance_check_of_a_monitor_request_reads_nothing(broker):
    """A monitor-tier decision's detectors run after issuance on what the request already read under
    the task's lock (the history without this request, the profile, the resource): the check
    itself touches the store only to escalate."""
    engine = broker.container.store.engine
    statements: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread().name.startswith("chain-post-issuance"):
            statements.append(statement)

    with broker.agent().task("demo", purpose="post-issuance reads") as task:
        task.credential("db.read", "demo-data")
        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            for _ in range(3):
                cred = task.credential("db.read", "demo-data")
                assert cred.decision["detection"] == "post_issuance"
            broker.container.chain.drain(30)
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
        assert statements == []
