"""The keyed audit chain: append cost, full-walk verification rate, incremental verify + checkpoint.

    python benchmarks/audit_chain.py [--events 20000] [--database-url URL]

Prints events/s for appends (one transaction each, as the broker writes them), for a full walk
(start-up and the hourly verification) and the time of one incremental verify + checkpoint export
after 1,000 new events (what the 10 s job does on a busy broker).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry

from broker.audit import AuditLog, LocalAuditKey
from broker.audit.guard import AuditGuard, AuditMetrics
from broker.audit.sinks import FileSink
from broker.store.db import make_engine, migrate
from broker.store.repo import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nhi-audit-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        migrate(engine)
        audit = AuditLog(Store(engine), LocalAuditKey(secrets.token_bytes(32)))
        data = {"grant_id": "grt_" + "x" * 24, "backend": "vault_token", "tier": "medium", "ttl_seconds": 900}
        started = time.perf_counter()
        for i in range(args.events):
            audit.record(
                "credential.issued", actor="bench-agent", task_id=f"tsk_{i % 500}", outcome="issued", data=data
            )
        append_s = time.perf_counter() - started
        guard = AuditGuard(
            audit,
            [FileSink(Path(tmp) / "cp.jsonl")],
            AuditMetrics(CollectorRegistry()),
            alert=None,
            checkpoint_interval=10,
            verify_interval=3600,
            replica="bench",
        )
        started = time.perf_counter()
        result = guard.run_full()
        full_s = time.perf_counter() - started
        assert result.ok, result.problem
        for i in range(1000):
            audit.record("decision.allowed", actor="bench-agent", task_id="tsk_inc", outcome="allow", data={"i": i})
        started = time.perf_counter()
        assert guard.run_incremental().ok
        inc_s = time.perf_counter() - started
        engine.dispose()
    store = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"audit chain on {store}, {args.events} events")
    print(f"  append (1 transaction each)      {args.events / append_s:8.0f} events/s")
    print(f"  full walk + checkpoint           {args.events / full_s:8.0f} events/s  ({full_s:.2f} s)")
    print(f"  1,000 new events: verify + export {inc_s * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
