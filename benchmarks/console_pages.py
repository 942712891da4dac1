"""What the console's read-only pages cost on a large store: the audit page's verification status
(a full walk once, then the tail) and the task list's newest-first page.

    python benchmarks/console_pages.py [--events 20000] [--tasks 100000] [--database-url URL]

Prints the time of the first audit reading (a full walk), of a reading after 100 new events (the
tail only), and of the first and a later page of the task list (50 rows, newest first, keyset)
with and without a filter.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry
from sqlalchemy import insert

from broker.audit import AuditLog, LocalAuditKey
from broker.audit.guard import AuditGuard, AuditMetrics
from broker.audit.reading import AuditReader
from broker.audit.sinks import FileSink
from broker.models import TaskState
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.repo import Store


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--tasks", type=int, default=100000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nhi-console-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        migrate(engine)
        store = Store(engine)
        audit = AuditLog(store, LocalAuditKey(secrets.token_bytes(32)))
        audit.anchor()
        data = {"grant_id": "grt_" + "x" * 24, "backend": "vault_token", "tier": "medium", "ttl_seconds": 900}
        for i in range(args.events):
            audit.record("credential.issued", actor="agent", task_id=f"tsk_{i % 97}", outcome="issued", data=data)
        guard = AuditGuard(
            audit,
            [FileSink(Path(tmp) / "cp.jsonl")],
            AuditMetrics(CollectorRegistry()),
            alert=None,
            checkpoint_interval=3600,
            verify_interval=3600,
            replica="bench",
        )
        reader = AuditReader(audit, guard, full_every_seconds=3600, max_age_seconds=0)
        first, full_ms = timed(reader.reading)
        for _ in range(100):
            audit.record("credential.issued", actor="agent", task_id="tsk_tail", outcome="issued", data=data)
        tail, tail_ms = timed(reader.reading)
        assert first.ok and first.full and tail.ok and not tail.full
        print(f"audit reading, full walk of {first.walked.events} events: {full_ms:.0f} ms")
        print(f"audit reading, tail of {tail.walked.events} new events: {tail_ms:.1f} ms")

        now = datetime.now(UTC)
        rows = [
            {
                "task_id": "tsk_" + uuid.uuid4().hex,
                "agent": f"agent-{i % 50}",
                "profile": "demo",
                "purpose": "bench",
                "state": (TaskState.ACTIVE if i % 10 == 0 else TaskState.ENDED).value,
                "created_at": now - timedelta(seconds=args.tasks - i),
                "expires_at": now + timedelta(hours=1),
            }
            for i in range(args.tasks)
        ]
        with engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(t.tasks), rows[start : start + 5000])
        with store.read() as conn:
            page, first_ms = timed(lambda: store.list_tasks(conn, limit=51))
            last = page[-1]
            _, next_ms = timed(lambda: store.list_tasks(conn, before=(last.created_at, last.task_id), limit=51))
            _, active_ms = timed(lambda: store.list_tasks(conn, states=(TaskState.ACTIVE,), agent="agent-0", limit=51))
        print(f"task list over {args.tasks} tasks, first page: {first_ms:.1f} ms; next page: {next_ms:.1f} ms")
        print(f"task list, active tasks of one agent: {active_ms:.1f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
