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

import os
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


def listening_sockets(port: int) -> int:
    """How many sockets LISTEN on ``port`` (Linux /proc/net/tcp): with ``serve --workers N`` each
    worker listens on its own ``SO_REUSEPORT`` socket once it serves, so N means all are up."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                count += 1
    return count


def wait_all_workers(port: int, workers: int, timeout: float = 180.0) -> None:
    """Wait until every worker serves (a worker still starting would be measured booting)."""
    deadline = time.monotonic() + timeout
    while listening_sockets(port) < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {listening_sockets(port)} of {workers} workers listen on port {port}")
        time.sleep(0.1)


def _cpu(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def _named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (PostgreSQL's backends are separate processes)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


class CpuMeter:
    """CPU seconds spent by each party of a run: the broker (the ``serve`` process and its
    workers), OpenBao, PostgreSQL (every ``postgres`` process on the machine) and the load
    generator (this process). On a machine where they all share the cores, the sum per request
    is what bounds the throughput: ``cores / CPU per request``."""

    def __init__(self, parties: dict[str, object]) -> None:
        self.parties = parties  # name -> pid (a tree) or a callable returning pids

    def snapshot(self) -> dict[str, float]:
        snap: dict[str, float] = {}
        for name, who in self.parties.items():
            pids = who() if callable(who) else _tree(int(who))  # type: ignore[call-overload]
            snap[name] = sum(_cpu(p) for p in pids)
        t = os.times()
        snap["load generator"] = t.user + t.system
        return snap

    @staticmethod
    def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
        return {k: (after[k] - before[k]) * 1000 / requests for k in after}


@dataclass(frozen=True, slots=True)
class Throughput:
    workers: int
    agents: int
    broker_per_s: float
    raw_per_s: float
    broker_requests: int
    raw_requests: int
    errors: int
    broker_cpu_ms: dict[str, float] | None = None  # CPU ms per request by party (CpuMeter)
    raw_cpu_ms: dict[str, float] | None = None

    @property
    def ratio(self) -> float:
        return self.broker_per_s / self.raw_per_s if self.raw_per_s else 0.0


def _prepare(agents: int, make_call: object) -> list[object]:
    """One call per agent, made ready (clients built, identity tokens minted) before any clock runs."""
    return [make_call() for _ in range(agents)]  # type: ignore[operator]


def _run(calls: list[object], per_agent: int) -> tuple[float, int]:
    """One thread per prepared call, each doing ``per_agent`` calls after a common start;
    (calls per second, errors)."""
    barrier = threading.Barrier(len(calls) + 1)
    errors = [0]

    def agent(call: object) -> None:
        barrier.wait()
        for _ in range(per_agent):
            try:
                call()  # type: ignore[operator]
            except Exception:
                errors[0] += 1

    threads = [threading.Thread(target=agent, args=(c,)) for c in calls]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return len(calls) * per_agent / (time.perf_counter() - t0), errors[0]


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
        wait_all_workers(server.port, workers)
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

        meter = CpuMeter(
            {"broker": server.proc.pid, "openbao": bao.process.pid, "postgres": lambda: _named("postgres")}  # type: ignore[union-attr]
        )
        _run(_prepare(agents, broker_call), 5)  # warm up every worker's caches and connections
        raw_calls, broker_calls = _prepare(agents, raw_call), _prepare(agents, broker_call)
        before = meter.snapshot()
        raw_per_s, raw_errors = _run(raw_calls, per_agent)
        middle = meter.snapshot()
        broker_per_s, broker_errors = _run(broker_calls, per_agent)
        after = meter.snapshot()
        return Throughput(
            workers=workers,
            agents=agents,
            broker_per_s=broker_per_s,
            raw_per_s=raw_per_s,
            broker_requests=agents * per_agent,
            raw_requests=agents * per_agent,
            errors=raw_errors + broker_errors,
            broker_cpu_ms=CpuMeter.per_request(middle, after, agents * per_agent),
            raw_cpu_ms=CpuMeter.per_request(before, middle, agents * per_agent),
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
    if t.broker_cpu_ms and t.raw_cpu_ms:
        cores = os.cpu_count() or 1
        print(f"CPU ms per request, by party (all share this machine's {cores} cores):")
        print(f"  {'party':<16} {'broker run':>11} {'raw run':>9}")
        for party in t.broker_cpu_ms:
            print(f"  {party:<16} {t.broker_cpu_ms[party]:>11.2f} {t.raw_cpu_ms[party]:>9.2f}")
        b, r = sum(t.broker_cpu_ms.values()), sum(t.raw_cpu_ms.values())
        print(f"  {'total':<16} {b:>11.2f} {r:>9.2f}")
        print(
            f"CPU ceiling ({cores} cores / total CPU per request): broker {cores * 1000 / b:.0f} req/s, "
            f"raw {cores * 1000 / r:.0f} req/s; the ratio of the ceilings {r / b:.1%}"
        )


if __name__ == "__main__":
    print_throughput(workers_pg_throughput())
