"""The keyed audit chain: append cost, full-walk verification rate, incremental verify + checkpoint.

    python benchmarks/audit_chain.py [--events 20000] [--database-url URL]

Prints events/s for appends (one transaction each), for a full walk (start-up and the hourly
verification) and the time of one incremental verify + checkpoint export after 1,000 new events
(what the 10 s job does on a busy broker); then a credential request's two events
(``decision.allowed`` + ``credential.issued``) in one transaction, appended one by one against one
batch (:meth:`AuditLog.batch`), in interleaved rounds: median µs per request's pair (issue 14).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
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
    parser.add_argument("--pairs", type=int, default=2000, help="request event pairs, one by one vs one batch")
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
        one_by_one, batched = _request_pairs(audit, data, args.pairs)
        assert audit.verify().ok
        engine.dispose()
    store = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"audit chain on {store}, {args.events} events")
    print(f"  append (1 transaction each)      {args.events / append_s:8.0f} events/s")
    print(f"  full walk + checkpoint           {args.events / full_s:8.0f} events/s  ({full_s:.2f} s)")
    print(f"  1,000 new events: verify + export {inc_s * 1000:7.1f} ms")
    print(f"  a request's 2 events, one by one {statistics.median(one_by_one):7.0f} µs median (1 transaction)")
    print(f"  a request's 2 events, one batch  {statistics.median(batched):7.0f} µs median (1 transaction)")


def _request_pairs(audit: AuditLog, data: dict[str, object], pairs: int) -> tuple[list[float], list[float]]:
    one_by_one: list[float] = []
    batched: list[float] = []
    for i in range(pairs):
        started = time.perf_counter()
        with audit.store.write() as conn:
            audit.append(conn, "decision.allowed", actor="bench-agent", task_id=f"tsk_p{i}", outcome="allow", data=data)
            audit.append(
                conn, "credential.issued", actor="bench-agent", task_id=f"tsk_p{i}", outcome="issued", data=data
            )
        one_by_one.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        with audit.store.write() as conn, audit.batch(conn) as batch:
            batch.append("decision.allowed", actor="bench-agent", task_id=f"tsk_b{i}", outcome="allow", data=data)
            batch.append("credential.issued", actor="bench-agent", task_id=f"tsk_b{i}", outcome="issued", data=data)
        batched.append((time.perf_counter() - started) * 1e6)
    return one_by_one, batched


if __name__ == "__main__":
    main()
