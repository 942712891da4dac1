"""Throughput of ``nhi-broker serve --workers N`` on PostgreSQL next to raw OpenBao token creates,
measured in one run (called by ``benchmarks/issue_latency.py --workers-pg``).

Real everything: an OpenBao dev server, a fresh database on the PostgreSQL at 127.0.0.1:5432
(a private cluster if none answers; tests/support/postgres.py), ``nhi-broker bootstrap --demo``,
then one ``serve --workers N`` process (production config: ``dev_mode: false``, the dev issuer's
key as a configured issuer). K agents in threads, each with its own keep-alive connection (the
kernel spreads connections over the workers), request ``db.read`` on ``demo-data`` (a
``vault_token`` child token, monitor tier) in tasks of 10 requests, a fresh identity JWT per
request minted ahead of the clock. Raw: K threads calling ``POST auth/token/create`` on the same
OpenBao.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from support.postgres import find_or_start  # noqa: E402
from support.replicas import base_config, bootstrap, make_replica, replica_env  # noqa: E402

from broker.identity import DevIssuer  # noqa: E402
from broker.openbao_server import start_dev_server  # noqa: E402

STEPS_PER_TASK = 10


@dataclass(frozen=True, slots=True)
class Throughput:
    workers: int
    agents: int
    broker_per_s: float
    raw_per_s: float
    broker_requests: int
    raw_requests: int
    errors: int

    @property
    def ratio(self) -> float:
        return self.broker_per_s / self.raw_per_s if self.raw_per_s else 0.0


def _run(agents: int, per_agent: int, make_call: object) -> tuple[float, int]:
    """K threads each doing ``per_agent`` calls after a common start; (calls per second, errors)."""
    barrier = threading.Barrier(agents + 1)
    errors = [0]

    def agent() -> None:
        call = make_call()  # type: ignore[operator]
        barrier.wait()
        for _ in range(per_agent):
            try:
                call()
            except Exception:
                errors[0] += 1

    threads = [threading.Thread(target=agent) for _ in range(agents)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return agents * per_agent / (time.perf_counter() - t0), errors[0]


def workers_pg_throughput(workers: int = 2, agents: int = 8, requests: int = 400) -> Throughput:
    per_agent = max(STEPS_PER_TASK, requests // agents)
    pg = find_or_start()
    if isinstance(pg, str):
        raise SystemExit(f"--workers-pg needs PostgreSQL: {pg}")
    import psycopg

    db = "nhi_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    base = Path(tempfile.mkdtemp(prefix="nhi-bench-workers-", dir="/tmp"))
    bao = start_dev_server(log_path=base / "bao.log")
    server = None
    try:
        issuer = DevIssuer.load_or_create(base / "issuer")
        url = f"postgresql+psycopg://{pg.superuser}@{pg.host}:{pg.port}/{db}"
        config = {**base_config(base, database_url=url, openbao_addr=bao.address, issuer=issuer), "log_level": "ERROR"}
        env = replica_env(bao.root_token.reveal())
        bootstrap(base, config, env, "--demo")
        server = make_replica(base, "serve", config, env)
        server.args = ("--workers", str(workers))
        server.start()
        server.wait_ready()
        root = {"X-Vault-Token": bao.root_token.reveal()}

        def raw_call() -> object:
            c = httpx.Client(base_url=bao.address, headers=root, timeout=30)
            return lambda: c.post(
                "/v1/auth/token/create", json={"policies": ["default"], "ttl": "3600s"}
            ).raise_for_status()

        def broker_call() -> object:
            c = httpx.Client(base_url=server.url, timeout=60)  # type: ignore[union-attr]
            tokens = iter([issuer.mint("demo-agent", ttl_seconds=3600) for _ in range(per_agent * 2 + 20)])
            state = {"task": "", "steps": STEPS_PER_TASK}

            def call() -> None:
                if state["steps"] >= STEPS_PER_TASK:
                    r = c.post(
                        "/v1/tasks",
                        json={"profile": "demo", "purpose": "throughput"},
                        headers={"Authorization": f"Bearer {next(tokens)}"},
                    )
                    r.raise_for_status()
                    state["task"], state["steps"] = r.json()["task_id"], 0
                state["steps"] = int(state["steps"]) + 1
                c.post(
                    f"/v1/tasks/{state['task']}/credentials",
                    json={"action": "db.read", "resource": "demo-data"},
                    headers={"Authorization": f"Bearer {next(tokens)}"},
                ).raise_for_status()

            return call

        _run(agents, 5, broker_call)  # warm up every worker's caches and connections
        raw_per_s, raw_errors = _run(agents, per_agent, raw_call)
        broker_per_s, broker_errors = _run(agents, per_agent, broker_call)
        return Throughput(
            workers=workers,
            agents=agents,
            broker_per_s=broker_per_s,
            raw_per_s=raw_per_s,
            broker_requests=agents * per_agent,
            raw_requests=agents * per_agent,
            errors=raw_errors + broker_errors,
        )
    finally:
        if server is not None:
            server.stop()
        bao.stop()
        with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def print_throughput(t: Throughput) -> None:
    print(
        f"\n{t.agents} agents, serve --workers {t.workers} on PostgreSQL: broker {t.broker_per_s:.1f} req/s "
        f"({t.broker_requests} requests), raw auth/token/create {t.raw_per_s:.1f} req/s "
        f"({t.raw_requests}); ratio {t.ratio:.1%} (target >= 40%); errors {t.errors}"
    )


if __name__ == "__main__":
    print_throughput(workers_pg_throughput())
