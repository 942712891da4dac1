"""Cost growth: does a credential request get slower as its task's history grows, or as the store
fills with other tasks' active grants?

Real everything: an OpenBao dev server and the broker in-process over HTTP on loopback (SQLite
store by default, or ``--database-url postgresql+psycopg://...``), the default bundle, the demo
seed. History: a task whose chain already holds N allowed ``db.read`` decisions (rows written
straight through the store in one transaction, cloned from a real decision), then ``--requests``
``db.read`` requests on it. Grants: G active grants of another task in the store (rows written
the same way), then requests on a fresh task. Prints median/p90 per row and the ratio to the
smallest row of its dimension.

    PYTHONPATH=. .venv/bin/python benchmarks/cost_growth.py [--requests 30]
        [--history 1,100,1000] [--grants 10,1000,100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.broker import RunningBroker, start_broker

from broker.openbao_server import start_dev_server
from broker.store import tables as t
from broker.store.repo import utcnow


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def row(dimension: str, size: int, samples: list[float], base: float) -> None:
    med = statistics.median(samples)
    print(f"{dimension:<22} {size:>8} {med:>10.2f} {pct(samples, 90):>8.2f} {med / base:>10.2f}x")


def timed_requests(running: RunningBroker, task_id: str, n: int) -> list[float]:
    agent = running.agent()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        agent.request_credential(task_id, "db.read", "demo-data")
        out.append((time.perf_counter() - t0) * 1000)
    return out


def seed_history(running: RunningBroker, task_id: str, steps: int, template: dict[str, Any]) -> None:
    store = running.container.store
    now = utcnow() - timedelta(seconds=steps + 120)  # older than any burst window
    rows = []
    for i in range(steps):
        decision_id = "dec_seed" + uuid.uuid4().hex
        rows.append(
            {
                "decision_id": decision_id,
                "task_id": task_id,
                "agent": "demo-agent",
                "action": "db.read",
                "resource": "demo-data",
                "outcome": "allow",
                "tier": template["tier"],
                "mode": template["mode"],
                "ttl_seconds": template["ttl_seconds"],
                "bundle_hash": template["bundle_hash"],
                "record": {**template, "decision_id": decision_id},
                "created_at": now + timedelta(seconds=i),
                "consequence": "read",
                "sensitivity": template["inputs"].get("sensitivity"),
                "external": False,
            }
        )
    if rows:
        with store.write() as conn:
            conn.execute(t.decisions.insert(), rows)


def seed_grants(running: RunningBroker, task_id: str, count: int) -> None:
    store = running.container.store
    now = utcnow()
    batch = []
    with store.write() as conn:
        for i in range(count):
            batch.append(
                {
                    "grant_id": "grt_seed" + uuid.uuid4().hex,
                    "task_id": task_id,
                    "decision_id": "dec_seed",
                    "backend": "vault_token",
                    "resource": "demo-data",
                    "action": "db.read",
                    "lease_id": None,
                    "accessor": f"seed-accessor-{i}",
                    "fingerprints": [uuid.uuid4().hex[:32]],
                    "revocation": {"accessor": f"seed-accessor-{i}"},
                    "covered_by_task_handle": True,
                    "public": {},
                    "secret_lengths": {},
                    "issued_at": now,
                    "expires_at": now + timedelta(hours=1),
                    "state": "active",
                }
            )
            if len(batch) == 5000:
                conn.execute(t.grants.insert(), batch)
                batch = []
        if batch:
            conn.execute(t.grants.insert(), batch)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--history", default="1,100,1000")
    ap.add_argument("--grants", default="10,1000,100000")
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bao = start_dev_server(log_path=Path(tmp) / "bao.log")
        running = start_broker(Path(tmp) / "broker", bao, database_url=args.database_url)
        try:
            agent, admin = running.agent(), running.admin()
            warm = agent.open_task("demo", "warm up")["task_id"]
            first = agent.request_credential(warm, "db.read", "demo-data")
            template = admin.decision(first.decision["decision_id"])
            template = {
                k: v for k, v in template.items() if k not in ("task_id", "agent", "action", "resource", "created_at")
            }
            timed_requests(running, warm, 5)
            store = running.container.settings.resolved_database_url().split(":", 1)[0]
            print(f"# cost growth — broker {running.url}, store {store}, OpenBao {bao.address} (dev)")
            print(f"# {args.requests} db.read requests per row (monitor tier); latency per request, HTTP included")
            print(f"{'dimension':<22} {'size':>8} {'median ms':>10} {'p90 ms':>8} {'x smallest':>11}")
            base = None
            for steps in [int(s) for s in args.history.split(",")]:
                task_id = agent.open_task("demo", f"history {steps}")["task_id"]
                seed_history(running, task_id, max(0, steps - 1), template)
                agent.request_credential(task_id, "db.read", "demo-data")  # step `steps`
                samples = timed_requests(running, task_id, args.requests)
                med = statistics.median(samples)
                base = base or med
                row("task history (steps)", steps, samples, base)
            base = None
            holder = agent.open_task("demo", "holds the seeded grants")["task_id"]
            seeded = 0
            for count in [int(g) for g in args.grants.split(",")]:
                seed_grants(running, holder, count - seeded)
                seeded = count
                samples: list[float] = []
                for _ in range(max(1, args.requests // 10)):  # fresh tasks of 10 requests
                    task_id = agent.open_task("demo", f"grants {count}")["task_id"]
                    samples += timed_requests(running, task_id, 10)
                med = statistics.median(samples)
                base = base or med
                row("active grants (store)", count, samples, base)
        finally:
            running.stop()
            bao.stop()


if __name__ == "__main__":
    main()
